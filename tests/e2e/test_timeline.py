"""The customer timeline end to end, through gRPC with bearer tokens (a durable router, test
clock): one customer's contacts over voice, chat and SMS, with a transfer and a pause, appear
in one timeline in order with their outcomes and agent actions; an agent's view hides other
agents' private notes and every agent action while a supervisor's shows them; filters, search
and paging work; EraseCustomer then leaves nothing readable."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from google.protobuf import struct_pb2

from router._proto.switchboard.v1 import admin_service_pb2 as apb
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

# Keyed tasks (CreateTask with a customer_id sealed and hashed into its key) come with the
# privacy helper's TaskData: without it no task reaches a customer's timeline.
pytest.importorskip("router.privacy.task_data", reason="needs the privacy helper's keyed tasks")

SECRET = b"a-test-secret-of-at-least-thirty-two-bytes-for-the-timeline"
CUSTOMER = "jane.roe@example.com"
TASK, OUTCOME, ACTION, EXTERNAL = (
    tlpb.TIMELINE_ENTRY_KIND_TASK, tlpb.TIMELINE_ENTRY_KIND_OUTCOME,
    tlpb.TIMELINE_ENTRY_KIND_AGENT_ACTION, tlpb.TIMELINE_ENTRY_KIND_EXTERNAL,
)  # fmt: skip


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.StreamStreamClientInterceptor,  # type: ignore[misc]
):
    """Adds a bearer token to every call of a channel (the Stubs' helpers pass none)."""

    def __init__(self, token: str) -> None:
        self._metadata = (("authorization", f"Bearer {token}"),)

    def _details(self, details: Any) -> Any:
        return details._replace(metadata=tuple(details.metadata or ()) + self._metadata)

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any,
                              request: Any) -> Any:  # fmt: skip
        return continuation(self._details(details), request)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any,
                                requests: Any) -> Any:  # fmt: skip
        return continuation(self._details(details), requests)


class Caller:
    """Stubs of one principal."""

    def __init__(self, address: str, role: Role, worker_id: str = "") -> None:
        token = mint_token(role=role, worker_id=worker_id, key=SECRET, algorithm="HS256")
        self.channel = grpc.intercept_channel(grpc.insecure_channel(address), _Bearer(token))
        self.stubs = Stubs.of(self.channel)
        self.timeline = tlgrpc.TimelineServiceStub(self.channel)

    def get_timeline(self, **fields: Any) -> tlpb.GetTimelineResponse:
        request = tlpb.GetTimelineRequest(**fields)
        return self.timeline.GetTimeline(request, timeout=5)  # type: ignore[no-any-return]


@pytest.fixture
def callers(module_redis: str, workspace: str, tmp_path: Path) -> Iterator[dict[str, Caller]]:
    secret = tmp_path / "secret"
    secret.write_bytes(SECRET)
    config = ServerConfig(
        port=0, metrics_port=None, test_clock=True, redis_url=module_redis, workspace=workspace,
        auth=AuthConfig(hs256_secret_file=secret),
    )  # fmt: skip
    server = ServerThread(config).start()
    callers = {
        "admin": Caller(server.address, Role.ADMIN),
        "supervisor": Caller(server.address, Role.SUPERVISOR),
        "frontend": Caller(server.address, Role.FRONTEND),
        "ann": Caller(server.address, Role.AGENT, "ann"),
        "bob": Caller(server.address, Role.AGENT, "bob"),
    }
    yield callers
    for caller in callers.values():
        caller.channel.close()
    server.stop()


@pytest.fixture
def agents(callers: dict[str, Caller]) -> Iterator[list[RawAgent]]:
    """The agents' Connect streams, closed before the router stops."""
    opened: list[RawAgent] = []
    yield opened
    for agent in opened:
        agent.close()


def _take(agent: RawAgent, task_id: str) -> None:
    while True:
        offer = agent.next_of("offer").offer
        if offer.task_id == task_id:
            break
    agent.accept(offer.reservation_id)
    while agent.next_of("assigned").assigned.task_id != task_id:
        pass


