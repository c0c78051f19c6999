"""What a reader of the timeline sees: the role's view of an entry, the request's filters and
text search over the visible text, and the API's `TimelineEntry`. Pure (no I/O): runs in a
thread when a page opens many entries.

Views: an agent sees no agent actions and no other agent's private notes (the note empty,
`note_hidden` true); a front end sees no agent actions and no private notes; a supervisor or
admin sees everything."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import timeline_service_pb2 as tlpb
from router.privacy.sealing import SealedDataError, open_sealed
from router.timeline.entries import (
    ENTRY_KIND_AGENT_ACTION,
    ENTRY_KIND_EXTERNAL,
    ENTRY_KIND_OUTCOME,
    ENTRY_KIND_TASK,
    Entry,
    TaskPart,
)

__all__ = ["TimelineQuery", "Visible", "render", "visible_of"]

_TASK_STATUS: Final = {
    "pending": pb.TASK_STATUS_PENDING, "reserved": pb.TASK_STATUS_RESERVED,
    "assigned": pb.TASK_STATUS_ASSIGNED, "wrapping": pb.TASK_STATUS_WRAPPING,
    "completed": pb.TASK_STATUS_COMPLETED, "canceled": pb.TASK_STATUS_CANCELED,
    "paused": pb.TASK_STATUS_PAUSED,
}  # fmt: skip
_ROLE: Final = {
    "primary": pb.PARTICIPANT_ROLE_PRIMARY, "consult": pb.PARTICIPANT_ROLE_CONSULT,
    "monitor": pb.PARTICIPANT_ROLE_MONITOR,
}  # fmt: skip
_MODE: Final = {"cold": pb.TRANSFER_MODE_COLD, "warm": pb.TRANSFER_MODE_WARM}
_TRANSFER_STATUS: Final = {
    "initiated": pb.TRANSFER_STATUS_INITIATED, "completed": pb.TRANSFER_STATUS_COMPLETED,
    "failed": pb.TRANSFER_STATUS_FAILED, "canceled": pb.TRANSFER_STATUS_CANCELED,
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class TimelineQuery:
    """A GetTimeline request's filters and the caller's view, checked."""

    view: int
    """The API's `TimelineView`."""
    viewer_worker_id: str = ""
    kinds: frozenset[int] = frozenset()
    channels: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    worker_id: str = ""
    text: str = ""
    """Lower-cased."""


@dataclass(frozen=True, slots=True)
class Visible:
    """An entry's personal text, opened, as this view may show it."""

    text: str = ""
    """A note, a reason or a summary ("" when hidden)."""
    data: dict[str, Any] | None = None
    hidden: bool = False


def visible_of(entry: Entry, dek: bytes, query: TimelineQuery) -> Visible | None:
    """The entry's personal text as the query's view shows it, or None when the view does not
    show the entry at all (an agent action to an agent or a front end)."""
    if entry.kind == ENTRY_KIND_AGENT_ACTION and query.view != tlpb.TIMELINE_VIEW_FULL:
        return None
    if entry.kind == ENTRY_KIND_OUTCOME and entry.note_private:
        shown = query.view == tlpb.TIMELINE_VIEW_FULL or (
            query.view == tlpb.TIMELINE_VIEW_AGENT and entry.worker_id == query.viewer_worker_id
        )
        if not shown:
            return Visible(hidden=True)
    if not entry.sealed:
        return Visible()
    try:
        plaintext = open_sealed(dek, entry.customer_key, entry.sealed)
    except SealedDataError:
        return Visible(hidden=True)
    if entry.kind == ENTRY_KIND_EXTERNAL:
        summary, data = external_body(plaintext)
        return Visible(summary, data)
    return Visible(plaintext.decode("utf-8", "replace"))


def external_body(plaintext: bytes) -> tuple[str, dict[str, Any] | None]:
    """An appended entry's summary and data as the API sealed them: JSON
    `{"summary": ..., "data": {...}}`."""
    try:
        body = json.loads(plaintext)
    except ValueError:
        return plaintext.decode("utf-8", "replace"), None
    if not isinstance(body, dict):
        return "", None
    data = body.get("data")
    return str(body.get("summary", "")), data if isinstance(data, dict) else None


def passes(entry: Entry, visible: Visible, query: TimelineQuery) -> bool:
    """Whether the entry matches every non-empty filter of the query."""
    if query.kinds and entry.kind not in query.kinds:
        return False
    if query.channels and entry.channel not in query.channels:
        return False
    if query.tags and query.tags.isdisjoint(entry.tags):
        return False
    if query.worker_id and query.worker_id not in _workers_of(entry):
        return False
    return not query.text or query.text in _searchable(entry, visible)


