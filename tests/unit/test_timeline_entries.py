"""A task's timeline entry folded from its feed events: participants, transfers, pauses, the
end; and an event given twice in a row folded once (the projector also skips any event at or
before the last one an entry folded: tests/timeline)."""

from __future__ import annotations

import copy

from router.core.feed import EventType, FeedEvent
from router.timeline.entries import decode_entry, encode_entry, fold_task, new_task_entry

T0 = 1_000_000


def _event(
    kind: EventType, dt_ms: int, worker: str = "", queue_id: str = "support", **fields: object
) -> FeedEvent:
    return FeedEvent(kind, T0 + dt_ms, "t1", queue_id, "voice", worker, **fields)  # type: ignore[arg-type]


EVENTS = [
    _event(EventType.TASK_ASSIGNED, 100, "ann", wait_ms=100),
    _event(EventType.TRANSFER_INITIATED, 200, "ann", transfer_id="x1", transfer_mode="warm",
           to_worker_id="bob", from_queue_id="support"),
    _event(EventType.PARTICIPANT_ADDED, 300, "bob", role="consult"),
    _event(EventType.PARTICIPANT_ADDED, 400, "bob", role="primary"),
    _event(EventType.PARTICIPANT_REMOVED, 400, "ann", role="primary"),
    _event(EventType.TRANSFER_COMPLETED, 400, "ann", transfer_id="x1", transfer_mode="warm",
           to_worker_id="bob", reason="accepted", from_queue_id="support"),
    _event(EventType.TASK_PAUSED, 500, "bob", reason="customer away"),
    _event(EventType.TASK_RESUMED, 900, "bob", paused_ms=400),
    _event(EventType.TASK_MOVED, 950, queue_id="vip"),
    _event(EventType.TASK_ASSIGNED, 1000, "bob", wait_ms=1000),
    _event(EventType.TASK_CANCELED, 2000, reason="hung up"),
]  # fmt: skip


def _folded(events: list[FeedEvent]) -> object:
    entry = new_task_entry(
        FeedEvent(EventType.TASK_CREATED, T0, "t1", "support", "voice", customer_key="ck_1")
    )
    for event in events:
        fold_task(entry, event)
    return entry


def test_a_task_s_entry_follows_its_conversation() -> None:
    entry = _folded(EVENTS)
    task = entry.task  # type: ignore[attr-defined]
    assert task.agent_ids == ["ann", "bob"]
    assert [(p.worker_id, p.role, p.joined_at_ms - T0, p.left_at_ms - T0)
            for p in task.participants] == [
        ("ann", "primary", 100, 400), ("bob", "primary", 300, 500), ("bob", "primary", 1000, 2000)
    ]  # fmt: skip
    [transfer] = task.transfers
    assert (transfer.status, transfer.to_worker_id, transfer.reason) == (
        "completed",
        "bob",
        "accepted",
    )
    assert [(p.paused_at_ms - T0, p.resumed_at_ms - T0) for p in task.pauses] == [(500, 900)]
    assert (task.status, task.ended_at_ms - T0, task.cancel_reason) == ("canceled", 2000, "hung up")
    assert (task.queue_id, task.last_queue_id, task.wait_ms) == ("support", "vip", 100)
    assert decode_entry(encode_entry(entry)) == entry  # type: ignore[arg-type]


def test_an_event_given_twice_in_a_row_folds_once() -> None:
    once = _folded(EVENTS)
    twice = _folded([e for event in EVENTS for e in (event, copy.copy(event))])
    assert twice == once
