"""The timeline feeds routing, end to end through gRPC (the README's examples): an unresolved
repeat contact goes to the agent who handled it, else to a specialist; a caller who verified a
PIN in the IVR skips the general queue; a customer whose last contact was tagged `sales` goes
to sales. And outcomes and agent actions as agents record them, within their scope."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import event_service_pb2 as epb
from router._proto.switchboard.v1 import event_service_pb2_grpc as egrpc
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import timeline_service_pb2 as tlpb
from router._proto.switchboard.v1 import timeline_service_pb2_grpc as tlgrpc
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router.api.authn import AuthConfig, Role
from router.mint import mint_token
from router.server import ServerConfig
from tests.conftest import ServerThread
from tests.e2e import raw
from tests.e2e.raw import RawAgent, Stubs

UNRESOLVED_REPEAT = "customer.contacts_7d >= 1 AND customer.last_resolved == false"

# Every test here creates tasks with a customer id through the TaskService, which keys it (and
# sets `CreateTask.customer_keyed`) once the privacy part is merged (it adds Task.customer_key);
# until then the tasks have no routing context. They pass on a trial merge of both branches.
pytestmark = pytest.mark.skipif(
    "customer_key" not in pb.Task.DESCRIPTOR.fields_by_name,
    reason="needs CreateTask to key customer ids (Task.customer_key: the privacy helper's part)",
)


@pytest.fixture
def timeline(channel: grpc.Channel) -> tlgrpc.TimelineServiceStub:
    return tlgrpc.TimelineServiceStub(channel)


def policy(stubs: Stubs, *filters: tuple[str, str, list[pb.RoutingStep]]) -> None:
    """Policy "inbound": each (expression, queue, steps) in order, else the general queue."""
    routing_policy = pb.RoutingPolicy(
        policy_id="inbound",
        filters=[
            pb.PolicyFilter(name=queue_id, expression=expression,
                            route=pb.Route(queue_id=queue_id, steps=steps))
            for expression, queue_id, steps in filters
        ],
        default_route=pb.Route(queue_id="general"),
    )  # fmt: skip
    stubs.admin.UpsertRoutingPolicy(apb.UpsertRoutingPolicyRequest(policy=routing_policy))


def call(stubs: Stubs, customer_id: str, **fields: Any) -> pb.Task:
    fields.setdefault("channel", "voice")
    return stubs.create(queue_id="", policy_id="inbound", customer_id=customer_id, **fields).task


def take(agent: RawAgent, task_id: str) -> None:
    """The agent accepts its offer of this task (read from its Connect stream)."""
    while True:
        offer = agent.next_of("offer").offer
        if offer.task_id == task_id:
            break
    agent.accept(offer.reservation_id)
    while agent.next_of("assigned").assigned.task_id != task_id:
        pass


def set_activity(stubs: Stubs, worker_id: str, activity: str) -> None:
    request = wpb.SetActivityRequest(worker_id=worker_id, activity=activity)
    stubs.workers.SetActivity(request, timeout=5)


def outcome(
    timeline: tlgrpc.TimelineServiceStub, task_id: str, resolution: int, **fields: Any
) -> tlpb.TimelineEntry:
    request = tlpb.RecordOutcomeRequest(task_id=task_id, resolution=resolution, **fields)
    return timeline.RecordOutcome(request, timeout=5).entry


def test_an_unresolved_repeat_contact_goes_to_its_last_agent_else_a_specialist(
    stubs: Stubs, timeline: tlgrpc.TimelineServiceStub, agents: list[RawAgent]
) -> None:
    """The README's example: the known-agent step waits 60 s for the agent who handled the
    last contact, then any specialist may take it."""
    stubs.queue("general")
    stubs.queue("specialists")
    stubs.worker("ann", attributes=_struct({"specialist": False}))
    stubs.worker("sam", attributes=_struct({"specialist": True}), activity="break")
    steps = [pb.RoutingStep(timeout_s=60, known_agent=True),
             pb.RoutingStep(worker_expression="specialist")]  # fmt: skip
    policy(stubs, (UNRESOLVED_REPEAT, "specialists", steps))
    ann = raw.connect(stubs, agents, "ann", activity="available")

    first = call(stubs, "alice")
    assert first.queue_id == "general"
    take(ann, first.task_id)
    note = "Card blocked, wants a call back"
    entry = outcome(timeline, first.task_id, tlpb.RESOLUTION_UNRESOLVED, worker_id="ann",
                    disposition="callback_needed", note=note)  # fmt: skip
    assert entry.outcome.note == "Card blocked, wants a call back"
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(task_id=first.task_id), timeout=5)

    # She calls again: her last agent is free and gets her at once.
    second = call(stubs, "alice")
    assert (second.queue_id, second.step_index) == ("specialists", 0)
    take(ann, second.task_id)
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(task_id=second.task_id), timeout=5)
    outcome(timeline, second.task_id, tlpb.RESOLUTION_UNRESOLVED, worker_id="ann")

    # And again, with ann on a break: she waits for ann 60 s, then a specialist takes her.
    set_activity(stubs, "ann", "break")
    set_activity(stubs, "sam", "available")
    third = call(stubs, "alice")
    assert third.queue_id == "specialists"
    assert stubs.get(third.task_id).worker_id == ""  # sam is free, but not her last agent
    stubs.advance(61)
    assert stubs.get(third.task_id).worker_id == "sam"

    # A resolved contact, or another customer, takes the general route.
    context = timeline.GetCustomerContext(
        tlpb.GetCustomerContextRequest(customer_id="alice"), timeout=5
    ).context
    assert (context.contacts_7d, context.last_agent_id) == (3, "ann")
    assert context.last_resolution == tlpb.RESOLUTION_UNRESOLVED
    assert call(stubs, "bob").queue_id == "general"


def test_a_caller_who_verified_a_pin_skips_the_general_queue(
    stubs: Stubs, timeline: tlgrpc.TimelineServiceStub
) -> None:
    stubs.queue("general")
    stubs.queue("verified")
    policy(stubs, ("customer.verified", "verified", []))
    pin = tlpb.ExternalEntry(kind="ivr.pin_verified", source="ivr", identity_verified=True)
    timeline.AppendTimelineEntry(
        tlpb.AppendTimelineEntryRequest(customer_id="merchant-42", entry=pin), timeout=5
    )
    assert call(stubs, "merchant-42").queue_id == "verified"
    assert call(stubs, "merchant-43").queue_id == "general"  # no PIN
    stubs.advance(901)  # the verification lasts identity_verification_window_s (900 s)
    assert call(stubs, "merchant-42").queue_id == "general"
    # A CRM that verified the customer itself says so in the profile.
    profile = tlpb.CustomerProfile(customer_id="merchant-43", verified=True, tier="gold")
    timeline.UpsertCustomerProfile(tlpb.UpsertCustomerProfileRequest(profile=profile), timeout=5)
    assert call(stubs, "merchant-43").queue_id == "verified"


def test_a_customer_whose_last_contact_was_tagged_sales_goes_to_sales(
    stubs: Stubs, timeline: tlgrpc.TimelineServiceStub, channel: grpc.Channel
) -> None:
    stubs.queue("general")
    stubs.queue("sales")
    policy(stubs, ("customer.last_tags HAS 'sales'", "sales", []))
    first = call(stubs, "dana", channel="chat", sentiment=-0.5)
    assert first.queue_id == "general"
    outcome(timeline, first.task_id, tlpb.RESOLUTION_RESOLVED, disposition="quote_requested",
            tags=["sales", "upgrade"])  # fmt: skip
    assert call(stubs, "dana", channel="chat").queue_id == "sales"
    outcome(timeline, first.task_id, tlpb.RESOLUTION_RESOLVED, tags=["support"])
    assert call(stubs, "dana", channel="chat").queue_id == "general"
    # The feed names the customer by its key only, on the task and on the outcome.
    events = egrpc.EventServiceStub(channel)
    request = epb.SubscribeRequest(from_oldest=True, task_ids=[first.task_id])
    stream = events.Subscribe(request, timeout=5)
    received = list(next(stream).events)
    stream.cancel()
    created = next(e for e in received if e.type == epb.EVENT_TYPE_TASK_CREATED)
    recorded = next(e for e in received if e.type == epb.EVENT_TYPE_OUTCOME_RECORDED)
    assert created.customer_key.startswith("ck_")
    assert recorded.customer_key == created.customer_key
    assert (recorded.disposition, list(recorded.tags)) == ("quote_requested", ["sales", "upgrade"])
    assert recorded.resolution == tlpb.RESOLUTION_RESOLVED


# -- agents' scope -------------------------------------------------------------------------------

SECRET = b"a-test-secret-of-at-least-thirty-two-bytes"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[ServerThread]:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    config = ServerConfig(port=0, metrics_port=None, durable=False, test_clock=True,
                          auth=AuthConfig(hs256_secret_file=secret))  # fmt: skip
    server = ServerThread(config).start()
    yield server
    server.stop()


def _token(role: Role, worker_id: str = "") -> tuple[tuple[str, str]]:
    token = mint_token(role=role, worker_id=worker_id, key=SECRET, algorithm="HS256")
    return (("authorization", f"Bearer {token}"),)


def _code(call: Any, request: Any, metadata: Any) -> grpc.StatusCode:
    try:
        call(request, metadata=metadata, timeout=5)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


def test_agents_record_and_read_only_within_their_tasks(secured: ServerThread) -> None:
    admin = _token(Role.ADMIN)
    with grpc.insecure_channel(secured.address) as channel:
        stubs = Stubs.of(channel)
        timeline = tlgrpc.TimelineServiceStub(channel)
        stubs.admin.UpsertQueue(apb.UpsertQueueRequest(queue=pb.Queue(queue_id="general")),
                                metadata=admin, timeout=5)  # fmt: skip
        for worker_id in ("ann", "bea"):
            worker = pb.Worker(worker_id=worker_id, capacity_by_channel={"voice": 1},
                               activity="available")  # fmt: skip
            stubs.workers.UpsertWorker(wpb.UpsertWorkerRequest(worker=worker), metadata=admin,
                                       timeout=5)  # fmt: skip
        task = pb.Task(channel="voice", queue_id="general", customer_id="erin")
        task_id = stubs.tasks.CreateTask(
            tpb.CreateTaskRequest(task=task), metadata=_token(Role.FRONTEND), timeout=5
        ).task.task_id
        holder = stubs.tasks.GetTask(tpb.GetTaskRequest(task_id=task_id), metadata=admin,
                                     timeout=5).task.worker_id  # fmt: skip
        other = "bea" if holder == "ann" else "ann"
        mine, theirs = _token(Role.AGENT, holder), _token(Role.AGENT, other)
        record = tlpb.RecordOutcomeRequest(task_id=task_id, worker_id=holder, tags=["billing"])
        assert _code(timeline.RecordOutcome, record, mine) is grpc.StatusCode.OK
        assert _code(timeline.RecordOutcome, record, theirs) is grpc.StatusCode.PERMISSION_DENIED
        as_other = tlpb.RecordOutcomeRequest(task_id=task_id, worker_id=other)
        assert _code(timeline.RecordOutcome, as_other, theirs) is (
            grpc.StatusCode.PERMISSION_DENIED
        )
        action = tlpb.RecordAgentActionRequest(
            task_id=task_id, worker_id=holder, action="refund_button", reason="double charge"
        )
        assert _code(timeline.RecordAgentAction, action, mine) is grpc.StatusCode.OK
        by_task = tlpb.GetCustomerContextRequest(task_id=task_id)
        assert _code(timeline.GetCustomerContext, by_task, mine) is grpc.StatusCode.OK
        assert _code(timeline.GetCustomerContext, by_task, theirs) is (
            grpc.StatusCode.PERMISSION_DENIED
        )
        by_id = tlpb.GetCustomerContextRequest(customer_id="erin")
        assert _code(timeline.GetCustomerContext, by_id, mine) is grpc.StatusCode.PERMISSION_DENIED
        assert _code(timeline.GetCustomerContext, by_id, _token(Role.FRONTEND)) is (
            grpc.StatusCode.OK
        )
        # Front ends append and profile; they do not record outcomes; only an admin erases.
        assert _code(timeline.RecordOutcome, record, _token(Role.FRONTEND)) is (
            grpc.StatusCode.PERMISSION_DENIED
        )
        erase = tlpb.EraseCustomerRequest(customer_id="erin")
        supervisor = _token(Role.SUPERVISOR)
        assert _code(timeline.EraseCustomer, erase, supervisor) is (
            grpc.StatusCode.PERMISSION_DENIED
        )
        # Refused while her task is open, naming it; then erased once it is done.
        with pytest.raises(grpc.RpcError) as refused:
            timeline.EraseCustomer(erase, metadata=admin, timeout=5)
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert task_id in refused.value.details()
        stubs.tasks.CancelTask(tpb.CancelTaskRequest(task_id=task_id), metadata=admin, timeout=5)
        erased = timeline.EraseCustomer(erase, metadata=admin, timeout=5)
        assert erased.data_key_destroyed and erased.contacts_forgotten == 1


def _struct(document: dict[str, Any]) -> Any:
    from google.protobuf import struct_pb2

    struct = struct_pb2.Struct()
    struct.update(document)
    return struct


def test_the_sdk_records_outcomes_and_reads_the_context(
    router_server: ServerThread, stubs: Stubs
) -> None:
    """An agent's session records the outcome and its action as itself; a front end's task
    client reads the context by customer id."""
    from workers import AgentSession, FailedPrecondition, TaskClient

    stubs.queue("general")
    stubs.queue("sales")
    stubs.worker("ann", capacity_by_channel={"chat": 1})
    policy(stubs, ("customer.last_tags HAS 'sales'", "sales", []))

    async def scenario() -> None:
        address = router_server.address
        async with AgentSession(address, "ann") as session, TaskClient(address) as tasks:
            created = await tasks.create_task(queue_id="general", channel="chat",
                                              customer_id="fay")  # fmt: skip
            offers = session.offers()
            offer = await anext(offers)
            await session.accept(offer)
            entry = await session.record_outcome(
                created.task.task_id, disposition="upsell", resolved=True, tags=["sales"]
            )
            assert (entry.outcome.worker_id, entry.outcome.resolution) == (
                "ann",
                tlpb.RESOLUTION_RESOLVED,
            )
            action = await session.record_agent_action(created.task.task_id, "kb_search")
            assert action.agent_action.worker_id == "ann"
            context = await session.get_customer_context(task_id=created.task.task_id)
            assert list(context.last_tags) == ["sales"]
            assert (await tasks.get_customer_context(customer_id="fay")) == context
            plain = await tasks.create_task(queue_id="general", channel="chat")
            try:
                await tasks.record_outcome(plain.task.task_id)
            except FailedPrecondition as error:
                assert "has no customer_id" in str(error)
            else:
                raise AssertionError("an outcome of a task without a customer was recorded")

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert call(stubs, "fay", channel="chat").queue_id == "sales"
