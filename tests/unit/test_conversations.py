"""Conversations in the core: cold and warm transfers keep the task's age, a failed warm transfer
leaves the task with its agent, pause releases capacity and resume prefers the same agent, a
consult holds capacity and a monitor none, and every refused command changes nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from router.core import codec, snapshot
from router.core import commands as cmd
from router.core.conversation_model import (
    ParticipantRole,
    TransferMode,
    TransferStatus,
    TransferTarget,
)
from router.core.engine import Engine
from router.core.errors import CoreError, ErrorKind
from router.core.events import ConsultOffered, TaskPaused, TaskResumed, TransferChanged
from router.core.limits import (
    PARTICIPANTS_PER_TASK_MAX,
    PAUSE_MAX_S_MAX,
    TRANSFER_EXPRESSIONS_MAX,
    TRANSFER_REASON_CHARS_MAX,
    TRANSFERS_PER_TASK_MAX,
)
from router.core.model import (
    PauseExpiryAction,
    QueueConfig,
    TaskSpec,
    TaskStatus,
    WorkerProfile,
)

COLD, WARM = TransferMode.COLD, TransferMode.WARM
CONSULT, MONITOR = ParticipantRole.CONSULT, ParticipantRole.MONITOR


class Scene:
    """Queues "support" and "specialists" (members with `team == 'spec'`), workers added on
    demand, the engine checked after every command."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.now_ms = 1_000_000
        self.apply(cmd.UpsertQueue(QueueConfig("support", reservation_timeout_s=30, wrapup_s=10)))
        self.apply(
            cmd.UpsertQueue(
                QueueConfig("specialists", target_expression="team == 'spec'", pause_max_s=60)
            )
        )

    def apply(self, command: cmd.Command[Any]) -> Any:
        # As the journal gives it back (the writer applies that form): ints as floats, say.
        result = self.engine.apply(codec.normalize(command), self.now_ms)
        self.engine.check_invariants()
        return result

    def advance(self, seconds: float) -> None:
        self.now_ms += round(seconds * 1000)
        self.apply(cmd.Tick())

    def worker(self, worker_id: str, *, team: str = "front", voice: int = 1, **kw: Any) -> None:
        profile = WorkerProfile(
            worker_id,
            attributes={"team": team},
            capacity_by_channel={"voice": voice},
            activity="available",
            **kw,
        )
        self.apply(cmd.UpsertWorker(profile))

    def assigned(self, worker_id: str = "a", queue_id: str = "support", **kw: Any) -> str:
        """A task assigned to `worker_id` (the only free worker of the queue)."""
        task_id: str = self.apply(cmd.CreateTask(TaskSpec("voice", queue_id, **kw))).task.task_id
        task = self.engine.get_task(task_id)
        assert task.worker_id == worker_id, task
        self.apply(cmd.AcceptOffer(worker_id, task.reservation_id))
        return task_id

    def task(self, task_id: str) -> Any:
        return self.engine.get_task(task_id)

    def load(self, worker_id: str) -> int:
        return sum(self.engine.workers[worker_id].load_by_channel.values())

    def consult_offer(self) -> ConsultOffered:
        offers = [e for e in self.engine.take_events() if isinstance(e, ConsultOffered)]
        return offers[-1]


@pytest.fixture
def scene() -> Scene:
    return Scene()


# -- cold transfers ------------------------------------------------------------------------------


def test_a_cold_transfer_to_a_queue_keeps_the_age_and_never_goes_back(scene: Scene) -> None:
    scene.worker("a")
    task_id = scene.assigned(priority=7)
    created_ms = scene.task(task_id).created_ms
    scene.advance(30)
    result = scene.apply(cmd.TransferTask(task_id, COLD, TransferTarget("specialists")))
    task = scene.task(task_id)
    assert task.status is TaskStatus.PENDING and task.queue_id == "specialists"
    assert task.created_ms == created_ms and task.priority == 7
    assert "a" in task.excluded_worker_ids and scene.load("a") == 0
    assert result.conversation.transfers[0].status is TransferStatus.COMPLETED
    scene.worker("s", team="spec")
    assert scene.task(task_id).worker_id == "s"  # offered to the specialist
    scene.apply(cmd.AcceptOffer("s", scene.task(task_id).reservation_id))
    scene.apply(cmd.CompleteTask(task_id))
    assert scene.engine.conversation_of(task_id).transfers[0].from_worker_id == "a"


