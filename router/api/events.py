"""EventService: the event feed, resumable from a cursor (`router.writer.eventhub`).

A subscriber gets one message per batch of events ready, and each event is encoded once for
all the subscribers: a `SubscribeResponse` holding one event encodes to exactly that event's
entry of the repeated `events` field, so a batch's message is those bytes joined (the stream
is registered with a serializer that passes bytes through, `serialize_response`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

import grpc

from router._proto.switchboard.v1 import event_service_pb2 as epb
from router._proto.switchboard.v1 import event_service_pb2_grpc as egrpc
from router.api.status import abort_unavailable, maps_errors
from router.core.errors import InvalidArgument
from router.core.feed import EventType, FeedEvent
from router.service import RouterService
from router.writer.eventhub import Cursor, Delivery, EventFilter, FeedEnded, parse_cursor

FILTER_VALUES_MAX = 1024
"""Most values one filter of a subscription may list."""
ENCODED_EVENTS_KEPT = 20_000
"""Encoded events kept for the subscribers that follow (all read the newest events)."""


def serialize_response(response: bytes | epb.SubscribeResponse) -> bytes:
    """Subscribe's response serializer: bytes already encoded pass through."""
    return response if isinstance(response, bytes) else response.SerializeToString()


class EventServicer(egrpc.EventServiceServicer):
    def __init__(self, service: RouterService) -> None:
        self._service = service
        self._encoded: OrderedDict[Cursor, bytes] = OrderedDict()

    @maps_errors
    async def Subscribe(  # type: ignore[override]  # a stream written with context.write
        self, request: epb.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> None:
        # Written with context.write, not yielded: a send blocked by a client that stopped
        # reading must not keep the hub from ending the call (cut off, or a step-down).
        after = parse_cursor(request.after_cursor) if request.after_cursor else None
        subscription = await self._service.subscribe(
            after=after, from_oldest=request.from_oldest, event_filter=_filter_of(request)
        )
        stopped = subscription.stopped
        try:
            async with contextlib.aclosing(subscription.deliveries()) as deliveries:
                async for batch in deliveries:
                    message = self._message(batch)
                    write = asyncio.ensure_future(context.write(message))
                    await asyncio.wait((write, stopped), return_when=asyncio.FIRST_COMPLETED)
                    if not write.done():
                        write.add_done_callback(_retrieve)  # fails once the call ends
                        raise stopped.result()
                    write.result()
        except FeedEnded as ended:
            await abort_unavailable(context, ended.message, leader_address=ended.leader_address)

    def _message(self, batch: list[Delivery]) -> bytes:
        """The encoded SubscribeResponse of a batch (or of a checkpoint)."""
        if batch[0].event is None:
            checkpoint = epb.Checkpoint(cursor=str(batch[0].cursor))
            return epb.SubscribeResponse(checkpoint=checkpoint).SerializeToString()
        encoded = self._encoded
        parts = []
        for delivery in batch:
            part = encoded.get(delivery.cursor)
            if part is None:
                assert delivery.event is not None
                event = event_to_pb(str(delivery.cursor), delivery.event)
                part = encoded[delivery.cursor] = epb.SubscribeResponse(
                    events=[event]
                ).SerializeToString()
                if len(encoded) > ENCODED_EVENTS_KEPT:
                    encoded.popitem(last=False)
            parts.append(part)
        return b"".join(parts)


def _retrieve(write: asyncio.Future[None]) -> None:
    if not write.cancelled():
        write.exception()


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
        policy_id=event.policy_id,
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
