"""The transition table (`router/core/transitions.py`) enumerated: every move it allows happens
through commands, and every other (from, to) pair of statuses is refused with
FAILED_PRECONDITION, by the lifecycle and by the commands that would make it."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from router.core import commands as cmd
from router.core.conversation_model import TransferMode, TransferTarget
from router.core.engine import Engine
from router.core.errors import ErrorKind, FailedPrecondition
from router.core.model import QueueConfig, ReservationStatus, TaskSpec, TaskStatus, WorkerProfile
from router.core.transitions import (
    RESERVATION_TRANSITIONS,
    TASK_TRANSITIONS,
    TaskMove,
    check_reservation_move,
    task_move_allowed,
)

_T = TaskStatus
START_MS = 1_000_000
TIMEOUT_S = 30


class Scene:
    """An engine with a queue without wrap-up ("support"), one with ("wrapping"), and a worker
    "a" (offline until `available` is called), driven one command at a time."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.now_ms = START_MS
        self.apply(cmd.UpsertQueue(QueueConfig("support", reservation_timeout_s=TIMEOUT_S)))
        self.apply(cmd.UpsertQueue(QueueConfig("wrapping", wrapup_s=60)))
        profile = WorkerProfile("a", capacity_by_channel={"voice": 1}, activity="offline")
        self.apply(cmd.UpsertWorker(profile))

    def apply(self, command: cmd.Command[object]) -> object:
        return self.engine.apply(command, self.now_ms)

    def available(self) -> None:
        self.apply(cmd.SetActivity("a", "available"))

    def create(self, queue_id: str = "support") -> str:
        created = self.engine.apply(cmd.CreateTask(TaskSpec("voice", queue_id)), self.now_ms)
        return created.task.task_id

    def status(self, task_id: str) -> TaskStatus:
        return self.engine.get_task(task_id).status

    def reservation_id(self, task_id: str) -> str:
        return self.engine.get_task(task_id).reservation_id


def task_in(status: TaskStatus) -> tuple[Scene, str]:
    """A scene holding a task in `status`, reached through commands."""
    scene = Scene()
    queue_id = "wrapping" if status is TaskStatus.WRAPPING else "support"
    task_id = scene.create(queue_id)
    if status is TaskStatus.CANCELED:
        scene.apply(cmd.CancelTask(task_id))
    if status not in (TaskStatus.PENDING, TaskStatus.CANCELED):
        scene.available()
    if status in (_T.ASSIGNED, _T.WRAPPING, _T.COMPLETED, _T.PAUSED):
        scene.apply(cmd.AcceptOffer("a", scene.reservation_id(task_id)))
    if status is TaskStatus.PAUSED:
        scene.apply(cmd.PauseTask(task_id))
    if status in (TaskStatus.WRAPPING, TaskStatus.COMPLETED):
        scene.apply(cmd.CompleteTask(task_id))
    assert scene.status(task_id) is status
    return scene, task_id


def _offer(scene: Scene, task_id: str) -> None:
    scene.available()


def _reject(scene: Scene, task_id: str) -> None:
    scene.apply(cmd.RejectOffer("a", scene.reservation_id(task_id), "busy"))


def _accept(scene: Scene, task_id: str) -> None:
    scene.apply(cmd.AcceptOffer("a", scene.reservation_id(task_id)))


def _complete(scene: Scene, task_id: str) -> None:
    scene.apply(cmd.CompleteTask(task_id))


def _wrap_up(scene: Scene, task_id: str) -> None:
    scene.apply(cmd.WrapUpTask(task_id))


def _cancel(scene: Scene, task_id: str) -> None:
    scene.apply(cmd.CancelTask(task_id))


def _pause(scene: Scene, task_id: str) -> None:
    scene.apply(cmd.PauseTask(task_id))


def _resume(scene: Scene, task_id: str) -> None:
    scene.apply(cmd.SetActivity("a", "offline"))  # or it is offered at once
    scene.apply(cmd.ResumeTask(task_id))


def _transfer(scene: Scene, task_id: str) -> None:
    scene.apply(cmd.TransferTask(task_id, TransferMode.COLD, TransferTarget("support")))


def _requeue(scene: Scene, task_id: str) -> None:
    """Its worker's stream is lost for the channel's re-queue delay (`presence.py`)."""
    scene.apply(cmd.UpsertChannel("voice", requeue_after_disconnect_s=5))
    scene.apply(cmd.WorkerAttached("a"))
    scene.apply(cmd.PresenceLost("a"))
    scene.now_ms += 5_000
    scene.apply(cmd.Tick())


