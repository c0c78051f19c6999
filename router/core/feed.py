"""The public event feed: what `EventService.Subscribe` delivers, made from the engine's events.

Each engine event becomes one `FeedEvent`, a small flat record (ids and scalars, never a whole
task), in the order the engine emitted them. The writer encodes a batch's feed once with
MessagePack (`encode_feed`) and journals it with the batch, so that a feed event exists exactly
when its batch is journaled. Pure: no I/O."""

from __future__ import annotations

from enum import IntEnum
from typing import Final

import msgspec

from router.core.conversation_model import TransferStatus
from router.core.events import (
    AgentActionRecorded,
    ConsultClosed,
    ConsultOffered,
    CustomerErased,
    CustomerProfileChanged,
    Event,
    OfferClosed,
    OfferCreated,
    OutcomeRecorded,
    ParticipantChanged,
    PolicyChanged,
    PresenceSettingsChanged,
    QueueChanged,
    TaskAssigned,
    TaskCanceled,
    TaskCompleted,
    TaskCreated,
    TaskMoved,
    TaskPaused,
    TaskQueued,
    TaskRequeued,
    TaskResumed,
    TaskUpdated,
    TaskWrapping,
    TimelineEntryAppended,
    TimelineSettingsChanged,
    TransferChanged,
    WorkerActivityChanged,
    WorkerPresenceChanged,
    WorkerRemoved,
    WorkerUpserted,
)
from router.core.model import ReservationStatus

__all__ = ["EventType", "FeedEvent", "decode_feed", "encode_feed", "to_feed"]


class EventType(IntEnum):
    """The feed's event types; the numbers are the API's `EventType` values."""

    TASK_CREATED = 1
    TASK_QUEUED = 2
    TASK_OFFERED = 3
    OFFER_REJECTED = 4
    OFFER_TIMED_OUT = 5
    OFFER_RESCINDED = 6
    OFFER_CANCELED = 7
    TASK_ASSIGNED = 8
    TASK_UPDATED = 9
    TASK_MOVED = 10
    TASK_WRAPPING = 11
    TASK_COMPLETED = 12
    TASK_CANCELED = 13
    WORKER_UPSERTED = 14
    WORKER_REMOVED = 15
    WORKER_ACTIVITY_CHANGED = 16
    QUEUE_CHANGED = 17
    POLICY_CHANGED = 18
    QUEUE_DELETED = 19
    POLICY_DELETED = 20
    TRANSFER_INITIATED = 120
    TRANSFER_COMPLETED = 121
    TRANSFER_FAILED = 122
    TRANSFER_CANCELED = 123
    PARTICIPANT_ADDED = 124
    PARTICIPANT_REMOVED = 125
    TASK_PAUSED = 126
    TASK_RESUMED = 127
    CONSULT_OFFERED = 128
    CONSULT_CLOSED = 129
    WORKER_CONNECTED = 100
    WORKER_PRESENCE_LOST = 101
    WORKER_DISCONNECTED = 102
    WORKER_PRESENCE_EXPIRED = 103
    WORKER_AWAY = 104
    WORKER_DRAINING = 105
    WORKER_UNDRAINED = 106
    TASK_REQUEUED = 107
    PRESENCE_SETTINGS_CHANGED = 108
    OUTCOME_RECORDED = 150
    AGENT_ACTION_RECORDED = 151
    TIMELINE_ENTRY_APPENDED = 152
    CUSTOMER_PROFILE_CHANGED = 153
    CUSTOMER_ERASED = 154
    TIMELINE_SETTINGS_CHANGED = 155


_PRESENCE_TYPE: Final = {
    "connected": EventType.WORKER_CONNECTED,
    "lost": EventType.WORKER_PRESENCE_LOST,
    "disconnected": EventType.WORKER_DISCONNECTED,
    "expired": EventType.WORKER_PRESENCE_EXPIRED,
    "away": EventType.WORKER_AWAY,
    "draining": EventType.WORKER_DRAINING,
    "undrained": EventType.WORKER_UNDRAINED,
}
"""The feed's type of each `PresenceChange` value."""


