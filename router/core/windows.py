"""Windowed statistics: what happened per queue, per channel and per worker over the last minutes,
kept from the engine's own events so that they replay and snapshot with the state. They are
not part of the state digest: replaying an older journal fills them, and its digest must not
change (`tests/unit/test_windows.py` checks that replays and snapshots keep them equal).

Queues and channels keep one `Tally` per minute in which something happened (the minute of the
engine's clock, `ms // 60_000`), with the waits of answered and abandoned tasks at 1 s
resolution, so that a service level at any whole-second threshold is exact. Workers keep the
times their activity changed (exact to the millisecond) and, per minute, the tasks they
completed. Everything older than `WINDOW_MINUTES_MAX` is dropped as time moves on.

A window of W seconds ending at `now` starts at the beginning of the minute holding `now - W`
(`window_start_ms`): buckets are whole minutes, and the activity times are cut at the same
instant, so every figure of one reply covers the same span.

Definitions (README, "Statistics"): a task is *answered* when a worker accepts it (its wait:
creation to acceptance); *abandoned* when it is canceled before that (all cancellations are:
an assigned task completes), by who canceled it (caller, ttl, exception, after_hours); its
*handle time* runs from acceptance to the end of wrap-up. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from router.core.events import (
    Event,
    TaskAssigned,
    TaskCanceled,
    TaskCompleted,
    TaskCreated,
    WorkerActivityChanged,
    WorkerRemoved,
    WorkerUpserted,
)

__all__ = [
    "MINUTE_MS", "WINDOW_MINUTES_MAX", "ActivitySpan", "Split", "Tally", "WindowedWorker",
    "Windows", "WindowsShare", "WorkerMinute", "window_start_ms",
]  # fmt: skip

MINUTE_MS = 60_000
WINDOW_MINUTES_MAX = 24 * 60
"""The longest window: one day of one-minute buckets."""
B = TypeVar("B", "Tally", "WorkerMinute")
K = TypeVar("K", int, str)
_GONE = ""
"""The activity of a removed worker, from its removal on."""


@dataclass(slots=True)
class Tally:
    """One minute of a queue or a channel (or their sum over a window)."""

    created: int = 0
    answered: int = 0
    completed: int = 0
    abandoned: dict[str, int] = field(default_factory=dict)
    """By who canceled: caller, ttl, exception, after_hours."""
    wait_sum_ms: int = 0
    """Of the answered tasks."""
    wait_max_ms: int = 0
    handle_sum_ms: int = 0
    """Of the completed tasks."""
    answered_s: dict[int, int] = field(default_factory=dict)
    """Answered tasks by their wait in whole seconds (rounded down)."""
    abandoned_s: dict[int, int] = field(default_factory=dict)

    def add(self, other: Tally) -> None:
        self.created += other.created
        self.answered += other.answered
        self.completed += other.completed
        _merge(self.abandoned, other.abandoned)
        self.wait_sum_ms += other.wait_sum_ms
        self.wait_max_ms = max(self.wait_max_ms, other.wait_max_ms)
        self.handle_sum_ms += other.handle_sum_ms
        _merge(self.answered_s, other.answered_s)
        _merge(self.abandoned_s, other.abandoned_s)

    def split(self, threshold_s: int) -> Split:
        """The service level at a threshold (see `Split`)."""
        answered_within = sum(n for s, n in self.answered_s.items() if s < threshold_s)
        abandoned_within = sum(n for s, n in self.abandoned_s.items() if s < threshold_s)
        return Split(
            threshold_s, answered_within, self.answered - answered_within, abandoned_within,
            sum(self.abandoned.values()) - abandoned_within,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Split:
    """Answered and abandoned tasks on either side of a wait threshold. The service level is
    answered within / (answered + abandoned after): abandons within the threshold are not
    held against it (the customer gave up before the target passed); 0 when nothing counts."""

    threshold_s: int
    answered_within: int
    answered_after: int
    abandoned_within: int
    abandoned_after: int

    @property
    def service_level(self) -> float:
        counted = self.answered_within + self.answered_after + self.abandoned_after
        return self.answered_within / counted if counted else 0.0


@dataclass(slots=True)
class WorkerMinute:
    completed: int = 0
    handle_sum_ms: int = 0


@dataclass(frozen=True, slots=True)
class ActivitySpan:
    """From `start_ms` the worker was in `activity` (until the next span; "" once removed)."""

    start_ms: int
    activity: str


@dataclass(frozen=True, slots=True)
class WindowedWorker:
    worker_id: str
    activity_ms: dict[str, int]
    completed: int
    handle_sum_ms: int


@dataclass(slots=True)
class WindowsShare:
    """The windows' share of a snapshot."""

    queues: dict[str, dict[int, Tally]] = field(default_factory=dict)
    channels: dict[str, dict[int, Tally]] = field(default_factory=dict)
    workers: dict[str, dict[int, WorkerMinute]] = field(default_factory=dict)
    spans: dict[str, list[ActivitySpan]] = field(default_factory=dict)


def window_start_ms(now_ms: int, window_s: int) -> int:
    """Where a window of `window_s` ending at `now_ms` starts: the start of that minute."""
    return (now_ms - window_s * 1000) // MINUTE_MS * MINUTE_MS