_M = TaskMove
DRIVERS: dict[tuple[TaskStatus, TaskStatus, TaskMove], Callable[[Scene, str], None]] = {
    (_T.PENDING, _T.RESERVED, _M.OFFER): _offer,
    (_T.RESERVED, _T.PENDING, _M.OFFERS_ENDED): _reject,
    (_T.RESERVED, _T.ASSIGNED, _M.ACCEPT): _accept,
    (_T.ASSIGNED, _T.WRAPPING, _M.COMPLETE): _complete,  # in the queue with wrap-up
    (_T.ASSIGNED, _T.COMPLETED, _M.COMPLETE): _complete,
    (_T.WRAPPING, _T.COMPLETED, _M.WRAP_UP): _wrap_up,
    (_T.PENDING, _T.CANCELED, _M.CANCEL): _cancel,
    (_T.RESERVED, _T.CANCELED, _M.CANCEL): _cancel,
    (_T.PAUSED, _T.CANCELED, _M.CANCEL): _cancel,
    (_T.ASSIGNED, _T.PAUSED, _M.PAUSE): _pause,
    (_T.PAUSED, _T.PENDING, _M.RESUME): _resume,
    (_T.ASSIGNED, _T.PENDING, _M.TRANSFER): _transfer,
    (_T.ASSIGNED, _T.PENDING, _M.REQUEUE): _requeue,
}
"""The command that makes each allowed move."""
ALLOWED_PAIRS = sorted(
    {(f, t) for f, t, _ in TASK_TRANSITIONS}, key=lambda p: (p[0].value, p[1].value)
)
"""The (from, to) pairs of statuses that some cause may move a task between."""


def test_every_allowed_task_move_has_a_command_that_makes_it() -> None:
    assert DRIVERS.keys() == TASK_TRANSITIONS


@pytest.mark.parametrize(
    ("from_status", "to_status", "move"),
    sorted(TASK_TRANSITIONS, key=lambda row: tuple(part.value for part in row)),
)
def test_an_allowed_task_move_happens_through_commands(
    from_status: TaskStatus, to_status: TaskStatus, move: TaskMove
) -> None:
    if (from_status, to_status) == (_T.ASSIGNED, _T.WRAPPING):
        scene = Scene()
        task_id = scene.create("wrapping")
        scene.available()
        _accept(scene, task_id)
    else:
        scene, task_id = task_in(from_status)
    assert scene.status(task_id) is from_status
    DRIVERS[from_status, to_status, move](scene, task_id)
    assert scene.status(task_id) is to_status
    scene.engine.check_invariants()


def test_the_wrap_up_timer_completes_a_wrapping_task() -> None:
    scene, task_id = task_in(TaskStatus.WRAPPING)
    scene.now_ms += 60_000
    scene.apply(cmd.Tick())
    assert scene.status(task_id) is TaskStatus.COMPLETED


REFUSED_TASK_PAIRS = [
    pair for pair in itertools.product(TaskStatus, repeat=2) if pair not in ALLOWED_PAIRS
]


@pytest.mark.parametrize(("from_status", "to_status"), REFUSED_TASK_PAIRS)
def test_every_other_task_move_is_refused(from_status: TaskStatus, to_status: TaskStatus) -> None:
    scene, task_id = task_in(from_status)
    engine = scene.engine
    task = engine.tasks.open.get(task_id) or engine.get_task(task_id)
    digest = engine.digest()
    for move in TaskMove:
        with pytest.raises(FailedPrecondition) as refused:
            engine.lifecycle.transition(task, to_status, move)
        assert refused.value.kind is ErrorKind.FAILED_PRECONDITION
        assert from_status.value in refused.value.message
    assert task.status is from_status and engine.digest() == digest


@pytest.mark.parametrize(("from_status", "to_status"), ALLOWED_PAIRS)
def test_an_allowed_pair_is_refused_to_any_other_cause(
    from_status: TaskStatus, to_status: TaskStatus
) -> None:
    scene, task_id = task_in(from_status)
    task = scene.engine.tasks.open[task_id]
    for move in TaskMove:
        if (from_status, to_status, move) not in TASK_TRANSITIONS:
            with pytest.raises(FailedPrecondition):
                scene.engine.lifecycle.transition(task, to_status, move)
    assert task.status is from_status