class FeedEvent(msgspec.Struct, array_like=True, frozen=True, omit_defaults=True):
    """One event as subscribers see it. Fields that do not apply to its type are empty."""

    type: int
    at_ms: int
    task_id: str = ""
    queue_id: str = ""
    channel: str = ""
    worker_id: str = ""
    reservation_id: str = ""
    priority: int = 0
    reason: str = ""
    """A cancellation's or rejection's reason, or what moved a task (step, exception, policy)."""
    origin: str = ""
    """Who canceled a task: caller, ttl, exception or after_hours."""
    activity: str = ""
    previous_activity: str = ""
    from_queue_id: str = ""
    wait_ms: int = 0
    """A task assigned: from its creation to the assignment."""
    step_index: int = 0
    policy_id: str = ""
    transfer_id: str = ""
    """A transfer's id (its events, and a consult offer that serves one)."""
    role: str = ""
    """A participant's or consult offer's role: primary, consult or monitor."""
    transfer_mode: str = ""
    """cold or warm."""
    to_worker_id: str = ""
    """The worker a transfer went (or was offered) to."""
    paused_ms: int = 0
    """A resumed task: how long its pause lasted."""
    customer_key: str = ""
    """The keyed hash (HMAC) of the task's or entry's customer id: never the id itself."""
    sealed: bytes = b""
    """Personal text sealed with the customer's data key (a note, a reason, an entry's summary
    and data, a profile): only the router, holding the key, can open it. Never published."""
    disposition: str = ""
    resolution: int = 0
    """An outcome's resolution: the API's `Resolution` value (0 unsaid, 1 resolved, 2 not)."""
    tags: tuple[str, ...] = ()
    kind: str = ""
    """An appended entry's kind (e.g. "order.placed"), or an agent action's action."""
    note_private: bool = False
    source: str = ""
    """The system that appended an entry."""
    sentiment: float = 0.0
    """A created task's customer sentiment."""
    identity_verified: bool = False
    entry_id: str = ""
    """The timeline entry an outcome, agent action or appended entry is (`tle-...`)."""
    occurred_ms: int = 0
    """When an appended entry happened (at or before `at_ms`, when it was appended)."""


_TRANSFER_TYPE: Final = {
    TransferStatus.INITIATED: EventType.TRANSFER_INITIATED,
    TransferStatus.COMPLETED: EventType.TRANSFER_COMPLETED,
    TransferStatus.FAILED: EventType.TRANSFER_FAILED,
    TransferStatus.CANCELED: EventType.TRANSFER_CANCELED,
}

_CLOSED_TYPE: Final = {
    ReservationStatus.REJECTED: EventType.OFFER_REJECTED,
    ReservationStatus.TIMED_OUT: EventType.OFFER_TIMED_OUT,
    ReservationStatus.RESCINDED: EventType.OFFER_RESCINDED,
    ReservationStatus.CANCELED: EventType.OFFER_CANCELED,
}


def to_feed(events: list[Event], at_ms: int) -> list[FeedEvent]:
    """The feed events of a batch's engine events (applied at `at_ms`), in order."""
    return [_public(event, at_ms) for event in events]


