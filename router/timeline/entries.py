"""Timeline entries as the store keeps them, and how feed events fold into them. Pure: no I/O.

An entry is one `Entry` record, encoded with MessagePack and sealed whole with its customer's
data key before it reaches Redis. Personal text an event carries (an outcome's note, an agent
action's reason, an appended entry's summary and data) arrives already sealed by the API with
the same customer key; the record keeps those bytes as they are (`Entry.sealed`), so the
projector never opens personal text, and a reader opens the record, then the text it may show.

The feed is delivered at least once (a delivery whose write failed comes again): a task's
entry remembers the cursor of the last event folded into it (`Entry.through`) and the projector
skips any event at or before it; the other entries are named by their event, so writing one
again changes nothing. The folds also tolerate an event given twice in a row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from router.core.feed import EventType, FeedEvent
from router.privacy.sealing import SealedDataError, open_sealed

__all__ = [
    "CLOSING_TYPES",
    "ENTRY_KIND_AGENT_ACTION",
    "ENTRY_KIND_EXTERNAL",
    "ENTRY_KIND_OUTCOME",
    "ENTRY_KIND_TASK",
    "TASK_TYPES",
    "Entry",
    "Participation",
    "PauseRecord",
    "TaskPart",
    "TransferRecord",
    "action_entry",
    "decode_entry",
    "encode_entry",
    "external_entry",
    "fold_task",
    "new_task_entry",
    "open_entries",
    "outcome_entry",
    "task_entry_id",
]  # fmt: skip

ENTRY_KIND_TASK: Final = 1
ENTRY_KIND_OUTCOME: Final = 2
ENTRY_KIND_AGENT_ACTION: Final = 3
ENTRY_KIND_EXTERNAL: Final = 4
"""The API's `TimelineEntryKind` values."""

TASK_TYPES: Final = frozenset({
    EventType.TASK_CREATED, EventType.TASK_ASSIGNED, EventType.TASK_UPDATED,
    EventType.TASK_MOVED, EventType.TASK_WRAPPING, EventType.TASK_COMPLETED,
    EventType.TASK_CANCELED, EventType.TASK_REQUEUED, EventType.TASK_PAUSED,
    EventType.TASK_RESUMED, EventType.PARTICIPANT_ADDED, EventType.PARTICIPANT_REMOVED,
    EventType.TRANSFER_INITIATED, EventType.TRANSFER_COMPLETED, EventType.TRANSFER_FAILED,
    EventType.TRANSFER_CANCELED,
})  # fmt: skip
"""The events that change a task's entry."""
CLOSING_TYPES: Final = frozenset({EventType.TASK_COMPLETED, EventType.TASK_CANCELED})
_TRANSFER_STATUS: Final = {
    EventType.TRANSFER_INITIATED: "initiated",
    EventType.TRANSFER_COMPLETED: "completed",
    EventType.TRANSFER_FAILED: "failed",
    EventType.TRANSFER_CANCELED: "canceled",
}


class Participation(msgspec.Struct, array_like=True):
    worker_id: str
    role: str
    """primary, consult or monitor (`router.core.conversation_model.ParticipantRole`)."""
    joined_at_ms: int
    left_at_ms: int = 0


class TransferRecord(msgspec.Struct, array_like=True):
    transfer_id: str
    mode: str
    status: str
    from_worker_id: str = ""
    to_worker_id: str = ""
    to_queue_id: str = ""
    at_ms: int = 0
    reason: str = ""


class PauseRecord(msgspec.Struct, array_like=True):
    paused_at_ms: int
    resumed_at_ms: int = 0
    reason: str = ""


