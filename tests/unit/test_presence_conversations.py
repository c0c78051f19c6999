"""Presence meets conversations: an agent who goes away (a lost stream, a drain, an unavailable
activity) while offered a consult, consulting, or holding a task with a consult."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from router.core import codec
from router.core import commands as cmd
from router.core.conversation_model import (
    ParticipantRole,
    TransferMode,
    TransferStatus,
    TransferTarget,
)
from router.core.engine import Engine
from router.core.events import ConsultOffered
from router.core.model import PresenceSettings, QueueConfig, TaskSpec, TaskStatus, WorkerProfile
from router.obs.metrics import RouterMetrics

GRACE_S = 10
REQUEUE_S = 30


class Scene:
    """A chat queue; chats of a worker lost for REQUEUE_S go back to routing."""

    def __init__(self) -> None:
        self.engine = Engine()
        self.now_ms = 1_000_000
        self.apply(cmd.UpsertQueue(QueueConfig("support", reservation_timeout_s=60)))
        self.apply(cmd.UpsertPresenceSettings(PresenceSettings(presence_grace_s=GRACE_S)))
        self.apply(cmd.UpsertChannel("chat", requeue_after_disconnect_s=REQUEUE_S))

    def apply(self, command: cmd.Command[Any]) -> Any:
        result = self.engine.apply(codec.normalize(command), self.now_ms)
        self.engine.check_invariants()
        return result

    def advance(self, seconds: float) -> None:
        self.now_ms += round(seconds * 1000)
        self.apply(cmd.Tick())

    def worker(self, worker_id: str, activity: str = "available") -> None:
        profile = WorkerProfile(worker_id, capacity_by_channel={"chat": 2}, activity=activity)
        self.apply(cmd.UpsertWorker(profile))
        self.apply(cmd.WorkerAttached(worker_id))

    def assigned_to(self, worker_id: str) -> str:
        task_id: str = self.apply(cmd.CreateTask(TaskSpec("chat", "support"))).task.task_id
        task = self.engine.get_task(task_id)
        assert task.worker_id == worker_id
        self.apply(cmd.AcceptOffer(worker_id, task.reservation_id))
        return task_id

    def accept_offers_of(self, worker_id: str) -> None:
        for reservation in list(self.engine.reservations.values()):
            if reservation.worker_id == worker_id and reservation.status.value == "pending":
                self.apply(cmd.AcceptOffer(worker_id, reservation.reservation_id))

    def consult_offer(self) -> ConsultOffered:
        offers = [e for e in self.engine.take_events() if isinstance(e, ConsultOffered)]
        assert len(offers) == 1, offers
        return offers[0]

    def load(self, worker_id: str) -> int:
        return sum(self.engine.get_worker(worker_id).load_by_channel.values())


@pytest.fixture
def scene() -> Scene:
    scene = Scene()
    scene.worker("a")
    return scene


@pytest.mark.parametrize("goes", ["lost", "drained", "break"])
def test_a_consult_offer_to_an_agent_who_goes_away_is_withdrawn_and_the_transfer_fails(
    scene: Scene, goes: str
) -> None:
    task_id = scene.assigned_to("a")
    scene.worker("b", activity="break")
    scene.apply(cmd.SetActivity("b", "available"))
    scene.engine.take_events()
    transfer_id = scene.apply(
        cmd.TransferTask(task_id, TransferMode.WARM, TransferTarget(worker_id="b"))
    ).transfer_id
    scene.consult_offer()
    assert scene.load("b") == 1
    if goes == "lost":
        scene.apply(cmd.PresenceLost("b"))
        scene.advance(GRACE_S)
    elif goes == "drained":
        scene.apply(cmd.SetDraining("b", True))
    else:
        scene.apply(cmd.SetActivity("b", "break"))
    transfer = scene.engine.conversation_of(task_id).transfers[0]
    assert (transfer.transfer_id, transfer.status) == (transfer_id, TransferStatus.FAILED)
    assert transfer.outcome == "worker_unavailable"
    task = scene.engine.get_task(task_id)
    assert (task.status, task.worker_id) == (TaskStatus.ASSIGNED, "a")
    assert scene.load("b") == 0 and scene.load("a") == 1


def test_a_lost_primarys_chat_goes_back_to_routing_without_its_consult(scene: Scene) -> None:
    task_id = scene.assigned_to("a")
    scene.worker("s")
    scene.apply(cmd.AddParticipant(task_id, ParticipantRole.CONSULT, TransferTarget("support")))
    offer = scene.consult_offer()
    assert offer.reservation.worker_id == "s"
    scene.apply(cmd.AcceptOffer("s", offer.reservation.reservation_id))
    scene.advance(20)  # handled for 20 s
    scene.apply(cmd.SetActivity("s", "break"))  # so that nobody takes the task at once
    scene.apply(cmd.PresenceLost("a"))
    scene.advance(REQUEUE_S)
    task = scene.engine.get_task(task_id)
    assert task.status is TaskStatus.PENDING and task.known_agent_id == "a"
    assert scene.load("s") == 0 and scene.load("a") == 0
    assert not scene.engine.conversation_of(task_id).participants
    # Its handle time so far (20 s, then the time until the re-queue) is kept.
    assert scene.engine.conversations.earlier_handle_ms(task_id) == (20 + REQUEUE_S) * 1000


def test_a_lost_consult_leaves_the_task_with_its_primary(scene: Scene) -> None:
    task_id = scene.assigned_to("a")
    scene.worker("s")
    scene.apply(cmd.AddParticipant(task_id, ParticipantRole.CONSULT, TransferTarget("support")))
    scene.apply(cmd.AcceptOffer("s", scene.consult_offer().reservation.reservation_id))
    scene.apply(cmd.PresenceLost("s"))
    scene.advance(REQUEUE_S)
    task = scene.engine.get_task(task_id)
    assert (task.status, task.worker_id) == (TaskStatus.ASSIGNED, "a")
    assert not scene.engine.conversation_of(task_id).participants
    assert scene.load("s") == 0 and scene.load("a") == 1


def test_the_metrics_count_presence_transfers_pauses_and_requeues() -> None:
    scene = Scene()
    metrics = RouterMetrics(CollectorRegistry())
    scene.worker("c")
    scene.assigned_to("c")
    scene.apply(cmd.PresenceLost("c"))
    scene.advance(REQUEUE_S)  # the grace, then the re-queue
    scene.worker("a")
    scene.accept_offers_of("a")  # the re-queued task
    paused = scene.assigned_to("a")
    scene.apply(cmd.PauseTask(paused))
    scene.apply(cmd.ResumeTask(paused))
    scene.worker("b")
    transferred = scene.assigned_to("b")
    scene.apply(cmd.TransferTask(transferred, TransferMode.COLD, TransferTarget("support")))
    metrics.observe_events(scene.engine.take_events())

    def value(name: str, **labels: str) -> float | None:
        return metrics.registry.get_sample_value(f"switchboard_{name}_total", labels)

    assert value("presence_changes", change="connected") == 3
    assert value("presence_changes", change="lost") == 1
    assert value("presence_changes", change="expired") == 1
    assert value("tasks_paused", queue="support", channel="chat") == 1
    assert value("tasks_resumed", queue="support", channel="chat", origin="caller") == 1
    for status in ("initiated", "completed"):
        assert value("transfers", queue="support", mode="cold", status=status) == 1
    assert value("tasks_requeued", queue="support", channel="chat") == 1