def _public(event: Event, at_ms: int) -> FeedEvent:
    match event:
        case TaskCreated(task, customer_keyed):
            if customer_keyed:
                return FeedEvent(
                    EventType.TASK_CREATED, at_ms, task.task_id, task.queue_id,
                    task.spec.channel, priority=task.spec.priority,
                    customer_key=task.spec.customer_id, sentiment=task.spec.sentiment,
                )  # fmt: skip
            return FeedEvent(
                EventType.TASK_CREATED, at_ms, task.task_id, task.queue_id, task.spec.channel,
                priority=task.spec.priority,  # as asked: its step has not raised it yet
            )  # fmt: skip
        case TaskQueued(task_id, queue_id, channel, priority):
            return FeedEvent(EventType.TASK_QUEUED, at_ms, task_id, queue_id, channel,
                             priority=priority)  # fmt: skip
        case OfferCreated(reservation, task):
            return FeedEvent(
                EventType.TASK_OFFERED, at_ms, task.task_id, task.queue_id, task.spec.channel,
                reservation.worker_id, reservation.reservation_id, task.priority,
            )  # fmt: skip
        case OfferClosed(reservation, task, reason):
            return FeedEvent(
                _CLOSED_TYPE[reservation.status], at_ms, task.task_id, task.queue_id,
                task.spec.channel, reservation.worker_id, reservation.reservation_id,
                task.priority, reason,
            )  # fmt: skip
        case TaskAssigned(reservation, task, wait_ms):
            return FeedEvent(
                EventType.TASK_ASSIGNED, at_ms, task.task_id, task.queue_id, task.spec.channel,
                reservation.worker_id, reservation.reservation_id, task.priority, wait_ms=wait_ms,
            )  # fmt: skip
        case TaskUpdated(task_id, queue_id, channel, priority):
            return FeedEvent(EventType.TASK_UPDATED, at_ms, task_id, queue_id, channel,
                             priority=priority)  # fmt: skip
        case TaskMoved(task_id, queue_id, channel, priority, from_queue_id, reason, step_index):
            return FeedEvent(
                EventType.TASK_MOVED, at_ms, task_id, queue_id, channel, priority=priority,
                reason=reason, from_queue_id=from_queue_id, step_index=step_index,
            )  # fmt: skip
        case TaskWrapping(task_id, queue_id, channel, worker_id):
            return FeedEvent(EventType.TASK_WRAPPING, at_ms, task_id, queue_id, channel,
                             worker_id)  # fmt: skip
        case TaskCompleted(task):
            return FeedEvent(
                EventType.TASK_COMPLETED, at_ms, task.task_id, task.queue_id, task.spec.channel,
                task.worker_id, task.reservation_id, task.priority,
            )  # fmt: skip
        case TaskCanceled(task, origin):
            return FeedEvent(
                EventType.TASK_CANCELED, at_ms, task.task_id, task.queue_id, task.spec.channel,
                priority=task.priority, reason=task.cancel_reason, origin=origin,
            )  # fmt: skip
        case WorkerUpserted(worker_id, activity, _):
            return FeedEvent(EventType.WORKER_UPSERTED, at_ms, worker_id=worker_id,
                             activity=activity)  # fmt: skip
        case WorkerRemoved(worker_id, activity):
            return FeedEvent(EventType.WORKER_REMOVED, at_ms, worker_id=worker_id,
                             activity=activity)  # fmt: skip
        case WorkerActivityChanged(worker_id, activity, previous_activity):
            return FeedEvent(
                EventType.WORKER_ACTIVITY_CHANGED, at_ms, worker_id=worker_id, activity=activity,
                previous_activity=previous_activity,
            )  # fmt: skip
        case QueueChanged(queue_id, deleted):
            kind = EventType.QUEUE_DELETED if deleted else EventType.QUEUE_CHANGED
            return FeedEvent(kind, at_ms, queue_id=queue_id)
        case PolicyChanged(policy_id, deleted):
            kind = EventType.POLICY_DELETED if deleted else EventType.POLICY_CHANGED
            return FeedEvent(kind, at_ms, policy_id=policy_id)
        case TransferChanged(transfer, task, _):
            return FeedEvent(
                _TRANSFER_TYPE[transfer.status], at_ms, task.task_id, task.queue_id,
                task.spec.channel, transfer.from_worker_id, priority=task.priority,
                reason=transfer.outcome or transfer.reason, from_queue_id=transfer.from_queue_id,
                transfer_id=transfer.transfer_id, transfer_mode=transfer.mode.value,
                to_worker_id=transfer.to_worker_id,
            )  # fmt: skip
        case ParticipantChanged(task_id, queue_id, channel, worker_id, role, added, _):
            kind = EventType.PARTICIPANT_ADDED if added else EventType.PARTICIPANT_REMOVED
            return FeedEvent(kind, at_ms, task_id, queue_id, channel, worker_id,
                             role=role.value)  # fmt: skip
        case TaskPaused(task, worker_id, reason):
            return FeedEvent(
                EventType.TASK_PAUSED, at_ms, task.task_id, task.queue_id, task.spec.channel,
                worker_id, priority=task.priority, reason=reason,
            )  # fmt: skip
        case TaskResumed(task, worker_id, paused_ms, origin):
            return FeedEvent(
                EventType.TASK_RESUMED, at_ms, task.task_id, task.queue_id, task.spec.channel,
                worker_id, priority=task.priority, origin=origin, paused_ms=paused_ms,
            )  # fmt: skip
        case ConsultOffered(reservation, task, role, transfer_id):
            return FeedEvent(
                EventType.CONSULT_OFFERED, at_ms, task.task_id, task.queue_id, task.spec.channel,
                reservation.worker_id, reservation.reservation_id, task.priority,
                role=role.value, transfer_id=transfer_id,
            )  # fmt: skip
        case ConsultClosed(reservation, task, role, transfer_id, reason):
            return FeedEvent(
                EventType.CONSULT_CLOSED, at_ms, task.task_id, task.queue_id, task.spec.channel,
                reservation.worker_id, reservation.reservation_id, task.priority,
                reason=reason or reservation.status.value, role=role.value,
                transfer_id=transfer_id,
            )  # fmt: skip
        case WorkerPresenceChanged(worker_id, change, activity, reason):
            return FeedEvent(_PRESENCE_TYPE[change], at_ms, worker_id=worker_id,
                             activity=activity, reason=reason)  # fmt: skip
        case TaskRequeued(task_id, queue_id, channel, worker_id):
            return FeedEvent(EventType.TASK_REQUEUED, at_ms, task_id, queue_id, channel,
                             worker_id)  # fmt: skip
        case PresenceSettingsChanged(channel):
            return FeedEvent(EventType.PRESENCE_SETTINGS_CHANGED, at_ms, channel=channel)
        case OutcomeRecorded():
            return FeedEvent(
                EventType.OUTCOME_RECORDED, at_ms, event.task_id, event.queue_id, event.channel,
                event.worker_id, customer_key=event.customer_key, sealed=event.sealed_note,
                disposition=event.disposition, resolution=event.resolution, tags=event.tags,
                note_private=event.note_private, entry_id=event.entry_id,
            )  # fmt: skip
        case AgentActionRecorded():
            return FeedEvent(
                EventType.AGENT_ACTION_RECORDED, at_ms, event.task_id, event.queue_id,
                event.channel, event.worker_id, customer_key=event.customer_key,
                sealed=event.sealed_reason, kind=event.action, entry_id=event.entry_id,
            )  # fmt: skip
        case TimelineEntryAppended():
            return FeedEvent(
                EventType.TIMELINE_ENTRY_APPENDED, at_ms, customer_key=event.customer_key,
                sealed=event.sealed_body, tags=event.tags, kind=event.kind, source=event.source,
                identity_verified=event.identity_verified, entry_id=event.entry_id,
                occurred_ms=event.occurred_ms,
            )  # fmt: skip
        case CustomerProfileChanged():
            return FeedEvent(
                EventType.CUSTOMER_PROFILE_CHANGED,
                at_ms,
                customer_key=event.customer_key,
                sealed=event.sealed_profile,
            )
        case CustomerErased(customer_key):
            return FeedEvent(EventType.CUSTOMER_ERASED, at_ms, customer_key=customer_key)
        case TimelineSettingsChanged():
            return FeedEvent(EventType.TIMELINE_SETTINGS_CHANGED, at_ms)
    raise AssertionError(f"no feed event for {event!r}")


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(list[FeedEvent])


def encode_feed(feed: list[FeedEvent]) -> bytes:
    return _encoder.encode(feed)


def decode_feed(data: bytes) -> list[FeedEvent]:
    return _decoder.decode(data)