class TaskPart(msgspec.Struct, array_like=True):
    """A task entry's summary (the API's `TaskSummary`)."""

    queue_id: str
    last_queue_id: str
    status: str
    """`router.core.model.TaskStatus` values."""
    created_at_ms: int
    assigned_at_ms: int = 0
    wait_ms: int = 0
    ended_at_ms: int = 0
    cancel_reason: str = ""
    agent_ids: list[str] = msgspec.field(default_factory=list)
    participants: list[Participation] = msgspec.field(default_factory=list)
    transfers: list[TransferRecord] = msgspec.field(default_factory=list)
    pauses: list[PauseRecord] = msgspec.field(default_factory=list)
    disposition: str = ""
    resolution: int = 0
    sentiment: float = 0.0


class Entry(msgspec.Struct, array_like=True):
    """One timeline entry. Fields that do not apply to its kind are empty."""

    entry_id: str
    kind: int
    at_ms: int
    customer_key: str
    tags: list[str] = msgspec.field(default_factory=list)
    task_id: str = ""
    """A task's entry, or the task an outcome or action is about."""
    channel: str = ""
    """The task's channel (outcomes and actions follow their task's)."""
    worker_id: str = ""
    """Who recorded an outcome or did an action."""
    disposition: str = ""
    resolution: int = 0
    note_private: bool = False
    action: str = ""
    external_kind: str = ""
    source: str = ""
    identity_verified: bool = False
    sealed: bytes = b""
    """Personal text as the API sealed it: a note, a reason, or an entry's summary and data."""
    task: TaskPart | None = None
    through: tuple[int, int, int] = (0, 0, 0)
    """A task's entry: the cursor (ms, seq, index) of the last event folded into it. An event
    at or before it is a redelivery and is not folded again."""


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Entry)


def encode_entry(entry: Entry) -> bytes:
    return _encoder.encode(entry)


def decode_entry(data: bytes) -> Entry:
    return _decoder.decode(data)


def task_entry_id(task_id: str) -> str:
    return f"task:{task_id}"


def new_task_entry(event: FeedEvent) -> Entry:
    """The entry of a task a TASK_CREATED event with a customer key announces."""
    return Entry(
        task_entry_id(event.task_id), ENTRY_KIND_TASK, event.at_ms, event.customer_key,
        task_id=event.task_id, channel=event.channel,
        task=TaskPart(event.queue_id, event.queue_id, "pending", event.at_ms,
                      sentiment=event.sentiment),
    )  # fmt: skip


def fold_task(entry: Entry, event: FeedEvent) -> None:
    """Applies one of the task's events (`TASK_TYPES`) to its entry, in place."""
    task = entry.task
    if task is None:
        return
    at_ms = event.at_ms
    match event.type:
        case EventType.TASK_CREATED:
            pass  # its entry was made from it
        case EventType.TASK_ASSIGNED:
            task.status = "assigned"
            if not task.assigned_at_ms:
                task.assigned_at_ms, task.wait_ms = at_ms, event.wait_ms
            _add_agent(task, event.worker_id)
            _join(task, event.worker_id, "primary", at_ms)
        case EventType.TASK_UPDATED | EventType.TASK_MOVED:
            task.last_queue_id = event.queue_id or task.last_queue_id
        case EventType.TASK_WRAPPING:
            task.status = "wrapping"
        case EventType.TASK_COMPLETED | EventType.TASK_CANCELED:
            task.status = "completed" if event.type == EventType.TASK_COMPLETED else "canceled"
            task.ended_at_ms = task.ended_at_ms or at_ms
            if event.type == EventType.TASK_CANCELED:
                task.cancel_reason = event.reason
            for participation in task.participants:
                if not participation.left_at_ms:
                    participation.left_at_ms = at_ms
            for pause in task.pauses:
                if not pause.resumed_at_ms:
                    pause.resumed_at_ms = at_ms
        case EventType.TASK_REQUEUED:
            task.status = "pending"
            _leave(task, event.worker_id, at_ms)
        case EventType.TASK_PAUSED:
            task.status = "paused"
            if not any(p.paused_at_ms == at_ms for p in task.pauses):
                task.pauses.append(PauseRecord(at_ms, reason=event.reason))
            for participation in task.participants:  # a pause releases everyone
                if not participation.left_at_ms:
                    participation.left_at_ms = at_ms
        case EventType.TASK_RESUMED:
            task.status = "pending"
            for pause in task.pauses:
                if not pause.resumed_at_ms:
                    pause.resumed_at_ms = at_ms
        case EventType.PARTICIPANT_ADDED:
            if event.role == "primary":
                _add_agent(task, event.worker_id)
            _join(task, event.worker_id, event.role, at_ms)
        case EventType.PARTICIPANT_REMOVED:
            _leave(task, event.worker_id, at_ms, role=event.role)
        case _ if event.type in _TRANSFER_STATUS:
            _fold_transfer(task, event)


