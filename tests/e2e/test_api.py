"""The gRPC API end to end, as a front end and an agent desktop use it: real server on loopback,
test clock moved through ClockService."""

from __future__ import annotations

import math
import time
import urllib.request

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import stats_service_pb2 as spb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router.core.limits import ATTRIBUTES_BYTES_MAX
from tests.conftest import ServerThread
from tests.e2e.raw import RawAgent, Stubs, connect


@pytest.fixture
def stubs(stubs: Stubs) -> Stubs:
    """The shared stubs, with the queue these tests use."""
    stubs.queue("support", reservation_timeout_s=30, wrapup_s=5)
    return stubs


def code_of(call: object) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        call()  # type: ignore[operator]
    return raised.value.code()


# -- the whole lifecycle ------------------------------------------------------------------------


def test_lifecycle_over_the_connect_stream(stubs: Stubs, agents: list[RawAgent]) -> None:
    stubs.worker("ana", skills={"billing": 4}, empathy=0.8)
    agent = connect(stubs, agents, "ana", activity="available")
    created = stubs.create(required_skills={"billing": 2}, sentiment=-0.5, customer_id="c-1")
    task_id = created.task.task_id
    assert created.task.status == pb.TASK_STATUS_RESERVED

    offer = agent.next_of("offer").offer
    assert offer.task_id == task_id and offer.worker_id == "ana"
    assert offer.task.required_skills["billing"] == 2
    assert offer.expires_at_ms - offer.created_at_ms == 30_000

    accept_id = agent.accept(offer.reservation_id)
    answers = {m.WhichOneof("kind"): m for m in (agent.next(), agent.next())}  # in either order
    assert answers["assigned"].assigned.task_id == task_id
    assert answers["ack"].request_id == accept_id
    assert stubs.get(task_id).status == pb.TASK_STATUS_ASSIGNED

    completed = stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(task_id=task_id), timeout=5).task
    assert completed.status == pb.TASK_STATUS_WRAPPING
    stubs.advance(5)
    assert stubs.get(task_id).status == pb.TASK_STATUS_COMPLETED
    worker = stubs.workers.GetWorker(wpb.GetWorkerRequest(worker_id="ana"), timeout=5).worker
    assert list(worker.task_ids) == [] and worker.available


def test_a_reconnecting_agent_gets_its_pending_offer_again(
    stubs: Stubs, agents: list[RawAgent]
) -> None:
    stubs.worker("ana")
    first = connect(stubs, agents, "ana")
    task_id = stubs.create().task.task_id
    offer = first.next_of("offer").offer
    first.close()
    again = connect(stubs, agents, "ana")
    resent = again.next_of("offer").offer
    assert (resent.reservation_id, resent.task_id) == (offer.reservation_id, task_id)


def test_two_agents_compete_and_the_better_fit_wins(stubs: Stubs, agents: list[RawAgent]) -> None:
    stubs.worker("generalist", skills={"tech": 2})
    stubs.worker("expert", skills={"tech": 5})
    generalist = connect(stubs, agents, "generalist")
    expert = connect(stubs, agents, "expert")
    task_id = stubs.create(required_skills={"tech": 1}).task.task_id
    assert expert.next_of("offer").offer.task_id == task_id
    assert generalist.nothing_within()
    second = stubs.create(required_skills={"tech": 1}).task.task_id
    assert generalist.next_of("offer").offer.task_id == second  # the expert's voice line is busy


def test_reject_then_reoffer_to_another_agent(stubs: Stubs, agents: list[RawAgent]) -> None:
    stubs.worker("ana", skills={"billing": 5})
    stubs.worker("ben", skills={"billing": 3})
    ana = connect(stubs, agents, "ana")
    ben = connect(stubs, agents, "ben")
    task_id = stubs.create(required_skills={"billing": 1}).task.task_id
    offer = ana.next_of("offer").offer
    ana.reject(offer.reservation_id)
    closed = ana.next_of("offer_closed").offer_closed
    assert closed.status == pb.RESERVATION_STATUS_REJECTED
    assert ben.next_of("offer").offer.task_id == task_id
    assert list(stubs.get(task_id).excluded_worker_ids) == ["ana"]


