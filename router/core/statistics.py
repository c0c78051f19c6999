"""Per-queue counters, and what they let the engine estimate: a waiting task's expected wait,
and the live statistics of a queue."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from router.core.model import TaskRecord, TaskStatus
from router.core.results import QueueStats
from router.core.task_table import TaskCopy

if TYPE_CHECKING:
    from router.core.columns import WorkerColumns
    from router.core.routing import TaskRouting
    from router.core.timers import Clock
    from router.core.waiting import QueueMembership, WaitingIndex

SERVICE_RATE_SAMPLES = 64
"""Assignments (and completions) per queue remembered to estimate its service rate."""
_HELD = (TaskStatus.RESERVED, TaskStatus.ASSIGNED, TaskStatus.WRAPPING, TaskStatus.PAUSED)
"""The statuses counted per queue (a waiting task is counted by the waiting index)."""
_CLOSED = (TaskStatus.COMPLETED, TaskStatus.CANCELED)
"""Not `TaskStatus.is_open`, a property (a call) on every command's copy of its task."""


@dataclass(slots=True)
class QueueCounters:
    created_total: int = 0
    offered_total: int = 0
    assigned_total: int = 0
    completed_total: int = 0
    canceled_total: int = 0
    by_status: dict[TaskStatus, int] = field(default_factory=dict)
    assigned_ms: deque[int] = field(default_factory=lambda: deque(maxlen=SERVICE_RATE_SAMPLES))
    """When the latest assignments happened: the queue's recent service rate."""
    handle_ms: deque[int] = field(default_factory=lambda: deque(maxlen=SERVICE_RATE_SAMPLES))
    """How long the latest completed tasks held a worker (assignment to the end of wrap-up)."""


@dataclass(slots=True)
class SavedCounters:
    """One queue's counters as a snapshot keeps them."""

    queue_id: str
    created_total: int
    offered_total: int
    assigned_total: int
    completed_total: int
    canceled_total: int
    by_status: dict[TaskStatus, int]
    assigned_ms: list[int]
    handle_ms: list[int]


class OfferRate(NamedTuple):
    """A queue's pace of offers on one channel: one task every `ms / slots` milliseconds."""

    ms: float
    """The mean handle time (or, before any completion, the mean time between assignments)."""
    slots: int
    """The staffed slots working in parallel (1 with the assignment-interval fallback)."""


