"""WorkerService: profiles, activity, and the Connect stream that carries offers to agents."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router._proto.switchboard.v1 import worker_service_pb2_grpc as wgrpc
from router.api.convert import (
    PARTICIPANT_ROLE_TO_PB,
    offer_to_pb,
    participant_to_pb,
    task_to_pb,
    transfer_to_pb,
    worker_profile_from_pb,
    worker_to_pb,
)
from router.api.handlers import first_request
from router.api.paging import PAGE_TOKEN_KEY_PURPOSE, PageTokens, fill_page, id_after, page_size
from router.api.status import abort_unavailable, connect_error, maps_errors
from router.core import commands as cmd
from router.core.conversation_model import Participant
from router.core.engine import WorkerCopy
from router.core.errors import CoreError, InvalidArgument
from router.core.events import (
    ConsultClosed,
    ConsultOffered,
    Event,
    OfferClosed,
    OfferCreated,
    ParticipantChanged,
    TaskAssigned,
    TaskPaused,
    TaskResumed,
    TransferChanged,
    WorkerActivityChanged,
    WorkerPresenceChanged,
)
from router.core.model import WorkerRecord
from router.privacy.task_data import TaskData
from router.service import EndKind, RouterService, StreamEnd, WorkerStream

ConnectRequest = wpb.ConnectRequest
ConnectResponse = wpb.ConnectResponse

HELLO_TIMEOUT_S_DEFAULT = 10.0
"""How long a new Connect stream may take to send its hello before it is ended."""

_END_CODES = {
    EndKind.REPLACED: grpc.StatusCode.ABORTED,
    EndKind.REMOVED: grpc.StatusCode.NOT_FOUND,
    EndKind.SILENT: grpc.StatusCode.DEADLINE_EXCEEDED,
}


class _Goodbye:
    """Put on a stream's queue once its goodbye is applied: the stream ends OK."""


_GOODBYE = _Goodbye()