def test_an_offer_expires_on_the_test_clock(stubs: Stubs, agents: list[RawAgent]) -> None:
    stubs.worker("ana")
    ana = connect(stubs, agents, "ana")
    task_id = stubs.create().task.task_id
    offer = ana.next_of("offer").offer
    stubs.advance(29.9)
    assert stubs.get(task_id).status == pb.TASK_STATUS_RESERVED
    stubs.advance(0.1)
    closed = ana.next_of("offer_closed").offer_closed
    assert closed.status == pb.RESERVATION_STATUS_TIMED_OUT
    assert stubs.get(task_id).status == pb.TASK_STATUS_PENDING
    request_id = ana.accept(offer.reservation_id)
    error = ana.next_of("error")
    assert error.request_id == request_id
    assert error.error.code == "FAILED_PRECONDITION" and "timed_out" in error.error.message
    accept = wpb.AcceptOfferRequest(worker_id="ana", reservation_id=offer.reservation_id)
    assert code_of(lambda: stubs.workers.AcceptOffer(accept, timeout=5)) == (
        grpc.StatusCode.FAILED_PRECONDITION
    )


def test_cancel_while_reserved_withdraws_the_offer(stubs: Stubs, agents: list[RawAgent]) -> None:
    stubs.worker("ana")
    ana = connect(stubs, agents, "ana")
    task_id = stubs.create().task.task_id
    ana.next_of("offer")
    canceled = stubs.tasks.CancelTask(
        tpb.CancelTaskRequest(task_id=task_id, reason="caller hung up"), timeout=5
    ).task
    assert canceled.status == pb.TASK_STATUS_CANCELED and canceled.cancel_reason == "caller hung up"
    closed = ana.next_of("offer_closed").offer_closed
    assert closed.status == pb.RESERVATION_STATUS_CANCELED


def test_unary_accept_and_reject(stubs: Stubs) -> None:
    stubs.worker("ana")
    stubs.worker("ben")
    task_id = stubs.create().task.task_id
    holder = stubs.get(task_id).worker_id
    reservation = _reservation_of(stubs, holder)
    other = "ben" if holder == "ana" else "ana"
    wrong = wpb.AcceptOfferRequest(worker_id=other, reservation_id=reservation)
    assert code_of(lambda: stubs.workers.AcceptOffer(wrong, timeout=5)) == (
        grpc.StatusCode.PERMISSION_DENIED
    )
    stubs.workers.RejectOffer(
        wpb.RejectOfferRequest(worker_id=holder, reservation_id=reservation), timeout=5
    )
    assert stubs.get(task_id).worker_id == other
    right = wpb.AcceptOfferRequest(worker_id=other, reservation_id=_reservation_of(stubs, other))
    assert stubs.workers.AcceptOffer(right, timeout=5).task.status == pb.TASK_STATUS_ASSIGNED


def _reservation_of(stubs: Stubs, worker_id: str) -> str:
    """The reservation id of the offer a worker holds, read from its Connect stream."""
    agent = RawAgent(stubs, worker_id)
    try:
        return agent.next_of("offer").offer.reservation_id
    finally:
        agent.close()


def test_queue_position_and_listing(stubs: Stubs) -> None:
    ids = [stubs.create(priority=p).task for p in (0, 0, 5)]
    assert [t.queue_position for t in ids] == [0, 1, 0]
    assert [stubs.get(t.task_id).queue_position for t in ids] == [1, 2, 0]
    assert all(not t.estimated_wait_known for t in ids)  # no service yet: unknown, not invented
    page = stubs.tasks.ListTasks(tpb.ListTasksRequest(page_size=2), timeout=5)
    assert [t.task_id for t in page.tasks] == [ids[0].task_id, ids[1].task_id]
    rest = stubs.tasks.ListTasks(
        tpb.ListTasksRequest(page_size=2, page_token=page.next_page_token), timeout=5
    )
    assert [t.task_id for t in rest.tasks] == [ids[2].task_id] and not rest.next_page_token
    pending = stubs.tasks.ListTasks(
        tpb.ListTasksRequest(status=pb.TASK_STATUS_PENDING, queue_id="support"), timeout=5
    )
    assert len(pending.tasks) == 3


def test_update_raises_priority(stubs: Stubs) -> None:
    first = stubs.create().task.task_id
    second = stubs.create().task.task_id
    request = tpb.UpdateTaskRequest(task_id=second, priority=9)
    updated = stubs.tasks.UpdateTask(request, timeout=5).task
    assert updated.priority == 9 and updated.queue_position == 0
    assert stubs.get(first).queue_position == 1


def test_idempotent_create(stubs: Stubs) -> None:
    first = stubs.create(client_request_id="call-42", attributes=None)
    again = stubs.create(client_request_id="call-42")
    assert again.task.task_id == first.task.task_id and again.deduplicated
    assert len(stubs.tasks.ListTasks(tpb.ListTasksRequest(), timeout=5).tasks) == 1
    assert code_of(lambda: stubs.create(client_request_id="call-42", channel="chat")) == (
        grpc.StatusCode.ALREADY_EXISTS
    )


