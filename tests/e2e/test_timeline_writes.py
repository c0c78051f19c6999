"""The TimelineService's writes through gRPC, as a CRM, an IVR and an admin would call them:
appended entries and profiles feed the customer's routing context (`GetCustomerContext`), the
settings round-trip, erasure forgets the customer, every request is validated with the field
named, and the event feed carries the customer key but never the personal text."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.protobuf import struct_pb2

from router._proto.switchboard.v1 import event_service_pb2 as epb
from router._proto.switchboard.v1 import event_service_pb2_grpc as egrpc
from router._proto.switchboard.v1 import timeline_service_pb2 as tlpb
from router._proto.switchboard.v1 import timeline_service_pb2_grpc as tlgrpc
from router.core.limits import (
    ENTRIES_PER_CUSTOMER_MAX,
    ENTRY_DATA_BYTES_MAX,
    IDENTITY_VERIFICATION_WINDOW_S_MAX,
    OUTCOME_NOTE_CHARS_MAX,
    PERSONAL_ATTRIBUTE_KEYS_MAX,
    TAGS_PER_ENTRY_MAX,
    TIMELINE_TOKEN_CHARS_MAX,
)
from tests.conftest import ServerThread
from tests.e2e.raw import Stubs

NOTE = "Alice Example called about invoice 4417"


@pytest.fixture
def timeline(channel: grpc.Channel) -> tlgrpc.TimelineServiceStub:
    return tlgrpc.TimelineServiceStub(channel)


def _append(
    timeline: tlgrpc.TimelineServiceStub, customer_id: str = "alice", **entry: object
) -> tlpb.AppendTimelineEntryResponse:
    tags = entry.pop("tags", ())
    at_ms = entry.pop("at_ms", 0)
    entry.setdefault("kind", "order.placed")
    request = tlpb.AppendTimelineEntryRequest(
        customer_id=customer_id, at_ms=at_ms, tags=tags,  # type: ignore[arg-type]
        entry=tlpb.ExternalEntry(**entry),  # type: ignore[arg-type]
    )  # fmt: skip
    return timeline.AppendTimelineEntry(request, timeout=5)


def _context(timeline: tlgrpc.TimelineServiceStub, customer_id: str) -> tlpb.CustomerContext:
    request = tlpb.GetCustomerContextRequest(customer_id=customer_id)
    return timeline.GetCustomerContext(request, timeout=5).context


def test_an_ivr_pin_makes_the_customer_verified_for_the_window(
    timeline: tlgrpc.TimelineServiceStub, stubs: Stubs
) -> None:
    data = struct_pb2.Struct()
    data.update({"pin_attempts": 1})
    reply = _append(
        timeline, kind="ivr.pin_verified", source="ivr", summary="PIN ok", data=data,
        identity_verified=True, tags=["ivr"],
    )  # fmt: skip
    entry = reply.entry
    assert entry.entry_id.startswith("tle-")
    assert entry.kind == tlpb.TIMELINE_ENTRY_KIND_EXTERNAL
    assert (entry.external.kind, entry.external.summary, list(entry.tags)) == (
        "ivr.pin_verified", "PIN ok", ["ivr"],
    )  # fmt: skip
    assert entry.external.data["pin_attempts"] == 1
    context = _context(timeline, "alice")
    assert context.customer_key.startswith("ck_") and "alice" not in context.customer_key
    assert context.verified
    stubs.advance(901)  # past the default window (900 s)
    assert not _context(timeline, "alice").verified


def test_a_profile_feeds_the_context_and_settings_round_trip(
    timeline: tlgrpc.TimelineServiceStub,
) -> None:
    attributes = struct_pb2.Struct()
    attributes.update({"email": "alice@example.com"})
    profile = tlpb.CustomerProfile(
        customer_id="alice", tier="gold", language="es", verified=True,
        display_name="Alice Example", attributes=attributes,
    )  # fmt: skip
    reply = timeline.UpsertCustomerProfile(
        tlpb.UpsertCustomerProfileRequest(profile=profile), timeout=5
    ).profile
    assert (reply.display_name, reply.tier) == ("Alice Example", "gold")
    assert reply.updated_at_ms > 0
    context = _context(timeline, "alice")
    assert (context.tier, context.language, context.verified) == ("gold", "es", True)
    assert _context(timeline, "bob") == tlpb.CustomerContext(customer_key=_context(
        timeline, "bob").customer_key)  # fmt: skip

    settings = tlpb.TimelineSettings(
        personal_attribute_keys=["name", "email"], retention_days=30,
    )  # fmt: skip
    stored = timeline.UpsertTimelineSettings(
        tlpb.UpsertTimelineSettingsRequest(settings=settings), timeout=5
    ).settings
    assert list(stored.personal_attribute_keys) == ["name", "email"]
    assert (stored.retention_days, stored.entries_per_customer_max) == (30, 1000)
    assert stored.identity_verification_window_s == 900.0
    read = timeline.GetTimelineSettings(tlpb.GetTimelineSettingsRequest(), timeout=5).settings
    assert read == stored


def test_erasure_forgets_the_context_and_destroys_the_data_key(
    timeline: tlgrpc.TimelineServiceStub,
) -> None:
    _append(timeline, summary=NOTE)
    _append(timeline, kind="survey.answered")
    erased = timeline.EraseCustomer(
        tlpb.EraseCustomerRequest(customer_id="alice", reason="GDPR request 77"), timeout=5
    )
    assert erased.customer_key == _context(timeline, "alice").customer_key
    assert erased.data_key_destroyed
    assert _context(timeline, "alice").verified is False
    again = timeline.EraseCustomer(tlpb.EraseCustomerRequest(customer_id="alice"), timeout=5)
    assert not again.data_key_destroyed


def test_outcomes_need_a_task_with_a_customer(
    timeline: tlgrpc.TimelineServiceStub, stubs: Stubs
) -> None:
    stubs.queue("support")
    task_id = stubs.create(channel="chat").task.task_id
    with pytest.raises(grpc.RpcError) as raised:
        timeline.RecordOutcome(tlpb.RecordOutcomeRequest(task_id=task_id), timeout=5)
    assert raised.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "has no customer_id" in raised.value.details()
    with pytest.raises(grpc.RpcError) as raised:
        timeline.RecordOutcome(tlpb.RecordOutcomeRequest(task_id="task-nope"), timeout=5)
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


def test_the_feed_carries_the_customer_key_never_the_text(
    timeline: tlgrpc.TimelineServiceStub, channel: grpc.Channel
) -> None:
    appended = _append(timeline, summary=NOTE, tags=["sales"], source="shop")
    events = egrpc.EventServiceStub(channel)
    request = epb.SubscribeRequest(from_oldest=True, types=[epb.EVENT_TYPE_TIMELINE_ENTRY_APPENDED])
    stream = events.Subscribe(request, timeout=5)
    event = next(iter(next(stream).events))
    stream.cancel()
    assert (event.kind, event.source, list(event.tags)) == ("order.placed", "shop", ["sales"])
    assert event.customer_key == _context(timeline, "alice").customer_key
    assert NOTE not in str(event)
    assert appended.entry.at_ms == event.at_ms


def _refused(call: object, request: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=5)  # type: ignore[operator]
    return raised.value


@pytest.mark.parametrize(
    ("method", "request_", "field"),
    [
        ("AppendTimelineEntry", tlpb.AppendTimelineEntryRequest(entry=tlpb.ExternalEntry(
            kind="k")), "customer_id"),
        ("AppendTimelineEntry", tlpb.AppendTimelineEntryRequest(customer_id="a"), "entry.kind"),
        ("AppendTimelineEntry", tlpb.AppendTimelineEntryRequest(
            customer_id="a", entry=tlpb.ExternalEntry(kind="no spaces")), "entry.kind"),
        ("AppendTimelineEntry", tlpb.AppendTimelineEntryRequest(
            customer_id="a", entry=tlpb.ExternalEntry(kind="k"),
            tags=[f"t{i}" for i in range(TAGS_PER_ENTRY_MAX + 1)]), "tags"),
        ("AppendTimelineEntry", tlpb.AppendTimelineEntryRequest(
            customer_id="a", entry=tlpb.ExternalEntry(kind="k", summary="s" * 1025)),
         "entry.summary"),
        ("AppendTimelineEntry", tlpb.AppendTimelineEntryRequest(
            customer_id="a", entry=tlpb.ExternalEntry(kind="k"), at_ms=2**50), "at_ms"),
        ("RecordOutcome", tlpb.RecordOutcomeRequest(task_id="t", note="n" * (
            OUTCOME_NOTE_CHARS_MAX + 1)), "note"),
        ("RecordOutcome", tlpb.RecordOutcomeRequest(task_id="t", resolution=9), "resolution"),
        ("RecordAgentAction", tlpb.RecordAgentActionRequest(task_id="t", action="a"),
         "worker_id"),
        ("RecordAgentAction", tlpb.RecordAgentActionRequest(task_id="t", worker_id="w"),
         "action"),
        ("UpsertCustomerProfile", tlpb.UpsertCustomerProfileRequest(
            profile=tlpb.CustomerProfile(customer_id="a", tier="t" * 33)), "profile.tier"),
        ("UpsertCustomerProfile", tlpb.UpsertCustomerProfileRequest(
            profile=tlpb.CustomerProfile(customer_id="a", updated_at_ms=5)),
         "profile.updated_at_ms"),
        ("UpsertCustomerProfile", tlpb.UpsertCustomerProfileRequest(
            profile=tlpb.CustomerProfile(tier="gold")), "profile.customer_id"),
        ("GetCustomerContext", tlpb.GetCustomerContextRequest(), "customer_id"),
        ("GetCustomerContext", tlpb.GetCustomerContextRequest(customer_id="a", task_id="t"),
         "customer_id"),
        ("EraseCustomer", tlpb.EraseCustomerRequest(), "customer_id"),
        ("EraseCustomer", tlpb.EraseCustomerRequest(customer_id="a", reason="r" * 257),
         "reason"),
        ("UpsertTimelineSettings", tlpb.UpsertTimelineSettingsRequest(
            settings=tlpb.TimelineSettings(retention_days=3651)), "settings.retention_days"),
        ("UpsertTimelineSettings", tlpb.UpsertTimelineSettingsRequest(
            settings=tlpb.TimelineSettings(personal_attribute_keys=["customer_id"])),
         "settings.personal_attribute_keys[0]"),
        ("UpsertTimelineSettings", tlpb.UpsertTimelineSettingsRequest(
            settings=tlpb.TimelineSettings(identity_verification_window_s=-1)),
         "settings.identity_verification_window_s"),
        # Each limit one past its maximum.
        ("UpsertTimelineSettings", tlpb.UpsertTimelineSettingsRequest(
            settings=tlpb.TimelineSettings(
                identity_verification_window_s=IDENTITY_VERIFICATION_WINDOW_S_MAX + 1)),
         "settings.identity_verification_window_s"),
        ("UpsertTimelineSettings", tlpb.UpsertTimelineSettingsRequest(
            settings=tlpb.TimelineSettings(personal_attribute_keys=[
                f"k{i}" for i in range(PERSONAL_ATTRIBUTE_KEYS_MAX + 1)])),
         "settings.personal_attribute_keys"),
        ("UpsertTimelineSettings", tlpb.UpsertTimelineSettingsRequest(
            settings=tlpb.TimelineSettings(entries_per_customer_max=ENTRIES_PER_CUSTOMER_MAX + 1)),
         "settings.entries_per_customer_max"),
        ("RecordOutcome", tlpb.RecordOutcomeRequest(
            task_id="t", disposition="d" * (TIMELINE_TOKEN_CHARS_MAX + 1)), "disposition"),
    ],
)  # fmt: skip
def test_invalid_requests_name_their_field(
    timeline: tlgrpc.TimelineServiceStub, method: str, request_: object, field: str
) -> None:
    error = _refused(getattr(timeline, method), request_)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith(f"{field}:"), error.details()


def test_a_large_entry_data_is_refused(timeline: tlgrpc.TimelineServiceStub) -> None:
    data = struct_pb2.Struct()
    data.update({"blob": "x" * ENTRY_DATA_BYTES_MAX})
    request = tlpb.AppendTimelineEntryRequest(
        customer_id="a", entry=tlpb.ExternalEntry(kind="k", data=data)
    )
    error = _refused(timeline.AppendTimelineEntry, request)
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("entry.data:")


def test_a_front_end_reads_the_context_with_the_sdk(
    router_server: ServerThread, timeline: tlgrpc.TimelineServiceStub
) -> None:
    from workers import InvalidArgument, TaskClient

    _append(timeline, kind="ivr.pin_verified", identity_verified=True)

    async def scenario() -> None:
        async with TaskClient(router_server.address) as tasks:
            context = await tasks.get_customer_context(customer_id="alice")
            assert context.verified and context.customer_key.startswith("ck_")
            try:
                await tasks.get_customer_context()
            except InvalidArgument as error:
                assert "customer_id" in str(error)
            else:
                raise AssertionError("a context of nobody was read")

    asyncio.run(asyncio.wait_for(scenario(), 30))