class Statistics:
    """Counters per queue, and the wait estimates and queue statistics read from them."""

    def __init__(self) -> None:
        self.counters: dict[str, QueueCounters] = {}
        self.staffing_version = 0
        """Bumped whenever who is available or who belongs to a queue may have changed."""
        self._staffing_cache: dict[tuple[str, int], tuple[int, int]] = {}

    def connect(
        self,
        *,
        clock: Clock,
        queues: dict[str, Any],
        membership: QueueMembership,
        columns: WorkerColumns,
        waiting: WaitingIndex,
        task_routing: dict[str, TaskRouting],
        open_tasks: dict[str, TaskRecord],
    ) -> None:
        """What the estimates read: the parts' state, never changed from here."""
        self._clock = clock
        self._queues = queues
        self._membership = membership
        self._columns = columns
        self._waiting = waiting
        self._task_routing = task_routing
        self._open = open_tasks

    # -- counting ---------------------------------------------------------------------------

    def status_moved(self, queue_id: str, old: TaskStatus, new: TaskStatus) -> None:
        by_status = self.counters[queue_id].by_status
        if old in _HELD:
            by_status[old] = by_status.get(old, 0) - 1
        if new in _HELD:
            by_status[new] = by_status.get(new, 0) + 1

    def staffing_changed(self) -> None:
        self.staffing_version += 1

    # -- estimates --------------------------------------------------------------------------

    def estimated_wait_ms(self, task_id: str) -> int | None:
        """Time until the task is offered: 0 once it has been, None for a closed task or when
        nothing is known yet. A waiting task at position k (k tasks ahead of it) is offered once
        k + 1 workers' slots have come free; with the queue's staffed slots s (the capacity on
        the task's channel of its members who are available) each busy for the mean handle
        time h (assignment to the end of wrap-up, over the latest completions), slots come free
        at s / h, so the estimate is (k + 1) x h / s: the M/M/c expectation once every agent is
        busy. Before any completion, it falls back on the observed rate of assignments."""
        task = self._open.get(task_id)
        return None if task is None else self.place(task)[1]

    def copy(
        self, task: TaskRecord, rates: dict[tuple[str, str], OfferRate | None] | None = None
    ) -> TaskCopy:
        """A copy of a task record with its place in its queue and its estimated wait now
        (`rates` shares the offer rates between the tasks of one listing)."""
        position, wait = self.place(task, rates)
        return TaskCopy(task.seq, task.snapshot(), b"", position, wait)

    def place(
        self, task: TaskRecord, rates: dict[tuple[str, str], OfferRate | None] | None = None
    ) -> tuple[int, int | None]:
        """The task's position in its queue (0 when not waiting) and its estimated wait now
        (see `estimated_wait_ms`; None for a closed task)."""
        if task.status in _CLOSED:
            return 0, None
        if task.task_id not in self._waiting:
            return 0, 0
        if rates is None:
            rate = self.offer_rate(task)
        else:
            key = (task.queue_id, task.spec.channel)
            if key not in rates:
                rates[key] = self.offer_rate(task)
            rate = rates[key]
        ahead = self._waiting.position(task.task_id)
        return ahead, wait_ms(ahead, rate)

    def offer_rate(self, task: TaskRecord) -> OfferRate | None:
        """How fast the task's queue gets tasks of its channel offered (see
        `estimated_wait_ms`), or None when nothing is known yet."""
        counters = self.counters[task.queue_id]
        slots = self._staffed_slots(task)
        if counters.handle_ms and slots:
            return OfferRate(sum(counters.handle_ms) / len(counters.handle_ms), slots)
        samples = counters.assigned_ms
        if len(samples) < 2 or samples[-1] <= samples[0]:
            return None
        return OfferRate((samples[-1] - samples[0]) / (len(samples) - 1), 1)

    def _staffed_slots(self, task: TaskRecord) -> int:
        """Capacity on the task's channel of the queue's available members (cached until who
        is available or who belongs changes)."""
        channel_col = self._task_routing[task.task_id].requirement.channel_col
        key = (task.queue_id, channel_col)
        cached = self._staffing_cache.get(key)
        if cached is not None and cached[0] == self.staffing_version:
            return cached[1]
        columns = self._columns
        rows = columns.row_count
        staffed = self._membership.members(task.queue_id)[:rows] & columns.available[:rows]
        slots = int(columns.capacity[:rows, channel_col][staffed].sum())
        if len(self._staffing_cache) > 4 * len(self._queues) + 64:
            self._staffing_cache.clear()
        self._staffing_cache[key] = (self.staffing_version, slots)
        return slots

    def queue_stats(self, queue_id: str) -> QueueStats:
        counters = self.counters[queue_id]
        waiting = self._waiting
        oldest = waiting.oldest_created_ms(queue_id)
        membership = self._membership
        return QueueStats(
            queue_id=queue_id,
            waiting=waiting.queue_depth(queue_id),
            longest_wait_ms=0 if oldest is None else self._clock.now_ms - oldest,
            reserved=counters.by_status.get(TaskStatus.RESERVED, 0),
            assigned=counters.by_status.get(TaskStatus.ASSIGNED, 0),
            wrapping=counters.by_status.get(TaskStatus.WRAPPING, 0),
            created_total=counters.created_total,
            offered_total=counters.offered_total,
            assigned_total=counters.assigned_total,
            completed_total=counters.completed_total,
            canceled_total=counters.canceled_total,
            eligible_workers=membership.count(membership.index_of(queue_id)),
        )

    # -- snapshot and digest ----------------------------------------------------------------

    def save(self) -> list[SavedCounters]:
        return [
            SavedCounters(
                queue_id,
                c.created_total,
                c.offered_total,
                c.assigned_total,
                c.completed_total,
                c.canceled_total,
                c.by_status,
                list(c.assigned_ms),
                list(c.handle_ms),
            )
            for queue_id, c in self.counters.items()
        ]

    def restore(self, saved: list[SavedCounters]) -> None:
        for c in saved:
            self.counters[c.queue_id] = QueueCounters(
                c.created_total, c.offered_total, c.assigned_total, c.completed_total,
                c.canceled_total, dict(c.by_status),
                deque(c.assigned_ms, maxlen=SERVICE_RATE_SAMPLES),
                deque(c.handle_ms, maxlen=SERVICE_RATE_SAMPLES),
            )  # fmt: skip

    def digest_state(self) -> list[list[Any]]:
        return [
            [
                q,
                c.created_total,
                c.offered_total,
                c.assigned_total,
                c.completed_total,
                c.canceled_total,
                list(c.assigned_ms),
                list(c.handle_ms),
            ]
            for q, c in self.counters.items()
        ]


def wait_ms(ahead: int, rate: OfferRate | None) -> int | None:
    """(k + 1) x h / s for a task with k tasks ahead of it (see `estimated_wait_ms`)."""
    return None if rate is None else round((ahead + 1) * rate.ms / rate.slots)