COMMANDS: dict[str, tuple[Callable[[str], cmd.Command[object]], TaskMove, TaskStatus]] = {
    "cancel": (cmd.CancelTask, TaskMove.CANCEL, TaskStatus.CANCELED),
    "complete": (cmd.CompleteTask, TaskMove.COMPLETE, TaskStatus.COMPLETED),
    "wrap up": (cmd.WrapUpTask, TaskMove.WRAP_UP, TaskStatus.COMPLETED),
    "pause": (cmd.PauseTask, TaskMove.PAUSE, TaskStatus.PAUSED),
    "resume": (cmd.ResumeTask, TaskMove.RESUME, TaskStatus.PENDING),
    "transfer": (
        lambda task_id: cmd.TransferTask(task_id, TransferMode.COLD, TransferTarget()),
        TaskMove.TRANSFER,
        TaskStatus.PENDING,
    ),
}
"""The commands that name a task and the move each asks of it (CompleteTask in "support",
which has no wrap-up)."""


@pytest.mark.parametrize("status", list(TaskStatus))
@pytest.mark.parametrize("name", list(COMMANDS))
def test_task_commands_follow_the_table(name: str, status: TaskStatus) -> None:
    scene, task_id = task_in(status)
    if status is TaskStatus.WRAPPING and name == "complete":
        target = TaskStatus.WRAPPING  # its queue has a wrap-up: completing would enter it
    else:
        target = COMMANDS[name][2]
    make, move, _ = COMMANDS[name]
    if task_move_allowed(status, target, move):
        scene.apply(make(task_id))
        assert scene.status(task_id) is not status
        return
    digest = scene.engine.digest()
    with pytest.raises(FailedPrecondition) as refused:
        scene.apply(make(task_id))
    assert refused.value.kind is ErrorKind.FAILED_PRECONDITION
    assert scene.status(task_id) is status and scene.engine.digest() == digest


# -- reservations --------------------------------------------------------------------------------


def offered() -> tuple[Scene, str, str]:
    scene = Scene()
    task_id = scene.create()
    scene.available()
    return scene, task_id, scene.reservation_id(task_id)


def _time_out(scene: Scene, task_id: str, reservation_id: str) -> None:
    scene.now_ms += TIMEOUT_S * 1000
    scene.apply(cmd.Tick())


def _rescind(scene: Scene, task_id: str, reservation_id: str) -> None:
    scene.apply(cmd.SetActivity("a", "break"))


_R = ReservationStatus
RESERVATION_DRIVERS: dict[
    tuple[ReservationStatus, ReservationStatus], Callable[[Scene, str, str], None]
] = {
    (_R.PENDING, _R.ACCEPTED): lambda s, t, r: s.apply(cmd.AcceptOffer("a", r)) and None,
    (_R.PENDING, _R.REJECTED): lambda s, t, r: s.apply(cmd.RejectOffer("a", r)) and None,
    (_R.PENDING, _R.TIMED_OUT): _time_out,
    (_R.PENDING, _R.RESCINDED): _rescind,
    (_R.PENDING, _R.CANCELED): lambda s, t, r: s.apply(cmd.CancelTask(t)) and None,
}


def test_every_allowed_reservation_move_has_a_command_that_makes_it() -> None:
    assert RESERVATION_DRIVERS.keys() == RESERVATION_TRANSITIONS


@pytest.mark.parametrize(("from_status", "to_status"), sorted(RESERVATION_TRANSITIONS, key=str))
def test_an_allowed_reservation_move_happens_through_commands(
    from_status: ReservationStatus, to_status: ReservationStatus
) -> None:
    scene, task_id, reservation_id = offered()
    assert scene.engine.reservations[reservation_id].status is from_status
    RESERVATION_DRIVERS[from_status, to_status](scene, task_id, reservation_id)
    assert scene.engine.reservations[reservation_id].status is to_status
    scene.engine.check_invariants()


@pytest.mark.parametrize(
    ("from_status", "to_status"),
    [p for p in itertools.product(ReservationStatus, repeat=2) if p not in RESERVATION_TRANSITIONS],
)
def test_every_other_reservation_move_is_refused(
    from_status: ReservationStatus, to_status: ReservationStatus
) -> None:
    with pytest.raises(FailedPrecondition) as refused:
        check_reservation_move("res-1", from_status, to_status)
    assert refused.value.kind is ErrorKind.FAILED_PRECONDITION


@pytest.mark.parametrize("ended", [s for s in ReservationStatus if s is not _R.PENDING])
def test_an_ended_offer_cannot_be_answered(ended: ReservationStatus) -> None:
    scene, task_id, reservation_id = offered()
    RESERVATION_DRIVERS[_R.PENDING, ended](scene, task_id, reservation_id)
    digest = scene.engine.digest()
    for answer in (cmd.AcceptOffer("a", reservation_id), cmd.RejectOffer("a", reservation_id)):
        with pytest.raises(FailedPrecondition, match=f"it is {ended.value}") as refused:
            scene.apply(answer)
        assert refused.value.kind is ErrorKind.FAILED_PRECONDITION
    assert scene.engine.digest() == digest