def test_a_cold_transfer_to_a_worker_expression_waits_for_a_match(scene: Scene) -> None:
    """Held to `team == 'spec'` until a worker accepts it: never offered to the free front
    agent, offered to the specialist once one comes; a snapshot while it waits routes alike."""
    scene.worker("a")
    task_id = scene.assigned(priority=4)
    created_ms = scene.task(task_id).created_ms
    scene.worker("b")  # free, but not a specialist
    scene.advance(30)
    spec = TransferTarget(worker_expression="team == 'spec'")
    result = scene.apply(cmd.TransferTask(task_id, COLD, spec))
    task = scene.task(task_id)
    assert task.status is TaskStatus.PENDING and task.queue_id == "support"
    assert task.created_ms == created_ms and task.priority == 4
    assert result.conversation.transfers[0].status is TransferStatus.COMPLETED
    scene.advance(60)  # b stays free; the task waits (the invariants check it is right to)
    assert scene.task(task_id).status is TaskStatus.PENDING and scene.load("b") == 0
    restored = snapshot.restore(snapshot.take(scene.engine))
    assert restored.digest() == scene.engine.digest()
    restored.check_invariants()
    profile = WorkerProfile(
        "s", attributes={"team": "spec"}, capacity_by_channel={"voice": 1}, activity="available"
    )
    for engine in (scene.engine, restored):
        engine.apply(codec.normalize(cmd.UpsertWorker(profile)), scene.now_ms)
        engine.check_invariants()
        assert engine.get_task(task_id).worker_id == "s"  # offered to the specialist
    assert restored.digest() == scene.engine.digest()
    scene.apply(cmd.AcceptOffer("s", scene.task(task_id).reservation_id))
    transfer = scene.engine.conversation_of(task_id).transfers[0]
    assert transfer.to_worker_id == "s"  # who took it: the hold has ended
    assert scene.engine.catalog.transfer_expression_uses() == {}
    # Assigned, the expression no longer holds it: paused and resumed, a front agent takes it.
    scene.apply(cmd.PauseTask(task_id))
    scene.apply(cmd.SetActivity("s", "offline"))
    scene.apply(cmd.ResumeTask(task_id, known_agent_wait_s=0))
    assert scene.task(task_id).worker_id == "b"


def test_a_task_held_to_an_expression_releases_its_row_when_closed(scene: Scene) -> None:
    scene.worker("a")
    task_id = scene.assigned()
    spec = TransferTarget(worker_expression="team == 'spec'")
    scene.apply(cmd.TransferTask(task_id, COLD, spec))
    assert scene.engine.catalog.transfer_expression_uses() == {"team == 'spec'": 1}
    scene.apply(cmd.CancelTask(task_id))
    assert scene.engine.catalog.transfer_expression_uses() == {}


def test_the_expressions_cold_transfers_hold_tasks_to_are_bounded(scene: Scene) -> None:
    for n in range(TRANSFER_EXPRESSIONS_MAX + 1):
        scene.worker(f"a{n}")
        task_id = scene.assigned(f"a{n}")
        transfer = cmd.TransferTask(task_id, COLD, TransferTarget(worker_expression=f"n == {n}"))
        if n < TRANSFER_EXPRESSIONS_MAX:
            scene.apply(transfer)
            scene.apply(cmd.SetActivity(f"a{n}", "offline"))  # nobody free for the next task
            continue
        digest = scene.engine.digest()
        with pytest.raises(CoreError) as refused:
            scene.engine.apply(transfer, scene.now_ms)
        assert refused.value.kind is ErrorKind.RESOURCE_EXHAUSTED
        assert scene.engine.digest() == digest
        # an expression already in use is fine
        scene.apply(cmd.TransferTask(task_id, COLD, TransferTarget(worker_expression="n == 0")))