class WorkerServicer(wgrpc.WorkerServiceServicer):
    def __init__(
        self,
        service: RouterService,
        task_data: TaskData,
        *,
        hello_timeout_s: float = HELLO_TIMEOUT_S_DEFAULT,
    ) -> None:
        self._service = service
        self._data = task_data
        self._hello_timeout_s = hello_timeout_s

    def _worker_pb(self, worker: WorkerRecord) -> pb.Worker:
        engine = self._service.engine
        available = engine.activities[worker.activity]
        return worker_to_pb(
            worker, available=available, presence=engine.presence.of(worker.worker_id)
        )

    def _copy_pb(self, copy: WorkerCopy) -> pb.Worker:
        presence = self._service.engine.presence.of(copy.worker.worker_id)
        return worker_to_pb(copy.worker, available=copy.available, presence=presence)

    @maps_errors
    async def UpsertWorker(
        self, request: wpb.UpsertWorkerRequest, context: grpc.aio.ServicerContext
    ) -> wpb.UpsertWorkerResponse:
        upserted = await self._service.submit(
            cmd.UpsertWorker(worker_profile_from_pb(request.worker))
        )
        return wpb.UpsertWorkerResponse(
            worker=self._copy_pb(upserted.worker), created=upserted.created
        )

    @maps_errors
    async def GetWorker(
        self, request: wpb.GetWorkerRequest, context: grpc.aio.ServicerContext
    ) -> wpb.GetWorkerResponse:
        worker = self._service.engine.get_worker(request.worker_id)
        return wpb.GetWorkerResponse(worker=self._worker_pb(worker))

    @maps_errors
    async def ListWorkers(
        self, request: wpb.ListWorkersRequest, context: grpc.aio.ServicerContext
    ) -> wpb.ListWorkersResponse:
        count_max = page_size(request.page_size)
        key = self._service.derived_key(PAGE_TOKEN_KEY_PURPOSE)
        tokens = PageTokens(key, "ListWorkers", (request.activity,))
        after_worker_id = id_after(tokens, request.page_token)
        page = self._service.engine.list_workers(
            activity=request.activity, after_worker_id=after_worker_id, count_max=count_max
        )
        response = wpb.ListWorkersResponse()
        copies = page.copies
        included = await fill_page(response.workers, copies, self._copy_pb)
        if included < len(copies) or page.more:
            response.next_page_token = tokens.token(copies[included - 1].worker.worker_id)
        return response

    @maps_errors
    async def RemoveWorker(
        self, request: wpb.RemoveWorkerRequest, context: grpc.aio.ServicerContext
    ) -> wpb.RemoveWorkerResponse:
        await self._service.submit(cmd.RemoveWorker(request.worker_id))
        return wpb.RemoveWorkerResponse()

    @maps_errors
    async def SetActivity(
        self, request: wpb.SetActivityRequest, context: grpc.aio.ServicerContext
    ) -> wpb.SetActivityResponse:
        worker = await self._service.submit(cmd.SetActivity(request.worker_id, request.activity))
        return wpb.SetActivityResponse(worker=self._copy_pb(worker))

    @maps_errors
    async def AcceptOffer(
        self, request: wpb.AcceptOfferRequest, context: grpc.aio.ServicerContext
    ) -> wpb.AcceptOfferResponse:
        task = await self._service.submit(
            cmd.AcceptOffer(request.worker_id, request.reservation_id)
        )
        message = task_to_pb(task.record())
        await self._data.reveal((message,))
        return wpb.AcceptOfferResponse(task=message)

    @maps_errors
    async def RejectOffer(
        self, request: wpb.RejectOfferRequest, context: grpc.aio.ServicerContext
    ) -> wpb.RejectOfferResponse:
        await self._service.submit(
            cmd.RejectOffer(request.worker_id, request.reservation_id, request.reason)
        )
        return wpb.RejectOfferResponse()

    @maps_errors
    async def SetDraining(
        self, request: wpb.SetDrainingRequest, context: grpc.aio.ServicerContext
    ) -> wpb.SetDrainingResponse:
        worker = await self._service.submit(cmd.SetDraining(request.worker_id, request.draining))
        return wpb.SetDrainingResponse(worker=self._copy_pb(worker))

    @maps_errors
    async def Connect(
        self, request_iterator: AsyncIterator[ConnectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ConnectResponse]:
        """Attaches the stream to a worker (the worker's only live stream: an older one is
        ended), re-sends its pending offers, then forwards every event about it while answering
        accept, reject, heartbeat and goodbye messages in order. A stream that ends without a
        goodbye (or falls silent) loses the worker's presence: its grace starts."""
        requests = aiter(request_iterator)
        hello = await first_request(requests, self._hello_timeout_s, context)
        if hello is None or not hello.HasField("hello"):
            raise InvalidArgument("hello", "the first message must be a hello")
        service = self._service
        worker_id = hello.hello.worker_id
        service.engine.get_worker(worker_id)  # NOT_FOUND before taking anything over
        # Claimed before the hello is applied, so that an older stream of the worker ending
        # meanwhile is no longer its live one (its lost presence would follow the hello).
        stream = service.claim_worker_stream(worker_id)
        attached_ok = goodbye = False
        reader = None
        try:
            await service.submit(cmd.WorkerAttached(worker_id, hello.hello.activity))
            attached_ok = True
            # Subscribe and read the pending offers with no await between, so that every offer
            # is either in this snapshot or among the events that follow, never both or neither.
            worker = service.engine.get_worker(worker_id)
            service.subscribe_worker_stream(stream)
            attached = ConnectResponse(
                request_id=hello.request_id, attached=self._worker_pb(worker)
            )
            pending = self._pending_offers(worker)
            # The answers go onto the stream's own queue, among its events: one queue to wait
            # on, and no task forwarding the events (a wake-up fewer per event).
            reader = asyncio.create_task(self._read(stream, requests))
            yield attached
            await self._data.reveal(task for offer in pending for task in _tasks_in(offer))
            for offer in pending:
                yield offer
            while True:
                item = await stream.get()
                if item is None:  # the agent closed its side
                    return
                if isinstance(item, _Goodbye):
                    goodbye = True
                    return
                if isinstance(item, StreamEnd):  # never OK: the agent must reconnect
                    code = _END_CODES.get(item.kind)
                    if code is None:
                        await abort_unavailable(
                            context, item.message, leader_address=item.leader_address
                        )
                    else:
                        await context.abort(code, item.message)
                    return  # (abort raises)
                if isinstance(item, ConnectResponse):
                    message: ConnectResponse | None = item
                else:  # the rest of what the queue carries are the worker's events
                    message = _event_message(cast(Event, item))
                if message is not None:
                    await self._data.reveal(_tasks_in(message))
                    yield message
        finally:
            service.worker_stream_ended(stream, presence_lost=attached_ok and not goodbye)
            if reader is not None:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

    def _pending_offers(self, worker: WorkerRecord) -> list[ConnectResponse]:
        engine = self._service.engine
        offers = []
        for task_id in worker.task_ids:
            task = engine.tasks[task_id]
            for reservation_id in task.offer_ids:  # several when offered to several workers
                reservation = engine.reservations[reservation_id]
                if reservation.worker_id == worker.worker_id:
                    offers.append(ConnectResponse(offer=offer_to_pb(reservation, task)))
        for reservation, task, participant in engine.conversations.invites_of(worker.worker_id):
            offer = _consult_offer_pb(reservation, task, participant.role, participant.transfer_id)
            offers.append(ConnectResponse(offer=offer))
        return offers

    async def _read(self, stream: WorkerStream, requests: AsyncIterator[ConnectRequest]) -> None:
        """Answers the agent's messages in order; ends the stream when the agent closes it or
        says goodbye."""
        try:
            async for request in requests:
                self._service.worker_stream_seen(stream)
                answer = await self._answer(stream.worker_id, request)
                stream.put(answer)
                if request.HasField("goodbye") and answer.HasField("ack"):
                    stream.put(_GOODBYE)
                    return
        finally:
            stream.put(None)

    async def _answer(self, worker_id: str, request: ConnectRequest) -> ConnectResponse:
        kind = request.WhichOneof("kind")
        command: cmd.Command[object]
        if kind == "accept":
            command = cmd.AcceptOffer(worker_id, request.accept.reservation_id)
        elif kind == "reject":
            command = cmd.RejectOffer(
                worker_id, request.reject.reservation_id, request.reject.reason
            )
        elif kind == "goodbye":
            command = cmd.WorkerDetached(worker_id, request.goodbye.activity)
        elif kind == "heartbeat":
            return ConnectResponse(request_id=request.request_id, ack=ConnectResponse.Ack())
        else:
            refused = InvalidArgument(kind or "kind", "not allowed here")
            return connect_error(request.request_id, refused)
        try:
            await self._service.submit(command)
        except CoreError as error:
            return connect_error(request.request_id, error)
        return ConnectResponse(request_id=request.request_id, ack=ConnectResponse.Ack())


def _consult_offer_pb(reservation: Any, task: Any, role: Any, transfer_id: str) -> pb.Offer:
    offer = offer_to_pb(reservation, task)
    offer.consult_role = PARTICIPANT_ROLE_TO_PB[role]
    offer.transfer_id = transfer_id
    return offer


def _tasks_in(message: ConnectResponse) -> list[pb.Task]:
    """The tasks a message to an agent shows (to reveal their personal data)."""
    kind = message.WhichOneof("kind")
    if kind in ("offer", "offer_closed"):
        offer: pb.Offer = getattr(message, kind)
        return [offer.task] if offer.HasField("task") else []
    if kind in ("assigned", "paused", "resumed"):
        return [getattr(message, kind)]
    if kind == "transfer":
        return [message.transfer.task]
    return []


def _event_message(event: Event) -> ConnectResponse | None:
    """What an agent's stream says of an event that concerns it."""
    if isinstance(event, ConsultOffered):
        offer = _consult_offer_pb(event.reservation, event.task, event.role, event.transfer_id)
        return ConnectResponse(offer=offer)
    if isinstance(event, ConsultClosed):
        offer = _consult_offer_pb(event.reservation, event.task, event.role, event.transfer_id)
        return ConnectResponse(offer_closed=offer)
    if isinstance(event, TransferChanged):
        notice = ConnectResponse.TransferNotice(
            transfer=transfer_to_pb(event.transfer), task=task_to_pb(event.task)
        )
        return ConnectResponse(transfer=notice)
    if isinstance(event, ParticipantChanged):
        participant = Participant(event.worker_id, event.role, 0)
        return ConnectResponse(
            participant=ConnectResponse.ParticipantNotice(
                task_id=event.task_id, participant=participant_to_pb(participant),
                added=event.added,
            )
        )  # fmt: skip
    if isinstance(event, TaskPaused):
        return ConnectResponse(paused=task_to_pb(event.task))
    if isinstance(event, TaskResumed):
        return ConnectResponse(resumed=task_to_pb(event.task))
    if isinstance(event, OfferCreated):
        return ConnectResponse(offer=offer_to_pb(event.reservation, event.task))
    if isinstance(event, OfferClosed):
        return ConnectResponse(offer_closed=offer_to_pb(event.reservation, event.task))
    if isinstance(event, TaskAssigned):
        return ConnectResponse(assigned=task_to_pb(event.task))
    if isinstance(event, WorkerActivityChanged):
        change = ConnectResponse.PresenceChange(
            change="activity", activity=event.activity,
            previous_activity=event.previous_activity,
        )  # fmt: skip
        return ConnectResponse(presence=change)
    if isinstance(event, WorkerPresenceChanged) and event.change not in ("connected", "lost"):
        change = ConnectResponse.PresenceChange(
            change=event.change, activity=event.activity, reason=event.reason
        )
        return ConnectResponse(presence=change)
    return None
