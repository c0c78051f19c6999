"""Presence in the core (`router/core/presence.py`): grace, the lost activity, re-queue after a
disconnect, missed offers, drain, and their share of snapshots and of the digest."""

from __future__ import annotations

import pytest

from router.core import codec, snapshot
from router.core import commands as cmd
from router.core.engine import Engine
from router.core.errors import CoreError, FailedPrecondition, InvalidArgument
from router.core.events import TaskRequeued, WorkerPresenceChanged
from router.core.limits import (
    MISSED_OFFERS_MAX_LIMIT,
    PRESENCE_GRACE_S_MAX,
    PRESENCE_TIMEOUT_S_MAX,
    REQUEUE_AFTER_DISCONNECT_S_MAX,
)
from router.core.model import PresenceSettings, QueueConfig, TaskSpec, TaskStatus, WorkerProfile

START_MS = 1_000_000


class Scene:
    """An engine with a queue ("support", 30 s offers) and workers created available."""

    def __init__(self, *workers: str) -> None:
        self.engine = Engine()
        self.now_ms = START_MS
        self.apply(cmd.UpsertQueue(QueueConfig("support", reservation_timeout_s=30)))
        for worker_id in workers:
            self.worker(worker_id)

    def apply(self, command: cmd.Command[object]) -> object:
        # As the writer applies it: in its journaled form.
        result = self.engine.apply(codec.normalize(command), self.now_ms)
        self.engine.check_invariants()
        return result

    def advance(self, seconds: float) -> None:
        self.now_ms += round(seconds * 1000)
        self.apply(cmd.Tick())

    def worker(self, worker_id: str, activity: str = "available") -> None:
        profile = WorkerProfile(
            worker_id, capacity_by_channel={"voice": 1, "chat": 2}, activity=activity
        )
        self.apply(cmd.UpsertWorker(profile))

    def create(self, channel: str = "voice", **fields: object) -> str:
        command = codec.normalize(cmd.CreateTask(TaskSpec(channel, "support", **fields)))
        created = self.engine.apply(command, self.now_ms)
        self.engine.check_invariants()
        return created.task.task_id

    def task(self, task_id: str) -> tuple[TaskStatus, str]:
        task = self.engine.get_task(task_id)
        return task.status, task.worker_id

    def accept(self, task_id: str) -> None:
        task = self.engine.get_task(task_id)
        self.apply(cmd.AcceptOffer(task.worker_id, task.reservation_id))

    def activity(self, worker_id: str) -> str:
        return self.engine.get_worker(worker_id).activity

    def changes(self) -> list[tuple[str, str]]:
        return [
            (e.worker_id, e.change)
            for e in self.engine.take_events()
            if isinstance(e, WorkerPresenceChanged)
        ]

    def refused(self, command: cmd.Command[object], error: type[CoreError]) -> CoreError:
        digest = self.engine.digest()
        with pytest.raises(error) as raised:
            self.engine.apply(command, self.now_ms)
        assert self.engine.digest() == digest
        return raised.value


def test_a_lost_worker_keeps_its_offer_through_the_grace_then_it_moves_on() -> None:
    scene = Scene("ana")
    scene.apply(cmd.WorkerAttached("ana"))
    task_id = scene.create()
    assert scene.task(task_id) == (TaskStatus.RESERVED, "ana")
    scene.worker("ben")  # busy-free but the offer is ana's
    scene.apply(cmd.PresenceLost("ana"))
    scene.advance(9.999)
    assert scene.task(task_id) == (TaskStatus.RESERVED, "ana")
    assert scene.activity("ana") == "available"
    scene.engine.take_events()
    scene.advance(0.001)  # the 10 s default grace runs out
    assert scene.activity("ana") == "offline"
    assert scene.task(task_id) == (TaskStatus.RESERVED, "ben")
    assert ("ana", "expired") in scene.changes()


def test_a_lost_worker_receives_nothing_new_and_a_reconnect_keeps_everything() -> None:
    scene = Scene("ana")
    scene.apply(cmd.WorkerAttached("ana"))
    first = scene.create()
    scene.apply(cmd.PresenceLost("ana"))
    second = scene.create("chat")
    assert scene.task(second) == (TaskStatus.PENDING, "")  # ana's chat line is free, but lost
    scene.advance(5)
    scene.apply(cmd.WorkerAttached("ana"))
    assert scene.task(first) == (TaskStatus.RESERVED, "ana")
    assert scene.task(second) == (TaskStatus.RESERVED, "ana")
    scene.advance(20)  # the grace timer was cancelled
    assert scene.activity("ana") == "available"