def test_a_cold_transfer_into_wrap_up_holds_the_agent_until_it_ends(scene: Scene) -> None:
    scene.worker("a")
    task_id = scene.assigned()
    scene.apply(
        cmd.TransferTask(task_id, COLD, TransferTarget("specialists"), wrap_up=True, priority=3)
    )
    assert scene.load("a") == 1 and scene.task(task_id).priority == 3
    scene.advance(10)
    assert scene.load("a") == 0


def test_a_cold_transfer_to_a_named_worker_offers_it_to_that_worker(scene: Scene) -> None:
    scene.worker("a")
    task_id = scene.assigned()
    scene.worker("b")
    scene.worker("c")
    scene.apply(cmd.TransferTask(task_id, COLD, TransferTarget(worker_id="c")))
    assert scene.task(task_id).status is TaskStatus.RESERVED
    assert scene.task(task_id).worker_id == "c"


def test_a_cold_transfer_to_a_skill_requirement_waits_for_the_skill(scene: Scene) -> None:
    scene.worker("a", skills={"billing": 1})
    task_id = scene.assigned()
    scene.worker("b", skills={"billing": 2})
    scene.apply(cmd.TransferTask(task_id, COLD, TransferTarget(required_skills={"billing": 4})))
    assert scene.task(task_id).status is TaskStatus.PENDING
    scene.worker("expert", skills={"billing": 5})
    assert scene.task(task_id).worker_id == "expert"


# -- warm transfers ------------------------------------------------------------------------------


def test_a_warm_transfer_hands_the_task_over_on_accept(scene: Scene) -> None:
    scene.worker("a")
    task_id = scene.assigned()
    created_ms = scene.task(task_id).created_ms
    scene.worker("s", team="spec")
    result = scene.apply(cmd.TransferTask(task_id, WARM, TransferTarget("specialists")))
    offer = scene.consult_offer()
    assert offer.reservation.worker_id == "s" and offer.transfer_id == result.transfer_id
    assert scene.load("a") == 1 and scene.load("s") == 1  # both hold it meanwhile
    scene.apply(cmd.AcceptOffer("s", offer.reservation.reservation_id))
    task = scene.task(task_id)
    assert task.worker_id == "s" and task.queue_id == "specialists"
    assert task.created_ms == created_ms and task.status is TaskStatus.ASSIGNED
    assert scene.load("a") == 0 and scene.load("s") == 1
    view = scene.engine.conversation_of(task_id)
    assert view.transfers[0].status is TransferStatus.COMPLETED and not view.participants


@pytest.mark.parametrize("ending", ["reject", "expire", "cancel"])
def test_a_failed_warm_transfer_leaves_the_task_with_its_agent(scene: Scene, ending: str) -> None:
    scene.worker("a")
    task_id = scene.assigned()
    scene.worker("b")
    result = scene.apply(cmd.TransferTask(task_id, WARM, TransferTarget(worker_id="b")))
    offer = scene.consult_offer()
    if ending == "reject":
        scene.apply(cmd.RejectOffer("b", offer.reservation.reservation_id, "busy"))
    elif ending == "expire":
        scene.advance(30)
    else:
        scene.apply(cmd.CancelTransfer(task_id, result.transfer_id))
    task = scene.task(task_id)
    assert task.worker_id == "a" and task.status is TaskStatus.ASSIGNED
    assert scene.load("a") == 1 and scene.load("b") == 0
    transfer = scene.engine.conversation_of(task_id).transfers[0]
    expected = TransferStatus.CANCELED if ending == "cancel" else TransferStatus.FAILED
    assert transfer.status is expected


# -- pause and resume ----------------------------------------------------------------------------


