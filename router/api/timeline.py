"""TimelineService: a customer's outcomes, agent actions, appended entries, profile, routing
context and erasure, as journaled core commands.

The servicer turns customer ids into customer keys (`CustomerKeys.key_of`: the core never sees
an id) and seals personal text with the customer's data key before the command (a note, a
reason, an entry's summary and data, the whole profile: the plaintext forms are
`router.api.timeline_convert`'s), so that the journal, snapshots and events hold only keys and
ciphertext. Reading the timeline and the profile, and the Redis half of an erasure, are the
timeline store's (`router/timeline/reads.py`, given as `reads`); the routing context is read
from the engine between batches.

What a caller sees of a timeline depends on its role (`CALLER`, set by the access guard): an
agent the agent view, a front end the front end view, a supervisor or admin everything."""

from __future__ import annotations

from typing import Protocol

import grpc

from router._proto.switchboard.v1 import timeline_service_pb2 as tlpb
from router._proto.switchboard.v1 import timeline_service_pb2_grpc as tlgrpc
from router.api import audit
from router.api.authn import Role
from router.api.guard import CALLER
from router.api.status import maps_errors
from router.api.timeline_convert import (
    context_to_pb,
    data_of,
    entry_body,
    external_entry,
    profile_plaintext,
    resolution_of,
    settings_from_pb,
    settings_to_pb,
)
from router.core import commands as cmd
from router.core.customers import check_tags, check_token, customer_of
from router.core.errors import FailedPrecondition, InvalidArgument, NotFound
from router.core.validation import check_id
from router.service import RouterService

VIEW_OF_ROLE = {
    Role.AGENT: tlpb.TIMELINE_VIEW_AGENT,
    Role.FRONTEND: tlpb.TIMELINE_VIEW_FRONTEND,
    Role.SUPERVISOR: tlpb.TIMELINE_VIEW_FULL,
    Role.ADMIN: tlpb.TIMELINE_VIEW_FULL,
}
"""The timeline view each role gets."""


class TimelineReads(Protocol):
    """The timeline store's reads (`router.timeline.reads.TimelineReads`)."""

    async def get_timeline(
        self,
        request: tlpb.GetTimelineRequest,
        *,
        customer_key: str,
        view: tlpb.TimelineView.ValueType,
        viewer_worker_id: str,
    ) -> tlpb.GetTimelineResponse: ...

    async def get_profile(self, customer_key: str) -> tlpb.CustomerProfile | None: ...

    async def erase(self, customer_key: str) -> tuple[int, bool]:
        """(timeline entries erased, profile erased): Redis data only."""
        ...


