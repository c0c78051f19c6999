"""The timeline's access scopes (`router/api/access.py`) against an engine in constructed cases:
an agent records outcomes as itself on a task it holds or held (transferred away, closed), and
reads a customer only through a task it holds now."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from router._proto.switchboard.v1 import timeline_service_pb2 as tlpb
from router.api.access import ACCESS, refusal
from router.api.authn import Principal, Role
from router.core import commands as cmd
from router.core.conversation_model import TransferMode, TransferTarget
from router.core.engine import Engine
from router.core.model import QueueConfig, TaskSpec, WorkerProfile

R = TypeVar("R")
CK = "ck_" + "c3" * 16
TIMELINE = "/switchboard.v1.TimelineService/"


class Scene:
    def __init__(self) -> None:
        self.engine = Engine()
        self.now_ms = 1_000_000
        self.apply(cmd.UpsertQueue(QueueConfig("general", wrapup_s=30)))
        for worker_id in ("ann", "bea", "cal"):
            profile = WorkerProfile(worker_id, capacity_by_channel={"chat": 1}, activity="break")
            self.apply(cmd.UpsertWorker(profile))

    def apply(self, command: cmd.Command[R]) -> R:
        return self.engine.apply(command, self.now_ms)

    def assign(self, worker_id: str) -> str:
        """A keyed task assigned to the worker."""
        self.apply(cmd.SetActivity(worker_id, "available"))
        spec = TaskSpec("chat", queue_id="general", customer_id=CK)
        task = self.apply(cmd.CreateTask(spec, customer_keyed=True)).task
        offer = self.engine.tasks.open[task.task_id].offer_ids[0]
        self.apply(cmd.AcceptOffer(worker_id, offer))
        self.apply(cmd.SetActivity(worker_id, "break"))
        return task.task_id


@pytest.fixture
def scene() -> Scene:
    return Scene()


def _refused(scene: Scene, method: str, worker_id: str, request: Any) -> str | None:
    agent = Principal(subject=worker_id, role=Role.AGENT, worker_id=worker_id)
    return refusal(ACCESS[TIMELINE + method], agent, request, scene.engine)


def test_an_agent_records_as_itself_on_a_task_it_holds_or_held(scene: Scene) -> None:
    task_id = scene.assign("ann")
    own = tlpb.RecordOutcomeRequest(task_id=task_id, worker_id="ann")
    assert _refused(scene, "RecordOutcome", "ann", own) is None
    assert _refused(scene, "RecordOutcome", "bea", own) is not None  # not as another
    as_bea = tlpb.RecordOutcomeRequest(task_id=task_id, worker_id="bea")
    assert _refused(scene, "RecordOutcome", "bea", as_bea) is not None  # not her task
    # Transferred to bea: ann held it, bea holds it.
    scene.apply(cmd.SetActivity("bea", "available"))
    scene.apply(cmd.TransferTask(task_id, TransferMode.COLD, TransferTarget(worker_id="bea")))
    offer = scene.engine.tasks.open[task_id].offer_ids[0]
    scene.apply(cmd.AcceptOffer("bea", offer))
    assert _refused(scene, "RecordOutcome", "ann", own) is None
    assert _refused(scene, "RecordAgentAction", "bea", as_bea) is None
    # Closed: its last agent still records its outcome; nobody else.
    scene.apply(cmd.CompleteTask(task_id))
    scene.apply(cmd.WrapUpTask(task_id))
    assert task_id not in scene.engine.tasks.open
    assert _refused(scene, "RecordOutcome", "bea", as_bea) is None
    as_cal = tlpb.RecordOutcomeRequest(task_id=task_id, worker_id="cal")
    assert _refused(scene, "RecordOutcome", "cal", as_cal) is not None


def test_an_agent_reads_a_customer_only_through_a_task_it_holds_now(scene: Scene) -> None:
    task_id = scene.assign("ann")
    by_task = tlpb.GetTimelineRequest(task_id=task_id)
    assert _refused(scene, "GetTimeline", "ann", by_task) is None
    assert _refused(scene, "GetTimeline", "bea", by_task) is not None
    by_id = tlpb.GetTimelineRequest(customer_id="alice")
    assert _refused(scene, "GetTimeline", "ann", by_id) is not None
    others = tlpb.GetTimelineRequest(task_id=task_id, worker_id="bea")
    assert _refused(scene, "GetTimeline", "ann", others) is not None
    mine = tlpb.GetTimelineRequest(task_id=task_id, worker_id="ann")
    assert _refused(scene, "GetTimeline", "ann", mine) is None
    context = tlpb.GetCustomerContextRequest(task_id=task_id)
    assert _refused(scene, "GetCustomerContext", "ann", context) is None
    scene.apply(cmd.CompleteTask(task_id))
    assert _refused(scene, "GetCustomerContext", "ann", context) is None  # wrapping: holds it
    scene.apply(cmd.WrapUpTask(task_id))
    assert _refused(scene, "GetCustomerContext", "ann", context) is not None  # done: no more