def test_pause_releases_capacity_and_resume_prefers_the_same_agent(scene: Scene) -> None:
    scene.worker("a")
    task_id = scene.assigned()
    scene.advance(5)
    scene.apply(cmd.PauseTask(task_id, "customer away"))
    assert scene.task(task_id).status is TaskStatus.PAUSED and scene.load("a") == 0
    scene.worker("b")
    other = scene.apply(cmd.CreateTask(TaskSpec("voice", "support"))).task.task_id
    scene.apply(cmd.AcceptOffer("a", scene.task(other).reservation_id))  # a is busy now
    scene.advance(100)
    scene.apply(cmd.ResumeTask(task_id, known_agent_wait_s=20))
    assert scene.task(task_id).status is TaskStatus.PENDING  # waits for a, though b is free
    scene.apply(cmd.CompleteTask(other))
    scene.apply(cmd.WrapUpTask(other))
    assert scene.task(task_id).worker_id == "a"
    scene.apply(cmd.AcceptOffer("a", scene.task(task_id).reservation_id))
    scene.advance(10)
    scene.apply(cmd.CompleteTask(task_id))
    scene.apply(cmd.WrapUpTask(task_id))
    # handle time: 5 s before the pause, 10 s after it; the 100 s paused are excluded
    assert scene.engine.counters["support"].handle_ms[-1] == 15_000
    assert scene.engine.conversation_of(task_id).paused_total_ms == 100_000


def test_resume_falls_back_to_anyone_after_the_known_agent_wait(scene: Scene) -> None:
    scene.worker("a")
    task_id = scene.assigned()
    scene.apply(cmd.PauseTask(task_id))
    scene.apply(cmd.SetActivity("a", "offline"))
    scene.worker("b")
    scene.apply(cmd.ResumeTask(task_id, known_agent_wait_s=20))
    assert scene.task(task_id).status is TaskStatus.PENDING
    scene.advance(20)
    assert scene.task(task_id).worker_id == "b"


@pytest.mark.parametrize("action", list(PauseExpiryAction))
def test_a_pause_past_pause_max_s_resumes_or_cancels(
    scene: Scene, action: PauseExpiryAction
) -> None:
    queue = QueueConfig("parked", pause_max_s=60, pause_expiry_action=action)
    scene.apply(cmd.UpsertQueue(queue))
    scene.worker("a")
    task_id = scene.assigned(queue_id="parked")
    scene.apply(cmd.PauseTask(task_id))
    scene.advance(59)
    assert scene.task(task_id).status is TaskStatus.PAUSED
    scene.advance(1)
    events = scene.engine.take_events()
    if action is PauseExpiryAction.CANCEL:
        assert scene.task(task_id).status is TaskStatus.CANCELED
        assert scene.task(task_id).cancel_reason == "pause_expired"
    else:
        assert scene.task(task_id).status is TaskStatus.RESERVED  # offered to a again
        assert any(isinstance(e, TaskResumed) and e.origin == "pause" for e in events)


def test_a_queue_may_keep_tasks_paused_for_30_days(scene: Scene) -> None:
    scene.apply(cmd.UpsertQueue(QueueConfig("long", pause_max_s=PAUSE_MAX_S_MAX)))
    assert scene.engine.get_queue("long").pause_max_s == PAUSE_MAX_S_MAX == 30 * 24 * 3600


def test_a_paused_task_outlives_its_ttl(scene: Scene) -> None:
    scene.worker("a")
    task_id = scene.assigned(ttl_s=30)
    scene.apply(cmd.PauseTask(task_id))
    scene.advance(100)
    assert scene.task(task_id).status is TaskStatus.PAUSED


@pytest.mark.parametrize("after", ["cold transfer", "resume"])
def test_a_task_back_in_routing_after_its_first_agent_outlives_its_ttl(
    scene: Scene, after: str
) -> None:
    """The time-to-live cancels a task still waiting for its first agent; one an agent took is
    a conversation under way, transferred or resumed past its time-to-live (it canceled a cold
    transfer that waited at that moment; seen in the simulation)."""
    scene.worker("a")
    task_id = scene.assigned(ttl_s=30)
    scene.advance(10)
    if after == "cold transfer":  # to specialists, none of whom is there yet
        scene.apply(cmd.TransferTask(task_id, COLD, TransferTarget("specialists")))
    else:
        scene.apply(cmd.PauseTask(task_id))
        scene.apply(cmd.SetActivity("a", "break"))
        scene.apply(cmd.ResumeTask(task_id))
    scene.advance(100)  # waiting when its time-to-live falls due
    assert scene.task(task_id).status is TaskStatus.PENDING
    scene.worker("s", team="spec")
    assert scene.task(task_id).status is TaskStatus.RESERVED