def test_stats_report_queues_and_workers(stubs: Stubs) -> None:
    stubs.worker("ana")
    stubs.create()
    stubs.create()
    stubs.advance(3)
    stats = stubs.stats.GetRealtimeStats(spb.GetRealtimeStatsRequest(), timeout=5)
    support = {q.queue_id: q for q in stats.queues}["support"]
    assert (support.waiting, support.reserved, support.created_total) == (1, 1, 2)
    assert support.longest_wait_s == pytest.approx(3.0)
    assert stats.workers_by_activity["available"] == 1


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"skills": {"billing": 7}}, "worker.skills[billing]"),
        ({"skills": {"billing": math.nan}}, "worker.skills[billing]"),
        ({"capacity_by_channel": {"voice": -1}}, "worker.capacity_by_channel[voice]"),
        ({"empathy": 2.0}, "worker.empathy"),
        ({"activity": "lunch"}, "worker.activity"),
    ],
)
def test_bad_worker_is_invalid_argument(
    stubs: Stubs, fields: dict[str, object], field_name: str
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stubs.worker("w", **fields)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field_name in (raised.value.details() or "")
    assert code_of(lambda: stubs.workers.GetWorker(wpb.GetWorkerRequest(worker_id="w"))) == (
        grpc.StatusCode.NOT_FOUND
    )


def test_oversized_attributes_are_refused(stubs: Stubs) -> None:
    from google.protobuf import struct_pb2

    attributes = struct_pb2.Struct()
    attributes.update({"notes": "x" * ATTRIBUTES_BYTES_MAX})
    with pytest.raises(grpc.RpcError) as raised:
        stubs.create(attributes=attributes)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "task.attributes" in (raised.value.details() or "")


def test_bad_expression_names_the_position(stubs: Stubs) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stubs.queue("vip", target_expression="tier == 'gold' AND")
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "queue.target_expression: position" in (raised.value.details() or "")
    queues = stubs.admin.ListQueues(apb.ListQueuesRequest(), timeout=5).queues
    assert [q.queue_id for q in queues] == ["support"]


def test_unknown_things_are_not_found(stubs: Stubs) -> None:
    assert code_of(lambda: stubs.create(queue_id="nope")) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: stubs.get("task-999")) == grpc.StatusCode.NOT_FOUND
    set_activity = wpb.SetActivityRequest(worker_id="ghost", activity="available")
    assert code_of(lambda: stubs.workers.SetActivity(set_activity)) == grpc.StatusCode.NOT_FOUND


def test_illegal_transitions_are_failed_precondition(stubs: Stubs) -> None:
    task_id = stubs.create().task.task_id
    complete = tpb.CompleteTaskRequest(task_id=task_id)
    assert (
        code_of(lambda: stubs.tasks.CompleteTask(complete)) == grpc.StatusCode.FAILED_PRECONDITION
    )
    assert stubs.get(task_id).status == pb.TASK_STATUS_PENDING  # the bad request changed nothing


def test_connect_must_start_with_hello(stubs: Stubs) -> None:
    heartbeat = wpb.ConnectRequest(heartbeat=wpb.ConnectRequest.Heartbeat())
    responses = stubs.workers.Connect(iter([heartbeat]), timeout=5)
    with pytest.raises(grpc.RpcError) as raised:
        list(responses)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_real_clock_refuses_to_be_moved() -> None:
    from router.server import ServerConfig

    server = ServerThread(ServerConfig(port=0, metrics_port=None, durable=False)).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stubs = Stubs.of(channel)
            assert code_of(lambda: stubs.advance(1)) == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        server.stop()


# -- operations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("metrics_port", [0])  # the /metrics endpoint on
def test_health_and_metrics(router_server: ServerThread, stubs: Stubs) -> None:
    health = health_pb2_grpc.HealthStub(grpc.insecure_channel(router_server.address))
    reply = health.Check(health_pb2.HealthCheckRequest(service="switchboard.v1.TaskService"))
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    stubs.worker("ana")
    stubs.create()
    stubs.create()
    assert router_server.server is not None
    port = router_server.server.metrics_port
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'switchboard_tasks_created_total{channel="voice",queue="support"} 2.0' in body
    assert 'switchboard_offers_total{outcome="offered",queue="support"} 1.0' in body
    assert "switchboard_routing_decision_seconds_bucket" in body
    registry = router_server.server.registry
    deadline_s = time.monotonic() + 3  # state gauges refresh every STATE_METRICS_INTERVAL_S
    while registry.get_sample_value("switchboard_workers", {"activity": "available"}) != 1:
        assert time.monotonic() < deadline_s, "the workers gauge was not refreshed"
        time.sleep(0.05)
    assert registry.get_sample_value("switchboard_queue_depth", {"queue": "support"}) == 1
