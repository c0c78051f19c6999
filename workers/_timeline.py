"""The TimelineService calls of the SDK, written once for the two clients that make them:
`AgentSession` (an agent: outcomes and actions as itself, on its own tasks; the timeline of the
customer of a task it holds) and `TaskClient` (a front end or supervisor: any customer)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from router._proto.switchboard.v1 import timeline_service_pb2 as tlpb
from router._proto.switchboard.v1 import timeline_service_pb2_grpc as tlgrpc

R = TypeVar("R")

TimelineCall = Callable[[tlgrpc.TimelineServiceStub, float], Awaitable[R]]
"""(stub, timeout in seconds) -> the call in flight."""

_RESOLUTION = {
    None: tlpb.RESOLUTION_UNSPECIFIED,
    True: tlpb.RESOLUTION_RESOLVED,
    False: tlpb.RESOLUTION_UNRESOLVED,
}


class TimelineCalls(ABC):
    """Record an outcome or an agent action, read a customer's timeline and routing context.

    Each call is made once, never retried (a retried record would record twice). Refusals raise
    the SDK's typed errors (`InvalidArgument` naming the field, `FailedPrecondition` for a task
    without a customer, `PermissionDenied` for an agent naming a task it does not hold)."""

    @abstractmethod
    async def _call_timeline(self, call: TimelineCall[R]) -> R:
        """Makes one TimelineService call on the client's channel, with its credentials."""

    def _recording_worker_id(self) -> str:
        """Who records outcomes and actions when the call does not say (an agent: itself)."""
        return ""

    async def record_outcome(
        self,
        task_id: str,
        *,
        disposition: str = "",
        resolved: bool | None = None,
        note: str = "",
        note_private: bool = False,
        tags: Sequence[str] = (),
        worker_id: str | None = None,
    ) -> tlpb.TimelineEntry:
        """Records what the task came to: a disposition code, whether it resolved the
        customer's need (None: not said), a note (encrypted at rest; `note_private`: only its
        author and supervisors see it) and tags such as "sales". Routing reads the customer's
        latest outcome as `customer.last_resolved` and `customer.last_tags`."""
        request = tlpb.RecordOutcomeRequest(
            task_id=task_id, worker_id=self._recording_worker_id() if worker_id is None
            else worker_id, disposition=disposition, resolution=_RESOLUTION[resolved],
            note=note, note_private=note_private, tags=list(tags),
        )  # fmt: skip
        response = await self._call_timeline(
            lambda stub, timeout_s: stub.RecordOutcome(request, timeout=timeout_s)
        )
        return response.entry

    async def record_agent_action(
        self, task_id: str, action: str, *, reason: str = "", worker_id: str | None = None
    ) -> tlpb.TimelineEntry:
        """Records something the agent did on the task (a button, a lookup, a refund) and why
        (encrypted at rest), for supervisors."""
        request = tlpb.RecordAgentActionRequest(
            task_id=task_id, action=action, reason=reason,
            worker_id=self._recording_worker_id() if worker_id is None else worker_id,
        )  # fmt: skip
        response = await self._call_timeline(
            lambda stub, timeout_s: stub.RecordAgentAction(request, timeout=timeout_s)
        )
        return response.entry

    async def get_timeline(self, request: tlpb.GetTimelineRequest) -> tlpb.GetTimelineResponse:
        """A page of a customer's timeline (name it by `task_id`, or by `customer_id` for a
        front end or supervisor), as the caller's role sees it; pass `next_page_token` back as
        `page_token` for the next page."""
        return await self._call_timeline(
            lambda stub, timeout_s: stub.GetTimeline(request, timeout=timeout_s)
        )

    async def get_customer_context(
        self, *, task_id: str = "", customer_id: str = ""
    ) -> tlpb.CustomerContext:
        """What routing knows of the customer now (the `customer.*` keys of policy filters)."""
        request = tlpb.GetCustomerContextRequest(task_id=task_id, customer_id=customer_id)
        response = await self._call_timeline(
            lambda stub, timeout_s: stub.GetCustomerContext(request, timeout=timeout_s)
        )
        return response.context