def test_a_reconnect_after_the_grace_sets_the_hello_activity() -> None:
    scene = Scene("ana")
    scene.apply(cmd.WorkerAttached("ana"))
    scene.apply(cmd.PresenceLost("ana"))
    scene.advance(10)
    assert scene.activity("ana") == "offline"
    task_id = scene.create()
    assert scene.task(task_id) == (TaskStatus.PENDING, "")
    scene.apply(cmd.WorkerAttached("ana", "available"))
    assert scene.task(task_id) == (TaskStatus.RESERVED, "ana")


def test_digital_work_is_requeued_after_the_channel_delay_and_voice_stays() -> None:
    scene = Scene("ana")
    scene.apply(cmd.UpsertChannel("chat", requeue_after_disconnect_s=60))
    scene.apply(cmd.WorkerAttached("ana"))
    call, chat = scene.create("voice"), scene.create("chat")
    scene.accept(call)
    scene.accept(chat)
    scene.advance(100)
    scene.apply(cmd.PresenceLost("ana"))
    scene.advance(59.999)
    assert scene.task(chat) == (TaskStatus.ASSIGNED, "ana")
    scene.engine.take_events()
    scene.advance(0.001)
    assert scene.task(chat) == (TaskStatus.PENDING, "")
    assert scene.task(call) == (TaskStatus.ASSIGNED, "ana")
    requeued = [e for e in scene.engine.take_events() if isinstance(e, TaskRequeued)]
    assert [(e.task_id, e.worker_id) for e in requeued] == [(chat, "ana")]
    task = scene.engine.get_task(chat)
    assert task.known_agent_id == "ana" and task.created_ms == START_MS  # keeps its age
    # The same agent comes back before anyone else is free: it gets the chat again.
    scene.worker("ben", activity="offline")
    scene.apply(cmd.WorkerAttached("ana", "available"))
    assert scene.task(chat) == (TaskStatus.RESERVED, "ana")


def test_a_reconnect_before_the_delay_keeps_the_digital_work() -> None:
    scene = Scene("ana")
    scene.apply(cmd.UpsertChannel("chat", requeue_after_disconnect_s=60))
    scene.apply(cmd.WorkerAttached("ana"))
    chat = scene.create("chat")
    scene.accept(chat)
    scene.apply(cmd.PresenceLost("ana"))
    scene.advance(30)
    scene.apply(cmd.WorkerAttached("ana", "available"))
    scene.advance(60)
    assert scene.task(chat) == (TaskStatus.ASSIGNED, "ana")


def test_missed_offers_in_a_row_move_the_worker_away() -> None:
    scene = Scene("ana")
    scene.apply(cmd.UpsertPresenceSettings(PresenceSettings(missed_offers_max=2)))
    assert scene.engine.activities["away"] is False  # created, unavailable
    first = scene.create()
    scene.advance(30)  # missed 1
    assert scene.engine.presence.of("ana").missed_offers == 1
    scene.apply(cmd.RejectOffer("ana", scene.engine.get_task(scene.create("chat")).reservation_id))
    assert scene.engine.presence.of("ana").missed_offers == 0  # a reject ends the run
    second = scene.create()
    assert scene.task(second) == (TaskStatus.RESERVED, "ana")
    scene.advance(30)
    assert scene.activity("ana") == "available"
    scene.advance(30)  # a third task... ana has the chat only now: create one more miss
    third = scene.create()
    scene.engine.take_events()
    scene.advance(30)
    assert scene.activity("ana") == "away"
    assert ("ana", "away") in scene.changes()
    assert {scene.task(t)[0] for t in (first, second, third)} == {TaskStatus.PENDING}


def test_without_a_limit_missed_offers_are_not_counted() -> None:
    scene = Scene("ana")
    for _ in range(3):
        scene.create()
        scene.advance(30)
    assert scene.activity("ana") == "available"
    assert "presence" not in scene.engine.digest_state()


def test_a_draining_worker_finishes_its_work_and_gets_nothing_new() -> None:
    scene = Scene("ana")
    held = scene.create("chat")
    scene.accept(held)
    copy = scene.apply(cmd.SetDraining("ana", True))
    assert copy.available  # its activity still is
    waiting = scene.create("chat")
    assert scene.task(waiting) == (TaskStatus.PENDING, "")
    scene.apply(cmd.CompleteTask(held))
    assert scene.task(waiting) == (TaskStatus.PENDING, "")
    scene.apply(cmd.SetDraining("ana", False))
    assert scene.task(waiting) == (TaskStatus.RESERVED, "ana")
    assert scene.changes() == [("ana", "draining"), ("ana", "undrained")]
    assert "presence" not in scene.engine.digest_state()  # nothing left to keep


