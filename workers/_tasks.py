"""TaskClient: what a front end (IVR, chat gateway, CRM) needs to create and follow tasks."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc
from router._proto.switchboard.v1 import timeline_service_pb2_grpc as tlgrpc
from workers._client import (
    DEFAULT_ATTEMPTS_MAX,
    DEFAULT_CALL_TIMEOUT_S,
    DEFAULT_RETRY_BACKOFF_S,
    RouterClient,
)
from workers._conversations import ConversationCalls, TaskCall
from workers._credentials import TlsSettings, TokenSource, for_stubs
from workers._timeline import TimelineCall, TimelineCalls

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CreatedTask:
    """The answer to `TaskClient.create_task`."""

    task: pb.Task
    """The task as the router holds it, with its queue position and estimated wait."""
    deduplicated: bool
    """True when an earlier call with the same client_request_id had created it."""


class TaskClient(RouterClient[tgrpc.TaskServiceStub], ConversationCalls, TimelineCalls):
    """An asyncio client of TaskService. Use it as `async with TaskClient(addresses) as tasks:`.

    Give it every router's address: on UNAVAILABLE (a standby, a router that died, a store
    outage) it moves on to the next one.

    `create_task` and `get_task` are retried on UNAVAILABLE with exponential back-off:
    `create_task` sends the same client_request_id on every attempt, so a retry after a lost
    reply returns the task the first attempt created instead of creating a second one.
    `cancel_task`, `complete_task` and the conversation calls (`transfer_task`, `pause_task`,
    `resume_task`, `add_participant`, ...: see `ConversationCalls`) are not retried: they change
    state, and a retry after a lost reply would be refused as an illegal transition. Nor are
    the timeline calls (`record_outcome`, `get_timeline`, ...: see `TimelineCalls`).
    """

    def __init__(
        self,
        address: str | Sequence[str],
        *,
        retry_backoff_s: tuple[float, float] = DEFAULT_RETRY_BACKOFF_S,
        attempts_max: int = DEFAULT_ATTEMPTS_MAX,
        call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
        token: TokenSource | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        super().__init__(
            address,
            tgrpc.TaskServiceStub,
            retry_backoff_s=retry_backoff_s,
            attempts_max=attempts_max,
            call_timeout_s=call_timeout_s,
            interceptors=interceptors,
            token=token,
            tls=tls,
        )

    async def create_task(
        self,
        *,
        queue_id: str,
        channel: str,
        required_skills: Mapping[str, float] | None = None,
        preferred_skills: Mapping[str, float] | None = None,
        language: str = "",
        priority: int = 0,
        customer_id: str = "",
        sentiment: float = 0.0,
        attributes: Mapping[str, Any] | None = None,
        ttl_s: float = 0.0,
        preferred_worker_id: str = "",
        client_request_id: str | None = None,
    ) -> CreatedTask:
        """Creates a task in `queue_id` for `channel`. Without a `client_request_id` a fresh
        uuid4 is used, which makes this call's own retries idempotent; pass your own to make
        retries across processes (or restarts) idempotent too."""
        task = pb.Task(
            queue_id=queue_id,
            channel=channel,
            required_skills=dict(required_skills or {}),
            preferred_skills=dict(preferred_skills or {}),
            language=language,
            priority=priority,
            customer_id=customer_id,
            sentiment=sentiment,
            ttl_s=ttl_s,
            preferred_worker_id=preferred_worker_id,
        )
        if attributes:
            task.attributes.update(dict(attributes))
        request = tpb.CreateTaskRequest(
            task=task, client_request_id=client_request_id or str(uuid.uuid4())
        )
        response = await self._retrying(
            lambda: self._stub().CreateTask(request, timeout=self._call_timeout_s)
        )
        return CreatedTask(task=response.task, deduplicated=response.deduplicated)

    async def get_task(self, task_id: str) -> pb.Task:
        """The task as it is now (with its queue position while it waits)."""
        request = tpb.GetTaskRequest(task_id=task_id)
        response = await self._retrying(
            lambda: self._stub().GetTask(request, timeout=self._call_timeout_s)
        )
        return response.task

    async def cancel_task(self, task_id: str, reason: str = "") -> pb.Task:
        """Cancels a pending or reserved task (a pending offer is withdrawn)."""
        request = tpb.CancelTaskRequest(task_id=task_id, reason=reason)
        response = await self._once(self._stub().CancelTask(request, timeout=self._call_timeout_s))
        return response.task

    async def complete_task(self, task_id: str) -> pb.Task:
        """Ends the handling of an assigned task; it wraps up for its queue's wrap-up time."""
        request = tpb.CompleteTaskRequest(task_id=task_id)
        response = await self._once(
            self._stub().CompleteTask(request, timeout=self._call_timeout_s)
        )
        return response.task

    async def _call_tasks(self, call: TaskCall[T]) -> T:
        return await self._once(call(self._stub(), self._call_timeout_s))

    async def _call_timeline(self, call: TimelineCall[T]) -> T:
        self._stub()  # opens the channel on first use
        stub = tlgrpc.TimelineServiceStub(for_stubs(self._channel, self._token))
        return await self._once(call(stub, self._call_timeout_s))
