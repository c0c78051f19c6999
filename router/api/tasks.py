"""TaskService: thin translation between requests and the single writer's commands."""

from __future__ import annotations

import grpc

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc
from router.api.convert import (
    PARTICIPANT_ROLE_FROM_PB,
    TASK_STATUS_FROM_PB,
    TRANSFER_MODE_FROM_PB,
    add_conversation,
    enum_from_pb,
    struct_to_dict,
    target_from_pb,
    task_spec_from_pb,
    task_to_pb,
    transfer_to_pb,
)
from router.api.paging import (
    PAGE_TOKEN_KEY_PURPOSE,
    TASKS_SCANNED_MAX,
    PageTokens,
    fill_page,
    page_size,
    seq_after,
    seq_token,
)
from router.api.status import maps_errors
from router.core import commands as cmd
from router.core.errors import FailedPrecondition
from router.core.model import TaskRecord
from router.core.results import ConversationResult
from router.core.task_index import TaskFilter
from router.core.task_table import TaskCopy
from router.privacy.task_data import TaskData
from router.service import RouterService


class TaskServicer(tgrpc.TaskServiceServicer):
    """Every task goes in with its customer id keyed and its personal data sealed (`TaskData`),
    and comes out revealed: the access table lets only callers who may read a task reach it."""

    def __init__(self, service: RouterService, task_data: TaskData) -> None:
        self._service = service
        self._data = task_data

    @maps_errors
    async def CreateTask(
        self, request: tpb.CreateTaskRequest, context: grpc.aio.ServicerContext
    ) -> tpb.CreateTaskResponse:
        sealed = await self._data.seal_new(task_spec_from_pb(request.task))
        command = cmd.CreateTask(
            sealed.spec, request.client_request_id, customer_keyed=sealed.customer_keyed
        )
        created = await self._service.submit(command)
        task = task_to_pb(
            created.task,
            queue_position=created.queue_position,
            estimated_wait_ms=created.estimated_wait_ms,
        )
        if created.deduplicated:  # the task as it is now (an update may have changed it)
            await self._data.reveal((task,))
        else:  # the caller just gave the plaintext: nothing to open
            self._data.reveal_known(task, sealed)
        return tpb.CreateTaskResponse(task=task, deduplicated=created.deduplicated)

    @maps_errors
    async def GetTask(
        self, request: tpb.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> tpb.GetTaskResponse:
        engine = self._service.engine
        copy = engine.copy_task(request.task_id)
        task = add_conversation(_copy_to_pb(copy), engine.conversation_of(request.task_id))
        await self._data.reveal((task,))
        return tpb.GetTaskResponse(task=task)

    @maps_errors
    async def ListTasks(
        self, request: tpb.ListTasksRequest, context: grpc.aio.ServicerContext
    ) -> tpb.ListTasksResponse:
        count_max = page_size(request.page_size)
        task_filter = TaskFilter(
            status=enum_from_pb("status", request.status, TASK_STATUS_FROM_PB),
            queue_id=request.queue_id,
            worker_id=request.worker_id,
            channel=request.channel,
        )
        tokens = PageTokens(
            self._service.derived_key(PAGE_TOKEN_KEY_PURPOSE),
            "ListTasks",
            (request.queue_id, request.status, request.worker_id, request.channel),
        )
        after_seq = seq_after(tokens, request.page_token)
        page = self._service.engine.list_tasks(
            task_filter, after_seq=after_seq, count_max=count_max, scan_max=TASKS_SCANNED_MAX
        )
        response = tpb.ListTasksResponse()
        copies = page.copies
        # Cut by bytes while sealed: revealed, a task grows by its customer_key and its id's
        # length at most (its personal attributes are shorter than their sealed base64), which
        # a page's half a MiB of room under 4 MiB holds (1,000 tasks x ~170 bytes).
        included = await fill_page(response.tasks, copies, _copy_to_pb)
        await self._data.reveal(response.tasks)
        if included < len(copies):  # cut by bytes: resume after the last task sent
            response.next_page_token = seq_token(tokens, copies[included - 1].seq)
        elif page.resume_after_seq is not None:
            response.next_page_token = seq_token(tokens, page.resume_after_seq)
        return response

    @maps_errors
    async def UpdateTask(
        self, request: tpb.UpdateTaskRequest, context: grpc.aio.ServicerContext
    ) -> tpb.UpdateTaskResponse:
        attributes = None
        if request.HasField("attributes"):
            attributes = await self._data.seal_update(
                self._open_task(request.task_id), struct_to_dict(request.attributes)
            )
        command = cmd.UpdateTask(
            request.task_id,
            priority=request.priority if request.HasField("priority") else None,
            attributes=attributes,
        )
        return tpb.UpdateTaskResponse(task=await self._submit_task(command, context))

    @maps_errors
    async def CancelTask(
        self, request: tpb.CancelTaskRequest, context: grpc.aio.ServicerContext
    ) -> tpb.CancelTaskResponse:
        command = cmd.CancelTask(request.task_id, request.reason)
        return tpb.CancelTaskResponse(task=await self._submit_task(command, context))

    @maps_errors
    async def CompleteTask(
        self, request: tpb.CompleteTaskRequest, context: grpc.aio.ServicerContext
    ) -> tpb.CompleteTaskResponse:
        command = cmd.CompleteTask(request.task_id)
        return tpb.CompleteTaskResponse(task=await self._submit_task(command, context))

    @maps_errors
    async def WrapUpTask(
        self, request: tpb.WrapUpTaskRequest, context: grpc.aio.ServicerContext
    ) -> tpb.WrapUpTaskResponse:
        command = cmd.WrapUpTask(request.task_id)
        return tpb.WrapUpTaskResponse(task=await self._submit_task(command, context))

    @maps_errors
    async def TransferTask(
        self, request: tpb.TransferTaskRequest, context: grpc.aio.ServicerContext
    ) -> tpb.TransferTaskResponse:
        command = cmd.TransferTask(
            request.task_id,
            enum_from_pb("mode", request.mode, TRANSFER_MODE_FROM_PB),
            target_from_pb(request.target),
            priority=request.priority if request.HasField("priority") else None,
            wrap_up=request.wrap_up,
            allow_back=request.allow_back,
            reason=request.reason,
        )
        result = await self._service.submit(command)
        transfer = next(
            t for t in result.conversation.transfers if t.transfer_id == result.transfer_id
        )
        return tpb.TransferTaskResponse(
            task=await self._result_pb(result), transfer=transfer_to_pb(transfer)
        )

    @maps_errors
    async def CancelTransfer(
        self, request: tpb.CancelTransferRequest, context: grpc.aio.ServicerContext
    ) -> tpb.CancelTransferResponse:
        command = cmd.CancelTransfer(request.task_id, request.transfer_id)
        return tpb.CancelTransferResponse(task=await self._submit_conversation(command))

    @maps_errors
    async def PauseTask(
        self, request: tpb.PauseTaskRequest, context: grpc.aio.ServicerContext
    ) -> tpb.PauseTaskResponse:
        command = cmd.PauseTask(request.task_id, request.reason)
        return tpb.PauseTaskResponse(task=await self._submit_conversation(command))

    @maps_errors
    async def ResumeTask(
        self, request: tpb.ResumeTaskRequest, context: grpc.aio.ServicerContext
    ) -> tpb.ResumeTaskResponse:
        wait_s = request.known_agent_wait_s if request.HasField("known_agent_wait_s") else None
        command = cmd.ResumeTask(request.task_id, wait_s)
        return tpb.ResumeTaskResponse(task=await self._submit_conversation(command))

    @maps_errors
    async def AddParticipant(
        self, request: tpb.AddParticipantRequest, context: grpc.aio.ServicerContext
    ) -> tpb.AddParticipantResponse:
        command = cmd.AddParticipant(
            request.task_id,
            enum_from_pb("role", request.role, PARTICIPANT_ROLE_FROM_PB),
            target_from_pb(request.target),
        )
        return tpb.AddParticipantResponse(task=await self._submit_conversation(command))

    @maps_errors
    async def RemoveParticipant(
        self, request: tpb.RemoveParticipantRequest, context: grpc.aio.ServicerContext
    ) -> tpb.RemoveParticipantResponse:
        command = cmd.RemoveParticipant(request.task_id, request.worker_id)
        return tpb.RemoveParticipantResponse(task=await self._submit_conversation(command))

    @maps_errors
    async def HandOverTask(
        self, request: tpb.HandOverTaskRequest, context: grpc.aio.ServicerContext
    ) -> tpb.HandOverTaskResponse:
        command = cmd.HandOverTask(request.task_id, request.worker_id, request.wrap_up)
        return tpb.HandOverTaskResponse(task=await self._submit_conversation(command))

    async def _submit_task(
        self, command: cmd.Command[TaskCopy], context: grpc.aio.ServicerContext
    ) -> pb.Task:
        """A command's result, with the task's place in its queue as the command left it."""
        task = _copy_to_pb(await self._service.submit(command))
        await self._data.reveal((task,))
        return task

    async def _submit_conversation(self, command: cmd.Command[ConversationResult]) -> pb.Task:
        return await self._result_pb(await self._service.submit(command))

    async def _result_pb(self, result: ConversationResult) -> pb.Task:
        task = add_conversation(_copy_to_pb(result.task), result.conversation)
        await self._data.reveal((task,))
        return task

    def _open_task(self, task_id: str) -> TaskRecord:
        """The open task an update names; NOT_FOUND or FAILED_PRECONDITION (as the core would
        answer) before anything is sealed, so that no personal data is journaled in plaintext
        with a command the core refuses."""
        engine = self._service.engine
        task = engine.tasks.open.get(task_id)
        if task is None:
            closed = engine.copy_task(task_id)  # NOT_FOUND for an unknown task
            raise FailedPrecondition(f"task {task_id} is {closed.record().status.value}")
        return task


def _copy_to_pb(copy: TaskCopy) -> pb.Task:
    return task_to_pb(
        copy.record(),
        queue_position=copy.queue_position,
        estimated_wait_ms=copy.estimated_wait_ms,
    )