# -- participants --------------------------------------------------------------------------------


def test_a_three_party_consult_holds_capacity_on_both_and_hands_over(scene: Scene) -> None:
    scene.worker("a")
    task_id = scene.assigned()
    scene.worker("s", team="spec")
    scene.apply(cmd.AddParticipant(task_id, CONSULT, TransferTarget("specialists")))
    offer = scene.consult_offer()
    scene.apply(cmd.AcceptOffer("s", offer.reservation.reservation_id))
    view = scene.engine.conversation_of(task_id)
    assert view.primary_worker_id == "a"
    assert [(p.worker_id, p.role) for p in view.participants] == [("s", CONSULT)]
    assert scene.load("a") == 1 and scene.load("s") == 1
    scene.apply(cmd.HandOverTask(task_id, "s"))
    assert scene.task(task_id).worker_id == "s" and scene.load("a") == 0
    scene.apply(cmd.CompleteTask(task_id))
    scene.apply(cmd.WrapUpTask(task_id))
    assert scene.load("s") == 0


def test_a_monitor_holds_no_capacity_and_leaves_at_completion(scene: Scene) -> None:
    scene.worker("a")
    task_id = scene.assigned()
    scene.worker("sup", voice=0)
    scene.apply(cmd.AddParticipant(task_id, MONITOR, TransferTarget(worker_id="sup")))
    assert scene.load("sup") == 0
    assert scene.engine.conversation_of(task_id).participants[0].role is MONITOR
    scene.worker("c")
    scene.apply(cmd.AddParticipant(task_id, CONSULT, TransferTarget(worker_id="c")))
    scene.apply(cmd.CompleteTask(task_id))  # the consult offer is withdrawn, the monitor leaves
    assert scene.load("c") == 0 and not scene.engine.conversation_of(task_id).participants


def test_removing_a_consult_releases_its_capacity(scene: Scene) -> None:
    scene.worker("a")
    task_id = scene.assigned()
    scene.worker("c")
    scene.apply(cmd.AddParticipant(task_id, CONSULT, TransferTarget(worker_id="c")))
    scene.apply(cmd.AcceptOffer("c", scene.consult_offer().reservation.reservation_id))
    scene.apply(cmd.RemoveParticipant(task_id, "c"))
    assert scene.load("c") == 0 and scene.load("a") == 1


def test_snapshots_keep_conversations(scene: Scene) -> None:
    scene.worker("a")
    task_id = scene.assigned()
    scene.worker("c")
    scene.apply(cmd.TransferTask(task_id, WARM, TransferTarget(worker_id="c")))
    restored = snapshot.restore(snapshot.take(scene.engine))
    assert restored.digest() == scene.engine.digest()
    restored.check_invariants()
    offer = scene.consult_offer()
    for engine in (scene.engine, restored):
        engine.apply(cmd.AcceptOffer("c", offer.reservation.reservation_id), scene.now_ms)
        engine.check_invariants()
    assert restored.digest() == scene.engine.digest()


# -- refusals ------------------------------------------------------------------------------------