def _add_agent(task: TaskPart, worker_id: str) -> None:
    if worker_id and (not task.agent_ids or task.agent_ids[-1] != worker_id):
        task.agent_ids.append(worker_id)


def _join(task: TaskPart, worker_id: str, role: str, at_ms: int) -> None:
    for participation in task.participants:
        if participation.worker_id == worker_id and not participation.left_at_ms:
            participation.role = role or participation.role  # e.g. a consult became primary
            return
        if participation.worker_id == worker_id and participation.joined_at_ms == at_ms:
            return  # delivered again
    task.participants.append(Participation(worker_id, role or "primary", at_ms))


def _leave(task: TaskPart, worker_id: str, at_ms: int, *, role: str = "") -> None:
    for participation in task.participants:
        if (
            participation.worker_id == worker_id
            and not participation.left_at_ms
            and (not role or participation.role == role)
        ):
            participation.left_at_ms = at_ms


def _fold_transfer(task: TaskPart, event: FeedEvent) -> None:
    status = _TRANSFER_STATUS[EventType(event.type)]
    for transfer in task.transfers:
        if transfer.transfer_id == event.transfer_id:
            transfer.status = status
            transfer.to_worker_id = event.to_worker_id or transfer.to_worker_id
            if status != "initiated":
                transfer.reason = event.reason or transfer.reason
            return
    to_queue_id = event.queue_id if event.queue_id != event.from_queue_id else ""
    task.transfers.append(
        TransferRecord(
            event.transfer_id, event.transfer_mode, status, event.worker_id, event.to_worker_id,
            to_queue_id, event.at_ms, event.reason,
        )
    )  # fmt: skip


def outcome_entry(event: FeedEvent, entry_id: str, channel: str) -> Entry:
    return Entry(
        entry_id, ENTRY_KIND_OUTCOME, event.at_ms, event.customer_key, list(event.tags),
        task_id=event.task_id, channel=channel, worker_id=event.worker_id,
        disposition=event.disposition, resolution=event.resolution,
        note_private=event.note_private, sealed=event.sealed,
    )  # fmt: skip


def action_entry(event: FeedEvent, entry_id: str, channel: str) -> Entry:
    return Entry(
        entry_id, ENTRY_KIND_AGENT_ACTION, event.at_ms, event.customer_key, list(event.tags),
        task_id=event.task_id, channel=channel, worker_id=event.worker_id, action=event.kind,
        sealed=event.sealed,
    )  # fmt: skip


def external_entry(event: FeedEvent, entry_id: str) -> Entry:
    return Entry(
        entry_id, ENTRY_KIND_EXTERNAL, event.occurred_ms or event.at_ms, event.customer_key,
        list(event.tags),
        external_kind=event.kind, source=event.source,
        identity_verified=event.identity_verified, sealed=event.sealed,
    )  # fmt: skip


def open_entries(dek: bytes, customer: str, blobs: Sequence[bytes | None]) -> list[Entry | None]:
    """Opens sealed entries with their customer's data key (None for one missing or that does
    not open): a plain function, for a thread."""
    opened: list[Entry | None] = []
    for blob in blobs:
        try:
            opened.append(None if blob is None else decode_entry(open_sealed(dek, customer, blob)))
        except (SealedDataError, msgspec.DecodeError):
            opened.append(None)
    return opened
