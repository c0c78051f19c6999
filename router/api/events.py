"""EventService: the event feed, resumable from a cursor (`router.writer.eventhub`).

A subscriber gets one message per batch of events ready, and each event is encoded once for
all the subscribers: a `SubscribeResponse` holding one event encodes to exactly that event's
entry of the repeated `events` field, so a batch's message is those bytes joined (the stream
is registered with a serializer that passes bytes through, `serialize_response`)."""

from __future__ import annotations

import asyncio
import contextlib

import grpc

from router._proto.switchboard.v1 import event_service_pb2 as epb
from router._proto.switchboard.v1 import event_service_pb2_grpc as egrpc
from router.api.status import abort_unavailable, maps_errors
from router.core.errors import InvalidArgument
from router.core.feed import EventType, FeedEvent
from router.service import RouterService
from router.writer.eventhub import Delivery, EventFilter, FeedEnded, parse_cursor

FILTER_VALUES_MAX = 1024
"""Most values one filter of a subscription may list."""


def serialize_response(response: bytes | epb.SubscribeResponse) -> bytes:
    """Subscribe's response serializer: bytes already encoded pass through."""
    return response if isinstance(response, bytes) else response.SerializeToString()


class EventServicer(egrpc.EventServiceServicer):
    def __init__(self, service: RouterService) -> None:
        self._service = service

    @maps_errors
    async def Subscribe(  # type: ignore[override]  # a stream written with context.write
        self, request: epb.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> None:
        after = parse_cursor(request.after_cursor) if request.after_cursor else None
        subscription = await self._service.subscribe(
            after=after, from_oldest=request.from_oldest, event_filter=_filter_of(request)
        )
        stopped = subscription.stopped
        # The hub ends a subscription by setting `stopped`: it cancels this task then, even
        # while a write is blocked by a client that stopped reading (one callback for the
        # whole call rather than a wait on each write).
        this = asyncio.current_task()
        assert this is not None
        stopped.add_done_callback(lambda _: this.cancel())
        try:
            async with contextlib.aclosing(subscription.deliveries()) as deliveries:
                async for batch in deliveries:
                    await context.write(_message(batch))  # bytes: see serialize_response
        except asyncio.CancelledError:
            if not stopped.done() or stopped.cancelled():
                raise  # the call itself ended
            this.uncancel()
            error = stopped.result()
            if isinstance(error, FeedEnded):
                await abort_unavailable(context, error.message, leader_address=error.leader_address)
            raise error from None
        except FeedEnded as ended:
            await abort_unavailable(context, ended.message, leader_address=ended.leader_address)


def _message(batch: list[Delivery]) -> bytes:
    """The encoded SubscribeResponse of a batch (or of a checkpoint). Each event is encoded
    once, by the first subscriber it goes to (`Delivery.encoded`)."""
    if batch[0].event is None:
        checkpoint = epb.Checkpoint(cursor=str(batch[0].cursor))
        return epb.SubscribeResponse(checkpoint=checkpoint).SerializeToString()
    parts = []
    for delivery in batch:
        part = delivery.encoded
        if part is None:
            assert delivery.event is not None
            event = event_to_pb(str(delivery.cursor), delivery.event)
            part = delivery.encoded = epb.SubscribeResponse(events=[event]).SerializeToString()
        parts.append(part)
    return b"".join(parts)


def _filter_of(request: epb.SubscribeRequest) -> EventFilter:
    known = {t.value for t in EventType}
    for name in ("types", "queue_ids", "worker_ids", "task_ids", "channels"):
        if len(getattr(request, name)) > FILTER_VALUES_MAX:
            raise InvalidArgument(name, f"at most {FILTER_VALUES_MAX} values")
    for index, value in enumerate(request.types):
        if value not in known:
            raise InvalidArgument(f"types[{index}]", f"unknown event type {value}")
    return EventFilter(
        frozenset(request.types), frozenset(request.queue_ids), frozenset(request.worker_ids),
        frozenset(request.task_ids), frozenset(request.channels),
    )  # fmt: skip


def event_to_pb(cursor: str, event: FeedEvent) -> epb.Event:
    return epb.Event(
        cursor=cursor, type=event.type, at_ms=event.at_ms, task_id=event.task_id,  # type: ignore[arg-type]
        queue_id=event.queue_id, channel=event.channel, worker_id=event.worker_id,
        reservation_id=event.reservation_id, priority=event.priority, reason=event.reason,
        origin=event.origin, activity=event.activity, previous_activity=event.previous_activity,
        from_queue_id=event.from_queue_id, wait_ms=event.wait_ms, step_index=event.step_index,
        policy_id=event.policy_id, transfer_id=event.transfer_id, role=event.role,
        transfer_mode=event.transfer_mode, to_worker_id=event.to_worker_id,
        paused_ms=event.paused_ms, customer_key=event.customer_key,
        disposition=event.disposition, resolution=event.resolution, tags=event.tags,
        kind=event.kind, source=event.source,
    )  # fmt: skip


def add_event_service(servicer: EventServicer, server: grpc.aio.Server) -> None:
    """Registers the servicer as the generated `add_EventServiceServicer_to_server` does, but
    with `serialize_response`, so that batches go out as the bytes `_message` joined."""
    service = epb.DESCRIPTOR.services_by_name["EventService"].full_name
    handlers = {
        "Subscribe": grpc.unary_stream_rpc_method_handler(
            servicer.Subscribe,
            request_deserializer=epb.SubscribeRequest.FromString,
            response_serializer=serialize_response,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)