def _refusals() -> dict[str, tuple[ErrorKind, Callable[[Scene], cmd.Command[Any]]]]:
    t = TransferTarget
    return {
        "pause a pending task": (ErrorKind.FAILED_PRECONDITION, lambda s: cmd.PauseTask(s.pending)),
        "resume a task that is not paused": (
            ErrorKind.FAILED_PRECONDITION,
            lambda s: cmd.ResumeTask(s.assigned_id),
        ),
        "transfer a completed task": (
            ErrorKind.FAILED_PRECONDITION,
            lambda s: cmd.TransferTask(s.completed, COLD, t("support")),
        ),
        "transfer to an unknown queue": (
            ErrorKind.NOT_FOUND,
            lambda s: cmd.TransferTask(s.assigned_id, COLD, t("nowhere")),
        ),
        "transfer to an unknown worker": (
            ErrorKind.NOT_FOUND,
            lambda s: cmd.TransferTask(s.assigned_id, WARM, t(worker_id="ghost")),
        ),
        "transfer to a worker without capacity": (
            ErrorKind.FAILED_PRECONDITION,
            lambda s: cmd.TransferTask(s.assigned_id, WARM, t(worker_id="busy")),
        ),
        "transfer to a worker outside the target queue": (
            ErrorKind.FAILED_PRECONDITION,
            lambda s: cmd.TransferTask(s.assigned_id, WARM, t("specialists", worker_id="free")),
        ),
        "transfer to nobody free": (
            ErrorKind.FAILED_PRECONDITION,
            lambda s: cmd.TransferTask(s.assigned_id, WARM, t(required_skills={"law": 5})),
        ),
        "a cold transfer by a bad expression": (
            ErrorKind.INVALID_ARGUMENT,
            lambda s: cmd.TransferTask(s.assigned_id, COLD, t(worker_expression="team ==")),
        ),
        "a bad expression": (
            ErrorKind.INVALID_ARGUMENT,
            lambda s: cmd.TransferTask(s.assigned_id, WARM, t(worker_expression="team ==")),
        ),
        "a worker and a requirement": (
            ErrorKind.INVALID_ARGUMENT,
            lambda s: cmd.TransferTask(
                s.assigned_id, WARM, t(worker_id="free", required_skills={"x": 1})
            ),
        ),
        "a transfer reason past its limit": (
            ErrorKind.INVALID_ARGUMENT,
            lambda s: cmd.TransferTask(
                s.assigned_id, COLD, t("support"), reason="x" * (TRANSFER_REASON_CHARS_MAX + 1)
            ),
        ),
        "a pause reason past its limit": (
            ErrorKind.INVALID_ARGUMENT,
            lambda s: cmd.PauseTask(s.assigned_id, "x" * (TRANSFER_REASON_CHARS_MAX + 1)),
        ),
        "a queue's pause_max_s past 30 days": (
            ErrorKind.INVALID_ARGUMENT,
            lambda s: cmd.UpsertQueue(QueueConfig("support", pause_max_s=PAUSE_MAX_S_MAX + 1)),
        ),
        "wrap-up and back": (
            ErrorKind.INVALID_ARGUMENT,
            lambda s: cmd.TransferTask(s.assigned_id, COLD, t(), wrap_up=True, allow_back=True),
        ),
        "a participant already on the task": (
            ErrorKind.FAILED_PRECONDITION,
            lambda s: cmd.AddParticipant(s.assigned_id, MONITOR, t(worker_id="a")),
        ),
        "a primary participant": (
            ErrorKind.INVALID_ARGUMENT,
            lambda s: cmd.AddParticipant(s.assigned_id, ParticipantRole.PRIMARY, t()),
        ),
        "a participant of a paused task": (
            ErrorKind.FAILED_PRECONDITION,
            lambda s: cmd.AddParticipant(s.paused, MONITOR, t(worker_id="free")),
        ),
        "removing the primary": (
            ErrorKind.FAILED_PRECONDITION,
            lambda s: cmd.RemoveParticipant(s.assigned_id, "a"),
        ),
        "removing a stranger": (
            ErrorKind.NOT_FOUND,
            lambda s: cmd.RemoveParticipant(s.assigned_id, "free"),
        ),
        "handing over to a stranger": (
            ErrorKind.NOT_FOUND,
            lambda s: cmd.HandOverTask(s.assigned_id, "free"),
        ),
        "canceling an unknown transfer": (
            ErrorKind.NOT_FOUND,
            lambda s: cmd.CancelTransfer(s.assigned_id, "xfer-9"),
        ),
        "a reason too long": (
            ErrorKind.INVALID_ARGUMENT,
            lambda s: cmd.PauseTask(s.assigned_id, "x" * 300),
        ),
    }