class TimelineServicer(tlgrpc.TimelineServiceServicer):
    def __init__(self, service: RouterService, reads: TimelineReads | None = None) -> None:
        """`reads`: the timeline store's reads (None: a router that keeps no timeline, whose
        GetTimeline and GetCustomerProfile are FAILED_PRECONDITION)."""
        self._service = service
        self._reads = reads

    # -- writes -----------------------------------------------------------------------------

    @maps_errors
    async def RecordOutcome(
        self, request: tlpb.RecordOutcomeRequest, context: grpc.aio.ServicerContext
    ) -> tlpb.RecordOutcomeResponse:
        resolution = resolution_of(request.resolution)
        check_token("disposition", request.disposition, required=False)
        check_tags("tags", tuple(request.tags))
        customer_key = self._customer_of_task(request.task_id)
        sealed = await self._seal(customer_key, request.note.encode())
        command = cmd.RecordOutcome(
            request.task_id, request.worker_id, request.disposition, resolution, sealed,
            request.note_private, tuple(request.tags),
        )  # fmt: skip
        recorded = await self._service.submit(command)
        outcome = tlpb.Outcome(
            task_id=request.task_id, worker_id=request.worker_id,
            disposition=request.disposition, resolution=request.resolution, note=request.note,
            note_private=request.note_private,
        )  # fmt: skip
        entry = tlpb.TimelineEntry(
            entry_id=recorded.entry_id, kind=tlpb.TIMELINE_ENTRY_KIND_OUTCOME,
            at_ms=recorded.at_ms, tags=request.tags, outcome=outcome,
        )  # fmt: skip
        return tlpb.RecordOutcomeResponse(entry=entry)

    @maps_errors
    async def RecordAgentAction(
        self, request: tlpb.RecordAgentActionRequest, context: grpc.aio.ServicerContext
    ) -> tlpb.RecordAgentActionResponse:
        check_id("worker_id", request.worker_id)
        check_token("action", request.action, required=True)
        customer_key = self._customer_of_task(request.task_id)
        sealed = await self._seal(customer_key, request.reason.encode())
        recorded = await self._service.submit(
            cmd.RecordAgentAction(request.task_id, request.worker_id, request.action, sealed)
        )
        action = tlpb.AgentAction(
            task_id=request.task_id, worker_id=request.worker_id, action=request.action,
            reason=request.reason,
        )  # fmt: skip
        entry = tlpb.TimelineEntry(
            entry_id=recorded.entry_id, kind=tlpb.TIMELINE_ENTRY_KIND_AGENT_ACTION,
            at_ms=recorded.at_ms, agent_action=action,
        )  # fmt: skip
        return tlpb.RecordAgentActionResponse(entry=entry)

    @maps_errors
    async def AppendTimelineEntry(
        self, request: tlpb.AppendTimelineEntryRequest, context: grpc.aio.ServicerContext
    ) -> tlpb.AppendTimelineEntryResponse:
        check_id("customer_id", request.customer_id)
        check_token("entry.kind", request.entry.kind, required=True)
        check_tags("tags", tuple(request.tags))
        data = data_of("entry.data", request.entry.data)
        keys = self._service.customer_keys
        customer_key = keys.key_of(request.customer_id)
        # The timeline seals the entry with the customer's key, even when nothing here is.
        await keys.ensure(customer_key)
        sealed = await self._seal(customer_key, entry_body(request.entry.summary, data))
        command = cmd.AppendTimelineEntry(
            customer_key, request.entry.kind, request.at_ms, request.entry.source, sealed,
            tuple(request.tags), request.entry.identity_verified,
        )  # fmt: skip
        recorded = await self._service.submit(command)
        entry = tlpb.TimelineEntry(
            entry_id=recorded.entry_id, kind=tlpb.TIMELINE_ENTRY_KIND_EXTERNAL,
            at_ms=recorded.at_ms, tags=request.tags, external=external_entry(request, data),
        )  # fmt: skip
        return tlpb.AppendTimelineEntryResponse(entry=entry)

    @maps_errors
    async def UpsertCustomerProfile(
        self, request: tlpb.UpsertCustomerProfileRequest, context: grpc.aio.ServicerContext
    ) -> tlpb.UpsertCustomerProfileResponse:
        profile = request.profile
        check_id("profile.customer_id", profile.customer_id)
        check_id("profile.language", profile.language, required=False)
        if profile.updated_at_ms:
            raise InvalidArgument("profile.updated_at_ms", "is output only (set by the router)")
        data_of("profile.attributes", profile.attributes)
        customer_key = self._service.customer_keys.key_of(profile.customer_id)
        sealed = await self._seal(customer_key, profile_plaintext(profile))
        upserted = await self._service.submit(
            cmd.UpsertCustomerProfile(
                customer_key, profile.tier, profile.language, profile.verified, sealed
            )
        )
        reply = tlpb.CustomerProfile()
        reply.CopyFrom(profile)
        reply.updated_at_ms = upserted.updated_ms
        return tlpb.UpsertCustomerProfileResponse(profile=reply)

    @maps_errors
    async def EraseCustomer(
        self, request: tlpb.EraseCustomerRequest, context: grpc.aio.ServicerContext
    ) -> tlpb.EraseCustomerResponse:
        """The core first (refused while a task is open: then nothing changes anywhere), then
        the timeline and profile in Redis, then the data key, which makes every sealed value
        of the customer unreadable wherever it lies (journal, snapshots, the append-only file).
        Each step is safe to repeat: a retry after a failure finishes the job."""
        check_id("customer_id", request.customer_id)
        keys = self._service.customer_keys
        customer_key = keys.key_of(request.customer_id)
        erased = await self._service.submit(cmd.EraseCustomer(customer_key))
        entries, profile_erased = (0, False)
        if self._reads is not None:
            entries, profile_erased = await self._reads.erase(customer_key)
        destroyed = await keys.erase(customer_key)
        reply = tlpb.EraseCustomerResponse(
            customer_key=customer_key, data_key_destroyed=destroyed,
            timeline_entries_erased=entries, profile_erased=profile_erased,
            contacts_forgotten=erased.contacts_forgotten,
        )  # fmt: skip
        audit.erased(
            principal=CALLER.get(), peer=context.peer(), customer_key=customer_key,
            reason=request.reason, data_key_destroyed=destroyed, timeline_entries_erased=entries,
            profile_erased=profile_erased, contacts_forgotten=erased.contacts_forgotten,
        )  # fmt: skip
        return reply

    @maps_errors
    async def UpsertTimelineSettings(
        self, request: tlpb.UpsertTimelineSettingsRequest, context: grpc.aio.ServicerContext
    ) -> tlpb.UpsertTimelineSettingsResponse:
        settings = await self._service.submit(
            cmd.UpsertTimelineSettings(settings_from_pb(request.settings))
        )
        return tlpb.UpsertTimelineSettingsResponse(settings=settings_to_pb(settings))

    # -- reads ------------------------------------------------------------------------------

    @maps_errors
    async def GetTimelineSettings(
        self, request: tlpb.GetTimelineSettingsRequest, context: grpc.aio.ServicerContext
    ) -> tlpb.GetTimelineSettingsResponse:
        settings = self._service.engine.customers.settings
        return tlpb.GetTimelineSettingsResponse(settings=settings_to_pb(settings))

    @maps_errors
    async def GetCustomerContext(
        self, request: tlpb.GetCustomerContextRequest, context: grpc.aio.ServicerContext
    ) -> tlpb.GetCustomerContextResponse:
        customer_key = self._customer_named(request.customer_id, request.task_id)
        view = self._service.engine.customer_context(customer_key)
        return tlpb.GetCustomerContextResponse(context=context_to_pb(customer_key, view))

    @maps_errors
    async def GetTimeline(
        self, request: tlpb.GetTimelineRequest, context: grpc.aio.ServicerContext
    ) -> tlpb.GetTimelineResponse:
        customer_key = self._customer_named(request.customer_id, request.task_id)
        caller = CALLER.get()
        return await self._the_reads().get_timeline(
            request, customer_key=customer_key, view=VIEW_OF_ROLE[caller.role],
            viewer_worker_id=caller.worker_id,
        )  # fmt: skip

    @maps_errors
    async def GetCustomerProfile(
        self, request: tlpb.GetCustomerProfileRequest, context: grpc.aio.ServicerContext
    ) -> tlpb.GetCustomerProfileResponse:
        customer_key = self._customer_named(request.customer_id, request.task_id)
        profile = await self._the_reads().get_profile(customer_key)
        if profile is None:
            raise NotFound("the customer has no profile")
        return tlpb.GetCustomerProfileResponse(profile=profile)

    # -- helpers ----------------------------------------------------------------------------

    def _the_reads(self) -> TimelineReads:
        if self._reads is None:
            raise FailedPrecondition("this router keeps no timeline store")
        return self._reads

    def _customer_of_task(self, task_id: str) -> str:
        """The customer key of a task (read between batches; the core checks it again)."""
        check_id("task_id", task_id)
        return customer_of(self._service.engine.get_task(task_id))

    def _customer_named(self, customer_id: str, task_id: str) -> str:
        """The customer a read names: by its id, or by one of its tasks (exactly one)."""
        if bool(customer_id) == bool(task_id):
            raise InvalidArgument("customer_id", "give exactly one of customer_id and task_id")
        if task_id:
            return self._customer_of_task(task_id)
        check_id("customer_id", customer_id)
        return self._service.customer_keys.key_of(customer_id)

    async def _seal(self, customer_key: str, plaintext: bytes) -> bytes:
        """The plaintext sealed with the customer's data key (nothing for nothing: no key is
        made for a customer with nothing personal to keep)."""
        if not plaintext:
            return b""
        return await self._service.customer_keys.seal(customer_key, plaintext)
