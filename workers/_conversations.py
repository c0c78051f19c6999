"""The conversation calls of TaskService (transfers, pause and resume, participants), written
once for the two clients that make them: `TaskClient` (a front end, on any task) and
`AgentSession` (an agent, with its own token, on its own tasks)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TypeVar

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc

R = TypeVar("R")

TaskCall = Callable[[tgrpc.TaskServiceStub, float], Awaitable[R]]
"""(stub, timeout in seconds) -> the call in flight."""


class ConversationCalls(ABC):
    """Transfer, cancel a transfer, pause, resume, add and remove participants, hand over.

    Each call is made once, never retried: each changes state, and a retry after a lost reply
    would be refused as an illegal move (or transfer the task twice). Refusals raise the SDK's
    typed errors (`FailedPrecondition` for an illegal move, `InvalidArgument` naming the field,
    `PermissionDenied` for an agent acting on a task that is not its own).

    An agent may act on a task assigned to it, resume one it paused, and remove itself from one
    it is a participant of; a front end on any task.
    """

    @abstractmethod
    async def _call_tasks(self, call: TaskCall[R]) -> R:
        """Makes one TaskService call on the client's channel, with its credentials (each
        client says how: its channel, its token)."""

    async def transfer_task(
        self,
        task_id: str,
        *,
        mode: pb.TransferMode.ValueType,
        target: pb.TransferTarget,
        priority: int | None = None,
        wrap_up: bool = False,
        allow_back: bool = False,
        reason: str = "",
    ) -> tpb.TransferTaskResponse:
        """Transfers an assigned task, cold or warm, to a queue, a worker or a requirement (the
        task keeps its age); the response carries the transfer (its `transfer_id` cancels it).
        `mode` is `TRANSFER_MODE_COLD` (the agent is released, into wrap-up with `wrap_up`) or
        `TRANSFER_MODE_WARM` (the target is offered a consult; on its accept the task moves).
        `priority` replaces the task's; `allow_back` lets a cold transfer come back to the
        agent who made it."""
        request = tpb.TransferTaskRequest(
            task_id=task_id, mode=mode, target=target, wrap_up=wrap_up,
            allow_back=allow_back, reason=reason,
        )  # fmt: skip
        if priority is not None:
            request.priority = priority
        return await self._call_tasks(
            lambda stub, timeout_s: stub.TransferTask(request, timeout=timeout_s)
        )

    async def cancel_transfer(self, task_id: str, transfer_id: str) -> pb.Task:
        """Cancels an initiated warm transfer; the task stays with its agent."""
        request = tpb.CancelTransferRequest(task_id=task_id, transfer_id=transfer_id)
        response = await self._call_tasks(
            lambda stub, timeout_s: stub.CancelTransfer(request, timeout=timeout_s)
        )
        return response.task

    async def pause_task(self, task_id: str, reason: str = "") -> pb.Task:
        """Parks an assigned task, releasing its agents' capacity; the agent who held it is
        the one the resumed task waits for."""
        request = tpb.PauseTaskRequest(task_id=task_id, reason=reason)
        response = await self._call_tasks(
            lambda stub, timeout_s: stub.PauseTask(request, timeout=timeout_s)
        )
        return response.task

    async def resume_task(self, task_id: str, known_agent_wait_s: float | None = None) -> pb.Task:
        """Routes a paused task again, waiting first for the agent who paused it (up to
        `known_agent_wait_s`, or the task's own wait when None)."""
        request = tpb.ResumeTaskRequest(task_id=task_id)
        if known_agent_wait_s is not None:
            request.known_agent_wait_s = known_agent_wait_s
        response = await self._call_tasks(
            lambda stub, timeout_s: stub.ResumeTask(request, timeout=timeout_s)
        )
        return response.task

    async def add_participant(
        self, task_id: str, *, role: pb.ParticipantRole.ValueType, target: pb.TransferTarget
    ) -> pb.Task:
        """Adds a consult (offered the task) or a monitor (joins at once) to an assigned task."""
        request = tpb.AddParticipantRequest(task_id=task_id, role=role, target=target)
        response = await self._call_tasks(
            lambda stub, timeout_s: stub.AddParticipant(request, timeout=timeout_s)
        )
        return response.task

    async def remove_participant(self, task_id: str, worker_id: str) -> pb.Task:
        """Removes a consult or monitor (or withdraws its pending consult offer); an agent
        on a task as a participant may remove itself (leave)."""
        request = tpb.RemoveParticipantRequest(task_id=task_id, worker_id=worker_id)
        response = await self._call_tasks(
            lambda stub, timeout_s: stub.RemoveParticipant(request, timeout=timeout_s)
        )
        return response.task

    async def hand_over_task(
        self, task_id: str, worker_id: str, *, wrap_up: bool = False
    ) -> pb.Task:
        """The primary hands the task to a consult who has accepted."""
        request = tpb.HandOverTaskRequest(task_id=task_id, worker_id=worker_id, wrap_up=wrap_up)
        response = await self._call_tasks(
            lambda stub, timeout_s: stub.HandOverTask(request, timeout=timeout_s)
        )
        return response.task