def test_a_goodbye_moves_the_worker_to_the_lost_activity_at_once() -> None:
    scene = Scene("ana", "ben")
    scene.apply(cmd.WorkerAttached("ana"))
    task_id = scene.create()
    assert scene.task(task_id)[1] in ("ana", "ben")
    offered_to = scene.task(task_id)[1]
    scene.apply(cmd.WorkerAttached(offered_to))
    scene.apply(cmd.WorkerDetached(offered_to))
    assert scene.activity(offered_to) == "offline"
    other = "ben" if offered_to == "ana" else "ana"
    assert scene.task(task_id) == (TaskStatus.RESERVED, other)
    scene.advance(60)  # no grace timer to fire
    assert scene.engine.presence.of(offered_to).connected is False


def test_a_new_leader_starts_the_grace_of_every_connected_worker() -> None:
    scene = Scene("ana", "ben", "cy")
    scene.apply(cmd.WorkerAttached("ana"))
    scene.apply(cmd.WorkerAttached("ben"))
    assert scene.apply(cmd.AllPresenceLost()) == 2
    scene.apply(cmd.WorkerAttached("ben"))
    scene.advance(10)
    assert [scene.activity(w) for w in ("ana", "ben", "cy")] == ["offline", "available",
                                                                   "available"]  # fmt: skip


def test_refused_presence_commands_change_nothing() -> None:
    scene = Scene("ana")
    scene.refused(cmd.PresenceLost("ana"), FailedPrecondition)  # not connected
    scene.refused(cmd.WorkerAttached("ana", "nope"), InvalidArgument)
    scene.refused(cmd.WorkerDetached("ana", "available"), InvalidArgument)
    scene.refused(cmd.SetDraining("nobody", True), CoreError)
    bad = [
        PresenceSettings(presence_timeout_s=0),
        PresenceSettings(presence_grace_s=-1),
        PresenceSettings(presence_grace_s=float("nan")),
        PresenceSettings(missed_offers_max=MISSED_OFFERS_MAX_LIMIT + 1),
        PresenceSettings(presence_timeout_s=PRESENCE_TIMEOUT_S_MAX + 1),
        PresenceSettings(presence_grace_s=PRESENCE_GRACE_S_MAX + 1),
        PresenceSettings(lost_activity="available"),
        PresenceSettings(away_activity="not an id"),
    ]
    for settings in bad:
        scene.refused(cmd.UpsertPresenceSettings(settings), InvalidArgument)
    error = scene.refused(cmd.UpsertChannel("chat", requeue_after_disconnect_s=-5), InvalidArgument)
    assert "requeue_after_disconnect_s" in error.message
    too_long = REQUEUE_AFTER_DISCONNECT_S_MAX + 1
    error = scene.refused(cmd.UpsertChannel("chat", requeue_after_disconnect_s=too_long),
                          InvalidArgument)  # fmt: skip
    assert "requeue_after_disconnect_s" in error.message


def test_presence_settings_at_their_limits_are_accepted() -> None:
    scene = Scene("ana")
    at_limits = PresenceSettings(
        presence_timeout_s=PRESENCE_TIMEOUT_S_MAX, presence_grace_s=PRESENCE_GRACE_S_MAX,
        missed_offers_max=MISSED_OFFERS_MAX_LIMIT,
    )  # fmt: skip
    assert scene.apply(cmd.UpsertPresenceSettings(at_limits)) == at_limits
    scene.apply(
        cmd.UpsertChannel("chat", requeue_after_disconnect_s=REQUEUE_AFTER_DISCONNECT_S_MAX)
    )


def test_a_snapshot_taken_in_the_grace_restores_the_same_state() -> None:
    scene = Scene("ana", "ben")
    scene.apply(cmd.UpsertChannel("chat", requeue_after_disconnect_s=30))
    scene.apply(cmd.UpsertPresenceSettings(PresenceSettings(missed_offers_max=3)))
    scene.apply(cmd.WorkerAttached("ana"))
    chat = scene.create("chat")
    scene.accept(chat)
    scene.apply(cmd.SetDraining("ben", True))
    scene.apply(cmd.PresenceLost("ana"))
    scene.advance(5)
    restored = snapshot.restore(snapshot.take(scene.engine))
    assert restored.digest() == scene.engine.digest()
    restored.check_invariants()
    later = START_MS + 40_000 + (scene.now_ms - START_MS)
    for engine in (scene.engine, restored):
        engine.apply(cmd.Tick(), later)
    assert restored.digest() == scene.engine.digest()
    assert restored.get_task(chat).status is TaskStatus.PENDING


def test_an_engine_without_presence_keeps_the_digest_layout() -> None:
    scene = Scene("ana")
    scene.create()
    assert "presence" not in scene.engine.digest_state()
    scene.apply(cmd.UpsertChannel("chat", "Chat"))  # no re-queue given: nothing kept
    assert "presence" not in scene.engine.digest_state()