class Windows:
    """The per-minute tallies and activity spans, fed with the engine's events in order."""

    def __init__(self) -> None:
        self.queues: dict[str, dict[int, Tally]] = {}
        self.channels: dict[str, dict[int, Tally]] = {}
        self.workers: dict[str, dict[int, WorkerMinute]] = {}
        self.spans: dict[str, list[ActivitySpan]] = {}

    def observe(self, events: Iterable[Event], now_ms: int) -> None:
        """Counts events the engine emitted at `now_ms` (times come from their records)."""
        for event in events:
            match event:
                case TaskCreated(task):
                    for tally in self._tallies(task.queue_id, task.spec.channel, task.created_ms):
                        tally.created += 1
                case TaskAssigned(_, task, wait_ms):
                    for tally in self._tallies(task.queue_id, task.spec.channel, task.assigned_ms):
                        tally.answered += 1
                        tally.wait_sum_ms += wait_ms
                        tally.wait_max_ms = max(tally.wait_max_ms, wait_ms)
                        _count(tally.answered_s, wait_ms // 1000)
                case TaskCanceled(task, origin):
                    wait_s = (task.updated_ms - task.created_ms) // 1000
                    for tally in self._tallies(task.queue_id, task.spec.channel, task.updated_ms):
                        _count(tally.abandoned, origin)
                        _count(tally.abandoned_s, wait_s)
                case TaskCompleted(task):
                    handle_ms = task.updated_ms - task.assigned_ms
                    for tally in self._tallies(task.queue_id, task.spec.channel, task.updated_ms):
                        tally.completed += 1
                        tally.handle_sum_ms += handle_ms
                    minutes = self.workers.setdefault(task.worker_id, {})
                    minute = _bucket(minutes, task.updated_ms // MINUTE_MS, WorkerMinute)
                    minute.completed += 1
                    minute.handle_sum_ms += handle_ms
                case WorkerUpserted(worker_id, activity, created) if created:
                    self._span(worker_id, activity, now_ms)
                case WorkerActivityChanged(worker_id, activity, _):
                    self._span(worker_id, activity, now_ms)
                case WorkerRemoved(worker_id, _):
                    self._span(worker_id, _GONE, now_ms)

    def _tallies(self, queue_id: str, channel: str, at_ms: int) -> tuple[Tally, Tally]:
        minute = at_ms // MINUTE_MS
        return (
            _bucket(self.queues.setdefault(queue_id, {}), minute, Tally),
            _bucket(self.channels.setdefault(channel, {}), minute, Tally),
        )

    def _span(self, worker_id: str, activity: str, now_ms: int) -> None:
        spans = self.spans.setdefault(worker_id, [])
        spans.append(ActivitySpan(now_ms, activity))
        _drop_ended(spans, now_ms)

    def prune(self, now_ms: int) -> None:
        """Drops what no window can reach any more (run now and then: O(what is dropped))."""
        first_minute = now_ms // MINUTE_MS - WINDOW_MINUTES_MAX
        for by_key in (self.queues, self.channels, self.workers):
            for key in list(by_key):
                minutes = by_key[key]
                for minute in [m for m in minutes if m < first_minute]:
                    del minutes[minute]
                if not minutes:
                    del by_key[key]
        for worker_id in [w for w, spans in self.spans.items() if _left_long_ago(spans, now_ms)]:
            del self.spans[worker_id]
        for spans in self.spans.values():
            _drop_ended(spans, now_ms)

    # -- reads ------------------------------------------------------------------------------

    def tally(self, minutes: dict[int, Tally] | None, start_ms: int) -> Tally:
        """The sum of the minutes from the one starting at `start_ms` on."""
        total = Tally()
        first = start_ms // MINUTE_MS
        for minute, tally in (minutes or {}).items():
            if minute >= first:
                total.add(tally)
        return total

    def worker(self, worker_id: str, start_ms: int, now_ms: int) -> WindowedWorker:
        activity_ms: dict[str, int] = {}
        spans = self.spans.get(worker_id, [])
        for span, following in zip(spans, [*spans[1:], None], strict=True):
            end_ms = now_ms if following is None else following.start_ms
            overlap_ms = min(end_ms, now_ms) - max(span.start_ms, start_ms)
            if overlap_ms > 0 and span.activity != _GONE:
                activity_ms[span.activity] = activity_ms.get(span.activity, 0) + overlap_ms
        completed = handle_sum_ms = 0
        first = start_ms // MINUTE_MS
        for minute, counts in self.workers.get(worker_id, {}).items():
            if minute >= first:
                completed += counts.completed
                handle_sum_ms += counts.handle_sum_ms
        return WindowedWorker(worker_id, activity_ms, completed, handle_sum_ms)

    # -- snapshot and digest ----------------------------------------------------------------

    def save(self) -> WindowsShare:
        return WindowsShare(self.queues, self.channels, self.workers, self.spans)

    def restore(self, share: WindowsShare) -> None:
        self.queues, self.channels = share.queues, share.channels
        self.workers, self.spans = share.workers, share.spans


def _bucket(minutes: dict[int, B], minute: int, make: type[B]) -> B:
    found = minutes.get(minute)
    if found is None:
        found = minutes[minute] = make()
    return found


def _count(counts: dict[K, int], key: K) -> None:
    counts[key] = counts.get(key, 0) + 1


def _merge(into: dict[K, int], counts: dict[K, int]) -> None:
    for key, count in counts.items():
        into[key] = into.get(key, 0) + count


def _drop_ended(spans: list[ActivitySpan], now_ms: int) -> None:
    """Drops the spans that ended before any window can start."""
    oldest_kept_ms = now_ms - WINDOW_MINUTES_MAX * MINUTE_MS - MINUTE_MS
    while len(spans) > 1 and spans[1].start_ms <= oldest_kept_ms:
        del spans[0]


def _left_long_ago(spans: list[ActivitySpan], now_ms: int) -> bool:
    last = spans[-1]
    return last.activity == _GONE and last.start_ms < now_ms - WINDOW_MINUTES_MAX * MINUTE_MS