class RefusalScene(Scene):
    """An assigned task (of "a"), a worker "busy" at capacity, a completed task, a paused one,
    a pending one (in "specialists", which has no member), and a free worker."""

    def __init__(self) -> None:
        super().__init__()
        self.worker("a")
        self.assigned_id = self.assigned("a")
        self.worker("busy")
        self.assigned("busy")
        self.worker("done")
        self.completed = self.assigned("done")
        self.apply(cmd.CompleteTask(self.completed))
        self.apply(cmd.WrapUpTask(self.completed))
        self.apply(cmd.SetActivity("done", "offline"))
        self.worker("p")
        self.paused = self.assigned("p")
        self.apply(cmd.PauseTask(self.paused))
        self.apply(cmd.SetActivity("p", "offline"))
        self.pending = self.apply(cmd.CreateTask(TaskSpec("voice", "specialists"))).task.task_id
        self.worker("free")


@pytest.mark.parametrize("case", list(_refusals()))
def test_a_refused_command_changes_nothing(case: str) -> None:
    scene = RefusalScene()
    kind, make = _refusals()[case]
    digest = scene.engine.digest()
    with pytest.raises(CoreError) as refused:
        scene.engine.apply(make(scene), scene.now_ms)
    assert refused.value.kind is kind, refused.value.message
    assert scene.engine.digest() == digest


def test_a_seventh_participant_is_refused(scene: Scene) -> None:
    scene.worker("a")
    task_id = scene.assigned()
    for n in range(PARTICIPANTS_PER_TASK_MAX - 1):
        scene.worker(f"m{n}", voice=0)
        scene.apply(cmd.AddParticipant(task_id, MONITOR, TransferTarget(worker_id=f"m{n}")))
    scene.worker("late", voice=0)
    digest = scene.engine.digest()
    with pytest.raises(CoreError) as refused:
        scene.apply(cmd.AddParticipant(task_id, MONITOR, TransferTarget(worker_id="late")))
    assert refused.value.kind is ErrorKind.RESOURCE_EXHAUSTED
    assert scene.engine.digest() == digest


def test_transfers_past_the_limit_are_refused(scene: Scene) -> None:
    scene.worker("a")
    scene.worker("b")
    task_id = scene.assigned()
    for n in range(TRANSFERS_PER_TASK_MAX):
        holder = "a" if n % 2 == 0 else "b"
        other = "b" if holder == "a" else "a"
        scene.apply(cmd.TransferTask(task_id, WARM, TransferTarget(worker_id=other)))
        scene.apply(cmd.AcceptOffer(other, scene.consult_offer().reservation.reservation_id))
        assert scene.task(task_id).worker_id == other
    digest = scene.engine.digest()
    with pytest.raises(CoreError) as refused:
        scene.apply(cmd.TransferTask(task_id, WARM, TransferTarget(worker_id="a")))
    assert refused.value.kind is ErrorKind.RESOURCE_EXHAUSTED
    assert scene.engine.digest() == digest


def test_events_name_every_agent_concerned(scene: Scene) -> None:
    scene.worker("a")
    task_id = scene.assigned()
    scene.worker("b")
    scene.engine.take_events()
    scene.apply(cmd.TransferTask(task_id, WARM, TransferTarget(worker_id="b")))
    scene.apply(cmd.AcceptOffer("b", scene.consult_offer().reservation.reservation_id))
    scene.apply(cmd.PauseTask(task_id))
    events = scene.engine.take_events()
    completed = [e for e in events if isinstance(e, TransferChanged)][-1]
    assert completed.transfer.status is TransferStatus.COMPLETED
    assert completed.workers == ("a", "b")
    assert any(isinstance(e, TaskPaused) and e.worker_id == "b" for e in events)