def _workers_of(entry: Entry) -> set[str]:
    task = entry.task
    if task is None:
        return {entry.worker_id} if entry.worker_id else set()
    # Held or joined: a transfer's target only offered the task took no part in it.
    return set(task.agent_ids) | {p.worker_id for p in task.participants}


def _searchable(entry: Entry, visible: Visible) -> str:
    parts = [visible.text, entry.disposition, entry.action, entry.external_kind, entry.source]
    task = entry.task
    if task is not None:
        parts += [task.disposition, task.cancel_reason]
        parts += [t.reason for t in task.transfers] + [p.reason for p in task.pauses]
    return "\n".join(parts).lower()


def render(
    entries: Sequence[Entry | None], dek: bytes, query: TimelineQuery
) -> list[tlpb.TimelineEntry | None]:
    """The API's entry for each that the view shows and the filters pass (None otherwise)."""
    rendered: list[tlpb.TimelineEntry | None] = []
    for entry in entries:
        visible = None if entry is None else visible_of(entry, dek, query)
        if entry is None or visible is None or not passes(entry, visible, query):
            rendered.append(None)
        else:
            rendered.append(to_pb(entry, visible))
    return rendered


def to_pb(entry: Entry, visible: Visible) -> tlpb.TimelineEntry:
    message = tlpb.TimelineEntry(
        entry_id=entry.entry_id,
        kind=entry.kind,  # type: ignore[arg-type]
        at_ms=entry.at_ms,
        tags=entry.tags,
    )
    if entry.kind == ENTRY_KIND_TASK and entry.task is not None:
        _task_pb(message.task, entry, entry.task)
    elif entry.kind == ENTRY_KIND_OUTCOME:
        outcome = message.outcome
        outcome.task_id, outcome.worker_id = entry.task_id, entry.worker_id
        outcome.disposition, outcome.resolution = entry.disposition, entry.resolution  # type: ignore[assignment]
        outcome.note, outcome.note_private = visible.text, entry.note_private
        outcome.note_hidden = visible.hidden
    elif entry.kind == ENTRY_KIND_AGENT_ACTION:
        action = message.agent_action
        action.task_id, action.worker_id = entry.task_id, entry.worker_id
        action.action, action.reason = entry.action, visible.text
    elif entry.kind == ENTRY_KIND_EXTERNAL:
        external = message.external
        external.kind, external.source = entry.external_kind, entry.source
        external.summary, external.identity_verified = visible.text, entry.identity_verified
        if visible.data:
            external.data.update(visible.data)
    return message


def _task_pb(summary: tlpb.TaskSummary, entry: Entry, task: TaskPart) -> None:
    summary.task_id, summary.channel = entry.task_id, entry.channel
    summary.queue_id, summary.last_queue_id = task.queue_id, task.last_queue_id
    summary.status = _TASK_STATUS.get(task.status, pb.TASK_STATUS_UNSPECIFIED)
    summary.created_at_ms, summary.assigned_at_ms = task.created_at_ms, task.assigned_at_ms
    summary.wait_ms, summary.ended_at_ms = task.wait_ms, task.ended_at_ms
    summary.cancel_reason = task.cancel_reason
    summary.agent_ids.extend(task.agent_ids)
    for p in task.participants:
        summary.participants.add(
            worker_id=p.worker_id, role=_ROLE.get(p.role, pb.PARTICIPANT_ROLE_UNSPECIFIED),
            joined_at_ms=p.joined_at_ms, left_at_ms=p.left_at_ms,
        )  # fmt: skip
    for t in task.transfers:
        summary.transfers.add(
            transfer_id=t.transfer_id, mode=_MODE.get(t.mode, pb.TRANSFER_MODE_UNSPECIFIED),
            status=_TRANSFER_STATUS.get(t.status, pb.TRANSFER_STATUS_UNSPECIFIED),
            from_worker_id=t.from_worker_id, to_worker_id=t.to_worker_id,
            to_queue_id=t.to_queue_id, at_ms=t.at_ms, reason=t.reason,
        )  # fmt: skip
    for pause in task.pauses:
        summary.pauses.add(
            paused_at_ms=pause.paused_at_ms, resumed_at_ms=pause.resumed_at_ms, reason=pause.reason
        )
    summary.disposition, summary.resolution = task.disposition, task.resolution  # type: ignore[assignment]
    summary.sentiment = task.sentiment
