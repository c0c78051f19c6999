"""Conversations end to end over gRPC (test clock): cold and warm transfers keep the task's age,
a cold transfer to a worker expression reaches only a matching agent, a failed warm transfer
leaves the task with its agent, pause releases capacity and resume prefers the same agent, a
pause past pause_max_s resumes by itself, a three-party consult holds capacity on both agents
and hands over, a monitor holds none, and the agents' streams say so."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from tests.e2e.raw import RawAgent, Stubs, connect


def load(stubs: Stubs, worker_id: str) -> int:
    worker = stubs.workers.GetWorker(wpb.GetWorkerRequest(worker_id=worker_id), timeout=5).worker
    return sum(worker.load_by_channel.values())


def assigned_to(stubs: Stubs, agent: RawAgent, **fields: object) -> pb.Task:
    task = stubs.create(**fields).task
    offer = agent.next_of("offer").offer
    assert offer.task_id == task.task_id
    agent.accept(offer.reservation_id)
    agent.next_of("assigned")
    return stubs.get(task.task_id)


@pytest.fixture
def scene(stubs: Stubs) -> Stubs:
    stubs.queue("support", reservation_timeout_s=30)
    stubs.queue("specialists", target_expression="team == 'spec'", pause_max_s=60)
    return stubs


def test_a_warm_transfer_keeps_the_age_and_tells_both_agents(
    scene: Stubs, agents: list[RawAgent]
) -> None:
    stubs = scene
    stubs.worker("ana")
    ana = connect(stubs, agents, "ana")
    task = assigned_to(stubs, ana)
    stubs.advance(20)
    stubs.worker("sam", attributes=_struct(team="spec"))
    sam = connect(stubs, agents, "sam")
    response = stubs.tasks.TransferTask(
        tpb.TransferTaskRequest(
            task_id=task.task_id, mode=pb.TRANSFER_MODE_WARM,
            target=pb.TransferTarget(queue_id="specialists"), reason="billing dispute",
        ),
        timeout=5,
    )  # fmt: skip
    assert response.transfer.status == pb.TRANSFER_STATUS_INITIATED
    offer = sam.next_of("offer").offer
    assert offer.consult_role == pb.PARTICIPANT_ROLE_CONSULT
    assert offer.transfer_id == response.transfer.transfer_id
    assert load(stubs, "ana") == 1 and load(stubs, "sam") == 1
    sam.accept(offer.reservation_id)
    notice = ana.next_of("transfer").transfer
    while notice.transfer.status != pb.TRANSFER_STATUS_COMPLETED:
        notice = ana.next_of("transfer").transfer
    after = stubs.get(task.task_id)
    assert after.worker_id == "sam" and after.queue_id == "specialists"
    assert after.created_at_ms == task.created_at_ms  # its age kept
    assert [(p.worker_id, p.role) for p in after.participants] == [
        ("sam", pb.PARTICIPANT_ROLE_PRIMARY)
    ]
    assert after.transfers[0].status == pb.TRANSFER_STATUS_COMPLETED
    assert load(stubs, "ana") == 0


def test_a_rejected_warm_transfer_leaves_the_task_with_its_agent(
    scene: Stubs, agents: list[RawAgent]
) -> None:
    stubs = scene
    stubs.worker("ana")
    ana = connect(stubs, agents, "ana")
    task = assigned_to(stubs, ana)
    stubs.worker("ben")
    ben = connect(stubs, agents, "ben")
    stubs.tasks.TransferTask(
        tpb.TransferTaskRequest(
            task_id=task.task_id, mode=pb.TRANSFER_MODE_WARM,
            target=pb.TransferTarget(worker_id="ben"),
        ),
        timeout=5,
    )  # fmt: skip
    ben.reject(ben.next_of("offer").offer.reservation_id)
    after = stubs.get(task.task_id)
    while after.transfers[0].status == pb.TRANSFER_STATUS_INITIATED:
        after = stubs.get(task.task_id)
    assert after.transfers[0].status == pb.TRANSFER_STATUS_FAILED
    assert after.worker_id == "ana" and after.status == pb.TASK_STATUS_ASSIGNED
    assert load(stubs, "ana") == 1 and load(stubs, "ben") == 0


def test_a_cold_transfer_keeps_the_age(scene: Stubs, agents: list[RawAgent]) -> None:
    stubs = scene
    stubs.worker("ana")
    ana = connect(stubs, agents, "ana")
    task = assigned_to(stubs, ana, priority=4)
    stubs.advance(30)
    stubs.tasks.TransferTask(
        tpb.TransferTaskRequest(
            task_id=task.task_id, mode=pb.TRANSFER_MODE_COLD,
            target=pb.TransferTarget(queue_id="specialists"),
        ),
        timeout=5,
    )  # fmt: skip
    waiting = stubs.get(task.task_id)
    assert waiting.status == pb.TASK_STATUS_PENDING and waiting.queue_id == "specialists"
    assert waiting.created_at_ms == task.created_at_ms and waiting.priority == 4
    assert "ana" in waiting.excluded_worker_ids and load(stubs, "ana") == 0


def test_a_cold_transfer_to_a_worker_expression_reaches_only_a_matching_agent(
    scene: Stubs, agents: list[RawAgent]
) -> None:
    """The specialist case: cold to `team == 'spec'`, the task waits while only a front agent
    is free, keeps its age, and is offered to the specialist once one connects."""
    stubs = scene
    stubs.worker("ana")
    ana = connect(stubs, agents, "ana")
    task = assigned_to(stubs, ana)
    stubs.worker("ben")  # free, not a specialist
    connect(stubs, agents, "ben")
    stubs.advance(30)

    def transfer(expression: str) -> tpb.TransferTaskResponse:
        return stubs.tasks.TransferTask(  # type: ignore[no-any-return]
            tpb.TransferTaskRequest(
                task_id=task.task_id, mode=pb.TRANSFER_MODE_COLD,
                target=pb.TransferTarget(worker_expression=expression),
            ),
            timeout=5,
        )  # fmt: skip

    with pytest.raises(grpc.RpcError) as refused:
        transfer("team ==")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "target.worker_expression" in (refused.value.details() or "")
    assert stubs.get(task.task_id).status == pb.TASK_STATUS_ASSIGNED  # nothing changed
    response = transfer("team == 'spec'")
    assert response.transfer.status == pb.TRANSFER_STATUS_COMPLETED
    stubs.advance(60)
    waiting = stubs.get(task.task_id)
    assert waiting.status == pb.TASK_STATUS_PENDING and waiting.queue_id == "support"
    assert waiting.created_at_ms == task.created_at_ms  # its age kept
    assert load(stubs, "ben") == 0  # never offered to the front agent
    stubs.worker("sam", attributes=_struct(team="spec"))
    sam = connect(stubs, agents, "sam")
    offer = sam.next_of("offer").offer
    assert offer.task_id == task.task_id
    sam.accept(offer.reservation_id)
    sam.next_of("assigned")
    after = stubs.get(task.task_id)
    assert after.worker_id == "sam" and after.status == pb.TASK_STATUS_ASSIGNED
    assert after.transfers[0].to_worker_id == "sam"  # who the transfer reached
    assert load(stubs, "ben") == 0


def test_pause_releases_capacity_and_resume_prefers_the_same_agent(
    scene: Stubs, agents: list[RawAgent]
) -> None:
    stubs = scene
    stubs.worker("ana")
    ana = connect(stubs, agents, "ana")
    task = assigned_to(stubs, ana)
    stubs.tasks.PauseTask(tpb.PauseTaskRequest(task_id=task.task_id), timeout=5)
    assert ana.next_of("paused").paused.task_id == task.task_id
    assert stubs.get(task.task_id).status == pb.TASK_STATUS_PAUSED and load(stubs, "ana") == 0
    stubs.worker("ben")  # free, but the task waits for ana first
    stubs.tasks.ResumeTask(
        tpb.ResumeTaskRequest(task_id=task.task_id, known_agent_wait_s=30), timeout=5
    )
    offer = ana.next_of("offer").offer
    assert offer.task_id == task.task_id and offer.worker_id == "ana"


def test_a_pause_past_pause_max_s_resumes_by_itself(scene: Stubs, agents: list[RawAgent]) -> None:
    stubs = scene
    stubs.worker("sam", attributes=_struct(team="spec"))
    sam = connect(stubs, agents, "sam")
    task = assigned_to(stubs, sam, queue_id="specialists")
    stubs.tasks.PauseTask(tpb.PauseTaskRequest(task_id=task.task_id), timeout=5)
    stubs.advance(60)
    assert sam.next_of("resumed").resumed.task_id == task.task_id
    assert sam.next_of("offer").offer.task_id == task.task_id


def test_a_consult_holds_capacity_on_both_and_hands_over_and_a_monitor_none(
    scene: Stubs, agents: list[RawAgent]
) -> None:
    stubs = scene
    stubs.worker("ana")
    ana = connect(stubs, agents, "ana")
    task = assigned_to(stubs, ana)
    stubs.worker("sam", attributes=_struct(team="spec"))
    sam = connect(stubs, agents, "sam")
    stubs.tasks.AddParticipant(
        tpb.AddParticipantRequest(
            task_id=task.task_id, role=pb.PARTICIPANT_ROLE_CONSULT,
            target=pb.TransferTarget(queue_id="specialists"),
        ),
        timeout=5,
    )  # fmt: skip
    sam.accept(sam.next_of("offer").offer.reservation_id)
    assert ana.next_of("participant").participant.participant.worker_id == "sam"
    stubs.worker("sup", capacity_by_channel={})
    stubs.tasks.AddParticipant(
        tpb.AddParticipantRequest(
            task_id=task.task_id, role=pb.PARTICIPANT_ROLE_MONITOR,
            target=pb.TransferTarget(worker_id="sup"),
        ),
        timeout=5,
    )  # fmt: skip
    roles = {p.worker_id: p.role for p in stubs.get(task.task_id).participants}
    assert roles == {
        "ana": pb.PARTICIPANT_ROLE_PRIMARY,
        "sam": pb.PARTICIPANT_ROLE_CONSULT,
        "sup": pb.PARTICIPANT_ROLE_MONITOR,
    }
    assert (load(stubs, "ana"), load(stubs, "sam"), load(stubs, "sup")) == (1, 1, 0)
    stubs.tasks.HandOverTask(
        tpb.HandOverTaskRequest(task_id=task.task_id, worker_id="sam"), timeout=5
    )
    assert stubs.get(task.task_id).worker_id == "sam" and load(stubs, "ana") == 0
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(task_id=task.task_id), timeout=5)
    assert load(stubs, "sam") == 0 and load(stubs, "sup") == 0


@pytest.mark.parametrize(
    ("request_", "code"),
    [
        (tpb.PauseTaskRequest(task_id="task-1"), grpc.StatusCode.FAILED_PRECONDITION),
        (tpb.ResumeTaskRequest(task_id="task-1"), grpc.StatusCode.FAILED_PRECONDITION),
        (
            tpb.TransferTaskRequest(task_id="task-1", target=pb.TransferTarget()),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ],
    ids=["pause pending", "resume pending", "transfer without mode"],
)
def test_illegal_moves_are_refused(scene: Stubs, request_: object, code: grpc.StatusCode) -> None:
    stubs = scene
    task_id = stubs.create().task.task_id
    request_.task_id = task_id  # type: ignore[attr-defined]
    method = getattr(stubs.tasks, type(request_).__name__.removesuffix("Request"))
    with pytest.raises(grpc.RpcError) as refused:
        method(request_, timeout=5)
    assert refused.value.code() == code
    assert stubs.get(task_id).status == pb.TASK_STATUS_PENDING


def _struct(**fields: str) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(fields)
    return struct