def _settled(
    supervisor: Caller, done: Callable[[tlpb.GetTimelineResponse], bool]
) -> tlpb.GetTimelineResponse:
    """The supervisor's timeline once `done` says so (the projector trails the journal by a
    little)."""
    deadline_s = time.monotonic() + 15
    while True:
        reply = supervisor.get_timeline(customer_id=CUSTOMER)
        if done(reply):
            return reply
        assert time.monotonic() < deadline_s, f"the timeline did not settle: {reply}"
        time.sleep(0.02)


def _wait_until(done: Callable[[], bool]) -> None:
    deadline_s = time.monotonic() + 15
    while not done():
        assert time.monotonic() < deadline_s
        time.sleep(0.02)


def test_one_customer_s_contacts_in_one_timeline_seen_by_role_then_erased(
    callers: dict[str, Caller], agents: list[RawAgent], module_redis: str, workspace: str
) -> None:
    admin, frontend, supervisor = callers["admin"], callers["frontend"], callers["supervisor"]
    stubs = admin.stubs
    # Streams stay up while the test clock jumps (no heartbeats are sent).
    presence = pb.PresenceSettings(presence_timeout_s=3600)
    stubs.admin.UpsertPresenceSettings(
        apb.UpsertPresenceSettingsRequest(settings=presence), timeout=5
    )
    stubs.queue("support")
    stubs.queue("billing")
    capacity = {"voice": 1, "chat": 2, "sms": 2}
    stubs.worker("ann", capacity_by_channel=capacity)
    stubs.worker("bob", capacity_by_channel=capacity, activity="break")
    ann = raw.connect(callers["ann"].stubs, agents, "ann", activity="available")
    bob = raw.connect(callers["bob"].stubs, agents, "bob")

    def create(channel: str) -> str:
        task = frontend.stubs.create(channel=channel, queue_id="support", customer_id=CUSTOMER)
        return task.task.task_id

    def outcome(caller: str, task_id: str, **fields: Any) -> None:
        request = tlpb.RecordOutcomeRequest(task_id=task_id, worker_id=caller, **fields)
        callers[caller].timeline.RecordOutcome(request, timeout=5)

    # The CRM's profile of the customer.
    profile = tlpb.CustomerProfile(customer_id=CUSTOMER, tier="gold", display_name="Jane Roe")
    frontend.timeline.UpsertCustomerProfile(
        tlpb.UpsertCustomerProfileRequest(profile=profile), timeout=5
    )

    # A call: ann takes it and transfers it cold to billing, where bob takes it, pauses it
    # (the customer steps away), resumes it and completes it; bob records a private outcome and
    # an action only supervisors see.
    call = create("voice")
    _take(ann, call)
    stubs.advance(30)
    stubs.workers.SetActivity(wpb.SetActivityRequest(worker_id="bob", activity="available"),
                              timeout=5)  # fmt: skip
    admin.stubs.tasks.TransferTask(
        tpb.TransferTaskRequest(task_id=call, mode=pb.TRANSFER_MODE_COLD,
                                target=pb.TransferTarget(worker_id="bob"),
                                reason="billing dispute"), timeout=5,
    )  # fmt: skip
    _take(bob, call)
    stubs.advance(20)
    stubs.tasks.PauseTask(tpb.PauseTaskRequest(task_id=call, reason="customer away"), timeout=5)
    stubs.advance(60)
    stubs.tasks.ResumeTask(tpb.ResumeTaskRequest(task_id=call, known_agent_wait_s=30), timeout=5)
    _take(bob, call)
    stubs.advance(40)
    outcome(
        "bob", call, disposition="refund_issued", resolution=tlpb.RESOLUTION_RESOLVED,
        note="Refunded 20 EUR, customer upset", note_private=True, tags=["billing"],
    )  # fmt: skip
    callers["bob"].timeline.RecordAgentAction(  # the same millisecond: after the outcome
        tlpb.RecordAgentActionRequest(worker_id="bob", task_id=call, action="refund_button",
                                      reason="goodwill gesture"), timeout=5,
    )  # fmt: skip
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(task_id=call), timeout=5)
    stubs.workers.SetActivity(wpb.SetActivityRequest(worker_id="bob", activity="break"),
                              timeout=5)  # fmt: skip

    # A chat 50 minutes later: ann, a shared (not private) outcome tagged sales.
    stubs.advance(3000)
    chat = create("chat")
    _take(ann, chat)
    stubs.advance(120)
    outcome("ann", chat, disposition="quote_sent", resolution=tlpb.RESOLUTION_UNRESOLVED,
            note="Wants the Premium plan quote", tags=["sales"])  # fmt: skip
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(task_id=chat), timeout=5)

    # The shop appends an order; then an SMS, which ann still holds while the timeline is read.
    stubs.advance(600)
    data = struct_pb2.Struct()
    data.update({"order": 42, "total": 99.5})
    frontend.timeline.AppendTimelineEntry(
        tlpb.AppendTimelineEntryRequest(
            customer_id=CUSTOMER, tags=["sales"],
            entry=tlpb.ExternalEntry(kind="order.placed", source="shop", summary="Order 42",
                                     data=data),
        ), timeout=5,
    )  # fmt: skip
    stubs.advance(60)
    sms = create("sms")
    _take(ann, sms)
    stubs.advance(30)
    outcome("ann", sms, disposition="tracking_sent", note="Sent the tracking link",
            note_private=True)  # fmt: skip

    # The supervisor's timeline: everything, in order.
    full = _settled(supervisor, lambda reply: reply.total_entries == 8)
    assert full.view == tlpb.TIMELINE_VIEW_FULL and full.total_entries == 8
    kinds = [(e.kind, e.task.task_id or e.outcome.task_id or e.agent_action.task_id)
             for e in full.entries]  # fmt: skip
    assert kinds == [
        (TASK, call),
        (OUTCOME, call),
        (ACTION, call),
        (TASK, chat),
        (OUTCOME, chat),
        (EXTERNAL, ""),
        (TASK, sms),
        (OUTCOME, sms),
    ]
    at_ms = [e.at_ms for e in full.entries]
    assert at_ms == sorted(at_ms)
    voice = full.entries[0].task
    assert (voice.channel, voice.status, list(voice.agent_ids)) == (
        "voice", pb.TASK_STATUS_COMPLETED, ["ann", "bob"],
    )  # fmt: skip
    assert [(t.mode, t.status, t.to_worker_id, t.from_worker_id) for t in voice.transfers] == [
        (pb.TRANSFER_MODE_COLD, pb.TRANSFER_STATUS_COMPLETED, "bob", "ann")
    ]
    [pause] = voice.pauses
    assert (pause.reason, pause.resumed_at_ms - pause.paused_at_ms) == ("customer away", 60_000)
    assert (voice.disposition, voice.resolution) == ("refund_issued", tlpb.RESOLUTION_RESOLVED)
    assert full.entries[1].outcome.note == "Refunded 20 EUR, customer upset"
    assert full.entries[2].agent_action.reason == "goodwill gesture"
    channels = [e.task.channel for e in full.entries if e.kind == TASK]
    assert channels == ["voice", "chat", "sms"]
    external = next(e for e in full.entries if e.kind == EXTERNAL).external
    assert (external.summary, external.data["order"]) == ("Order 42", 42)

    # Ann's view, through the SMS she holds now: no agent action, bob's private note hidden,
    # her own private note shown.
    seen = callers["ann"].get_timeline(task_id=sms)
    assert seen.view == tlpb.TIMELINE_VIEW_AGENT
    assert ACTION not in [e.kind for e in seen.entries] and len(seen.entries) == 7
    by_task = {e.outcome.task_id: e.outcome for e in seen.entries if e.kind == OUTCOME}
    assert by_task[call].note == "" and by_task[call].note_hidden
    assert by_task[sms].note == "Sent the tracking link"
    assert by_task[chat].note == "Wants the Premium plan quote"
    # An agent may not read a customer it does not serve, nor filter on another agent.
    with pytest.raises(grpc.RpcError) as refused:
        callers["bob"].get_timeline(task_id=sms)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # The front end: no agent actions, no private notes.
    crm = frontend.get_timeline(customer_id=CUSTOMER)
    assert crm.view == tlpb.TIMELINE_VIEW_FRONTEND
    assert [e.outcome.note_hidden for e in crm.entries if e.kind == OUTCOME] == [
        True, False, True,
    ]  # fmt: skip

    # Filters and search.
    def ids(reply: tlpb.GetTimelineResponse) -> list[str]:
        return [e.entry_id for e in reply.entries]

    sms_only = supervisor.get_timeline(customer_id=CUSTOMER, channels=["sms"])
    assert ids(sms_only) == [f"task:{sms}", ids(full)[-1]]
    sales = supervisor.get_timeline(customer_id=CUSTOMER, tags=["sales"])
    assert [e.kind for e in sales.entries] == [TASK, OUTCOME, EXTERNAL]
    found = supervisor.get_timeline(customer_id=CUSTOMER, text="premium PLAN")
    assert [e.outcome.task_id for e in found.entries] == [chat]
    assert not callers["ann"].get_timeline(task_id=sms, text="upset").entries  # hidden to her
    assert supervisor.get_timeline(customer_id=CUSTOMER, text="upset").entries
    bobs = supervisor.get_timeline(customer_id=CUSTOMER, worker_id="bob")
    assert [e.kind for e in bobs.entries] == [TASK, OUTCOME, ACTION]
    newest = supervisor.get_timeline(customer_id=CUSTOMER, newest_first=True, page_size=3)
    assert ids(newest) == ids(full)[::-1][:3] and newest.next_page_token
    rest = supervisor.get_timeline(customer_id=CUSTOMER, newest_first=True, page_size=3,
                                   page_token=newest.next_page_token)  # fmt: skip
    assert ids(rest) == ids(full)[::-1][3:6]
    window = supervisor.get_timeline(customer_id=CUSTOMER, kinds=[TASK],
                                     from_ms=full.entries[3].at_ms)  # fmt: skip
    assert [e.task.channel for e in window.entries] == ["chat", "sms"]

    stored = supervisor.timeline.GetCustomerProfile(
        tlpb.GetCustomerProfileRequest(task_id=sms), timeout=5
    ).profile
    assert (stored.customer_id, stored.display_name, stored.tier) == (CUSTOMER, "Jane Roe", "gold")

    # Erasure: refused while the SMS is open, then everything goes.
    erase = tlpb.EraseCustomerRequest(customer_id=CUSTOMER, reason="GDPR request 7781")
    with pytest.raises(grpc.RpcError) as open_task:
        admin.timeline.EraseCustomer(erase, timeout=5)
    assert open_task.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(task_id=sms), timeout=5)
    _settled(supervisor, lambda reply: reply.entries[6].task.status == pb.TASK_STATUS_COMPLETED)
    erased = admin.timeline.EraseCustomer(erase, timeout=5)
    assert erased.data_key_destroyed and erased.profile_erased
    assert erased.timeline_entries_erased == 8
    # Nothing of the customer is left in Redis once the projector has met the erasure in the
    # feed (it writes nothing back), and nothing is readable at once.
    store = redis.Redis.from_url(module_redis)
    ck = erased.customer_key
    timeline_keys = [f"sb:{{{workspace}}}:tl:{ck}", f"sb:{{{workspace}}}:tl-order:{ck}"]
    _wait_until(lambda: not store.exists(*timeline_keys))
    assert not store.hexists(f"sb:{{{workspace}}}:profiles", ck)
    assert not store.hexists(f"sb:{{{workspace}}}:customer-keys", ck)
    store.close()
    after = supervisor.get_timeline(customer_id=CUSTOMER)
    assert (after.total_entries, list(after.entries)) == (0, [])
    with pytest.raises(grpc.RpcError) as no_profile:
        admin.timeline.GetCustomerProfile(
            tlpb.GetCustomerProfileRequest(customer_id=CUSTOMER), timeout=5
        )
    assert no_profile.value.code() == grpc.StatusCode.NOT_FOUND
