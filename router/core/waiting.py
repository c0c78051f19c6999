"""Waiting tasks, grouped so that a worker becoming free does not scan every task.

Tasks of one queue with the same requirement (channel, required skills and minimum levels,
language) have the same eligible workers, exclusions aside, so they wait together in one group
ordered by the queue's order. A freed worker is checked against every group's requirement at once
(numpy arrays, one row per group), and takes the head of the best eligible group: the highest
priority, then the oldest (newest for LIFO queues)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, NamedTuple, TypeVar

import numpy as np
import numpy.typing as npt
from sortedcontainers import SortedList

from router.core.columns import ColumnIndex, WorkerColumns
from router.core.model import QueueOrder
from router.core.scoring import Requirement

OrderKey = tuple[float, int, int, str]
"""(-base priority, age key, sequence key, task id): ascending order is serving order."""

NO_PIN = -1
"""`pinned_row` of a task any eligible worker may take."""
PINNED_TO_NOBODY = -2
"""`pinned_row` of a task waiting for a known agent who is not a worker (any more)."""


def base_priority(priority: int, created_ms: int, aging_per_ms: float) -> float:
    """The task's effective priority at time 0: at `now_ms` it is this + aging_per_ms * now_ms,
    so tasks of one queue (one aging rate) keep their relative order as time passes."""
    return priority - aging_per_ms * created_ms if aging_per_ms else float(priority)


def order_key(
    *,
    priority: int,
    created_ms: int,
    seq: int,
    task_id: str,
    order: QueueOrder,
    aging_per_ms: float = 0.0,
) -> OrderKey:
    base = base_priority(priority, created_ms, aging_per_ms)
    if order is QueueOrder.LIFO:
        return (-base, -created_ms, -seq, task_id)
    return (-base, created_ms, seq, task_id)


class QueueMembership:
    """members[queue_index, worker_row]: the worker belongs to the queue's target set. Written
    only through the methods below, which keep each row's count of members (read every second
    by the statistics: summing rows of 200,000 workers per queue each time would not do)."""

    def __init__(self) -> None:
        self.queue_index = ColumnIndex()
        self.matrix = np.zeros((4, 256), dtype=bool)
        self._counts = np.zeros(4, dtype=np.int64)

    def index_of(self, queue_id: str) -> int:
        index = self.queue_index.get_or_add(queue_id)
        self._ensure(index + 1, self.matrix.shape[1])
        return index

    def ensure_rows(self, rows: int) -> None:
        self._ensure(self.matrix.shape[0], rows)

    def _ensure(self, queues: int, rows: int) -> None:
        q_now, r_now = self.matrix.shape
        if queues <= q_now and rows <= r_now:
            return
        new_q, new_r = max(q_now, 1), max(r_now, 1)
        while new_q < queues:
            new_q *= 2
        while new_r < rows:
            new_r *= 2
        grown = np.zeros((new_q, new_r), dtype=bool)
        grown[:q_now, :r_now] = self.matrix
        self.matrix = grown
        self._counts = np.resize(self._counts, new_q)
        self._counts[q_now:] = 0

    def members(self, queue_id: str) -> npt.NDArray[np.bool_]:
        """The membership row of a queue (a view)."""
        row: npt.NDArray[np.bool_] = self.matrix[self.index_of(queue_id)]
        return row

    def count(self, slot: int) -> int:
        """How many workers belong to row `slot`."""
        return int(self._counts[slot])

    def set_row(self, slot: int, members: npt.NDArray[np.bool_]) -> None:
        """Row `slot` becomes `members` (worker rows past its end do not belong)."""
        self.matrix[slot, :] = False
        self.matrix[slot, : members.size] = members
        self._counts[slot] = np.count_nonzero(members)

    def set_cell(self, slot: int, row: int, member: bool) -> None:
        self._counts[slot] += int(member) - int(self.matrix[slot, row])
        self.matrix[slot, row] = member

    def clear_column(self, row: int) -> None:
        """The worker at `row` belongs nowhere (it is removed)."""
        self._counts -= self.matrix[:, row]
        self.matrix[:, row] = False

    def check(self) -> None:
        """Raises AssertionError unless the counts agree with the matrix (for tests)."""
        assert (self._counts == self.matrix.sum(axis=1)).all(), "membership counts"


_Item = TypeVar("_Item", bound=tuple[object, ...])


class LazyMinHeap(Generic[_Item]):
    """A min-heap whose removals cost nothing: a removed item stays until it reaches the top,
    where `alive` tells it apart. Cheaper than a sorted list when only the minimum is read."""

    __slots__ = ("_alive", "_items", "live")

    def __init__(self, alive: Callable[[_Item], bool]) -> None:
        self._items: list[_Item] = []
        self._alive = alive
        self.live = 0
        """Items pushed and not yet removed."""

    def push(self, item: _Item) -> None:
        heapq.heappush(self._items, item)
        self.live += 1

    def push_all(self, items: list[_Item]) -> None:
        """Pushes many items at once: one heapify instead of one push each."""
        self._items.extend(items)
        heapq.heapify(self._items)
        self.live += len(items)

    def removed(self) -> None:
        """Counts one live item as gone (it is dropped when it surfaces, or by a rebuild)."""
        self.live -= 1
        if len(self._items) > 2 * self.live + 64:
            self._items = sorted({item for item in self._items if self._alive(item)})

    def peek(self) -> _Item | None:
        items = self._items
        while items and not self._alive(items[0]):
            heapq.heappop(items)
        return items[0] if items else None

    def ordered(self) -> Iterator[_Item]:
        """The live items, smallest first (for the rare walk past the top)."""
        return iter(sorted({item for item in self._items if self._alive(item)}))


class GroupTarget(NamedTuple):
    """Who may take a group's tasks, besides the requirement: the queue's members, the workers
    of the current step's expression, maybe one pinned worker; and how its heads compete. A
    named tuple: it is part of every group key, hashed on each enqueue."""

    queue_id: str
    queue_slot: int
    """Membership row of the queue."""
    expression_slot: int
    """Membership row of the step's worker expression (a row of everyone when it has none)."""
    pinned_row: int = NO_PIN
    aging_per_ms: float = 0.0
    batched: bool = False
    """Assigned in rounds (see `Engine._run_round`), never taken by a freed worker at once."""


class WaitingEntry(NamedTuple):
    """A task to wait: where (its group's target and requirement) and in what order."""

    task_id: str
    target: GroupTarget
    requirement: Requirement
    key: OrderKey
    created_ms: int
    seq: int


@dataclass(eq=False)
class TaskGroup:
    slot: int
    target: GroupTarget
    requirement: Requirement
    key: tuple[object, ...]
    entries: LazyMinHeap[OrderKey]
    head: OrderKey | None = None
    """The smallest live key, as last written to the head arrays."""


class WaitingIndex:
    """The waiting tasks of every queue."""

    def __init__(self) -> None:
        self._groups: list[TaskGroup] = []
        self._group_by_key: dict[tuple[object, ...], TaskGroup] = {}
        self._entry_of_task: dict[str, tuple[TaskGroup, OrderKey, tuple[int, int]]] = {}
        """Per waiting task: its group, its key and (created_ms, seq)."""
        self._queue_order: dict[str, SortedList] = {}
        """Per queue, every waiting task's order key: positions."""
        self._queue_age: dict[str, LazyMinHeap[tuple[int, int, str]]] = {}
        """Per queue, (created_ms, seq, task id) of the waiting tasks: the longest wait."""
        self._language_groups = 0
        """Groups that require a language (when none do, the scan skips languages)."""
        self._pinned_groups = 0
        self._aging_groups = 0
        self._batched_groups = 0
        self._required_width = 1
        capacity = 16
        self._channel = np.zeros(capacity, dtype=np.intp)
        self._queue_slot = np.zeros(capacity, dtype=np.intp)
        self._expression_slot = np.zeros(capacity, dtype=np.intp)
        self._pinned = np.full(capacity, NO_PIN, dtype=np.intp)
        self._batched = np.zeros(capacity, dtype=np.bool_)
        self._aging_per_ms = np.zeros(capacity, dtype=np.float64)
        self._language = np.zeros(capacity, dtype=np.intp)
        self._required_cols = np.zeros((capacity, 1), dtype=np.intp)
        self._required_min = np.full((capacity, 1), -np.inf, dtype=np.float32)
        self._head_base = np.zeros(capacity, dtype=np.float64)
        """Per group, its head's `base_priority`: its priority now is this + aging x now."""
        self._head_created = np.zeros(capacity, dtype=np.int64)
        """Per group, its head's creation time: older serves first among equal priorities."""
        self._head_seq = np.zeros(capacity, dtype=np.int64)
        """Per group, its head's creation sequence: the tie-break within one millisecond."""

    def __len__(self) -> int:
        return len(self._entry_of_task)

    def __contains__(self, task_id: str) -> bool:
        return task_id in self._entry_of_task

    def queue_depth(self, queue_id: str) -> int:
        entries = self._queue_order.get(queue_id)
        return len(entries) if entries is not None else 0

    def position(self, task_id: str) -> int:
        """0-based position of a waiting task among its queue's waiting tasks."""
        group, key, _ = self._entry_of_task[task_id]
        return int(self._queue_order[group.target.queue_id].bisect_left(key))

    def group_target(self, task_id: str) -> GroupTarget:
        return self._entry_of_task[task_id][0].target

    def oldest_created_ms(self, queue_id: str) -> int | None:
        ages = self._queue_age.get(queue_id)
        oldest = ages.peek() if ages is not None else None
        return None if oldest is None else oldest[0]

    def _is_waiting_key(self, key: OrderKey) -> bool:
        entry = self._entry_of_task.get(key[3])
        return entry is not None and entry[1] == key

    def _is_waiting_age(self, age: tuple[int, int, str]) -> bool:
        entry = self._entry_of_task.get(age[2])
        return entry is not None and entry[2] == (age[0], age[1])

    def task_ids(self, queue_id: str) -> list[str]:
        """The queue's waiting tasks in serving order."""
        return [key[3] for key in self._queue_order.get(queue_id, ())]

    def first_task_ids(self, queue_id: str, count: int) -> list[str]:
        """The first `count` of the queue's waiting tasks in serving order."""
        order = self._queue_order.get(queue_id)
        return [] if order is None else [key[3] for key in order.islice(0, count)]

    def last_task_id(self, queue_id: str) -> str | None:
        """The queue's last waiting task in serving order (None when none waits)."""
        order = self._queue_order.get(queue_id)
        return str(order[-1][3]) if order else None

    def depth_by_priority(self, queue_id: str) -> dict[int, int]:
        """Waiting tasks by priority, for a queue without aging (whose order keys start with
        the priority, negated): one bisection per priority present, not one step per task."""
        order = self._queue_order.get(queue_id)
        counts: dict[int, int] = {}
        at = 0
        while order is not None and at < len(order):
            negated = order[at][0]
            end = order.bisect_left((negated + 0.5,))
            counts[round(-negated)] = end - at
            at = end
        return counts

    def task_ids_pinned_to(self, row: int) -> list[str]:
        """Waiting tasks that only the worker at `row` may take."""
        if not self._pinned_groups:
            return []
        return [
            key[3]
            for group in self._groups
            if group.target.pinned_row == row
            for key in group.entries.ordered()
        ]

    def add(self, entry: WaitingEntry) -> None:
        task_id, target, requirement, key, created_ms, seq = entry
        queue_id = target.queue_id
        group_key = (target, *requirement.group_key)
        group = self._group_by_key.get(group_key)
        if group is None:
            group = self._new_group(group_key, target, requirement)
        self._entry_of_task[task_id] = (group, key, (created_ms, seq))
        group.entries.push(key)
        if group.head is None or key < group.head:  # only a smaller key changes the head
            self._set_head(group, key)
        order = self._queue_order.get(queue_id)
        if order is None:  # not setdefault: a SortedList costs ~10 us to build, even unused
            order = self._queue_order[queue_id] = SortedList()
        order.add(key)
        ages = self._queue_age.get(queue_id)
        if ages is None:
            ages = self._queue_age[queue_id] = LazyMinHeap(self._is_waiting_age)
        ages.push((created_ms, seq, task_id))

    def add_all(self, entries: Iterable[WaitingEntry]) -> None:
        """Adds many waiting tasks to an empty index at once (a snapshot restore): each group's
        heap, each queue's order and its ages are built in one sort instead of one insertion
        per task."""
        assert not self._entry_of_task, "add_all fills an empty index"
        keys_by_group: dict[int, tuple[TaskGroup, list[OrderKey]]] = {}
        orders: dict[str, list[OrderKey]] = {}
        ages: dict[str, list[tuple[int, int, str]]] = {}
        for entry in entries:
            target, requirement, key = entry.target, entry.requirement, entry.key
            group_key = (target, *requirement.group_key)
            group = self._group_by_key.get(group_key)
            if group is None:
                group = self._new_group(group_key, target, requirement)
            self._entry_of_task[entry.task_id] = (group, key, (entry.created_ms, entry.seq))
            keys_by_group.setdefault(id(group), (group, []))[1].append(key)
            orders.setdefault(target.queue_id, []).append(key)
            age = (entry.created_ms, entry.seq, entry.task_id)
            ages.setdefault(target.queue_id, []).append(age)
        for group, keys in keys_by_group.values():
            group.entries.push_all(keys)
            head = group.entries.peek()
            assert head is not None
            self._set_head(group, head)
        for queue_id, keys in orders.items():
            self._queue_order[queue_id] = SortedList(keys)
        for queue_id, queue_ages in ages.items():
            heap: LazyMinHeap[tuple[int, int, str]] = LazyMinHeap(self._is_waiting_age)
            heap.push_all(queue_ages)
            self._queue_age[queue_id] = heap

    def remove(self, task_id: str) -> None:
        group, key, _ = self._entry_of_task.pop(task_id)
        group.entries.removed()
        self._queue_order[group.target.queue_id].remove(key)
        self._queue_age[group.target.queue_id].removed()
        if not group.entries.live:
            self._drop_group(group)
        elif key == group.head:
            head = group.entries.peek()
            assert head is not None, "a group with live entries has a head"
            self._set_head(group, head)

    def best_task_for(
        self,
        row: int,
        columns: WorkerColumns,
        membership: QueueMembership,
        excludes: Callable[[str], bool],
        now_ms: int,
    ) -> str | None:
        """The waiting task a worker (free on at least one channel) should take next, or None:
        the highest priority now (aging included), then the oldest.

        `excludes(task_id)` tells whether this worker may not be offered that task."""
        n = len(self._groups)
        if n == 0:
            return None
        ok = columns.ready[row][self._channel[:n]]
        # count_nonzero: a third of `any()`'s cost on a small array (no ufunc reduction).
        if not np.count_nonzero(ok):  # free on no channel with waiting tasks: common when busy
            return None
        # The worker's membership column once, then gathers: a 2-D fancy index costs 3x more.
        member = membership.matrix[:, row]
        ok &= member[self._queue_slot[:n]]
        ok &= member[self._expression_slot[:n]]
        if self._batched_groups:
            ok &= ~self._batched[:n]
        if self._pinned_groups:
            pinned = self._pinned[:n]
            ok &= (pinned == NO_PIN) | (pinned == row)
        meets = columns.skills[row][self._required_cols[:n]] >= self._required_min[:n]
        for i in range(self._required_width):  # cheaper than meets.all(axis=1) at this size
            ok &= meets[:, i]
        if self._language_groups:
            # No language is column -1: a valid index (the last column), masked by `< 0`.
            language = self._language[:n]
            ok &= (language < 0) | columns.languages[row][language]
        candidates = ok.nonzero()[0]
        if candidates.size == 0:
            return None
        priorities = self._priorities_now(candidates, now_ms)
        best = int(priorities.argmax())
        if candidates.size > 1:
            tied = (priorities == priorities[best]).nonzero()[0]
            if tied.size > 1:  # same priority: the oldest, then the first created
                best = self._oldest(candidates, tied)
        head = self._groups[int(candidates[best])].head
        if head is not None and not excludes(head[3]):
            return head[3]
        return self._best_not_excluded(candidates, excludes, now_ms)

    def _oldest(self, candidates: npt.NDArray[np.intp], tied: npt.NDArray[np.intp]) -> int:
        """The tied candidate whose head was created first, then has the lowest sequence:
        two minimums, cheaper than a lexsort of the ties."""
        created = self._head_created[candidates[tied]]
        oldest = tied[created == created.min()]
        if oldest.size == 1:
            return int(oldest[0])
        return int(oldest[self._head_seq[candidates[oldest]].argmin()])

    def _priorities_now(
        self, candidates: npt.NDArray[np.intp], now_ms: int
    ) -> npt.NDArray[np.float64]:
        priorities: npt.NDArray[np.float64] = self._head_base[candidates]
        if self._aging_groups:
            priorities += self._aging_per_ms[candidates] * now_ms
        return priorities

    def _best_not_excluded(
        self, candidates: npt.NDArray[np.intp], excludes: Callable[[str], bool], now_ms: int
    ) -> str | None:
        """The best head excludes this worker (it rejected that task): take the best task
        that does not, across every candidate group (rare, so every group is visited: a LIFO
        group's head is its newest task, no bound on the rest)."""
        best: tuple[float, int, int, str] | None = None
        for slot in candidates.tolist():
            group = self._groups[slot]
            for key in group.entries.ordered():
                if not excludes(key[3]):
                    created_ms, seq = self._entry_of_task[key[3]][2]
                    priority_now = -key[0] + group.target.aging_per_ms * now_ms
                    found = (-priority_now, created_ms, seq, key[3])
                    best = found if best is None or found < best else best
                    break
        return None if best is None else best[3]

    # -- groups -------------------------------------------------------------------------------

    def _new_group(
        self, group_key: tuple[object, ...], target: GroupTarget, requirement: Requirement
    ) -> TaskGroup:
        slot = len(self._groups)
        self._ensure_capacity(slot + 1, len(requirement.required))
        group = TaskGroup(slot, target, requirement, group_key, LazyMinHeap(self._is_waiting_key))
        self._groups.append(group)
        self._count_group(group, 1)
        self._group_by_key[group_key] = group
        self._channel[slot] = requirement.channel_col
        self._queue_slot[slot] = target.queue_slot
        self._expression_slot[slot] = target.expression_slot
        self._pinned[slot] = target.pinned_row
        self._batched[slot] = target.batched
        self._aging_per_ms[slot] = target.aging_per_ms
        self._language[slot] = requirement.language_col
        self._required_cols[slot, :] = 0
        self._required_min[slot, :] = -np.inf
        for i, (col, level) in enumerate(requirement.required):
            self._required_cols[slot, i] = col
            self._required_min[slot, i] = level
        return group

    def _drop_group(self, group: TaskGroup) -> None:
        """Swap-removes an empty group so that the arrays stay dense."""
        last = self._groups.pop()
        del self._group_by_key[group.key]
        self._count_group(group, -1)
        if last is not group:
            slot = group.slot
            self._groups[slot] = last
            last.slot = slot
            for array in (
                self._channel,
                self._queue_slot,
                self._expression_slot,
                self._pinned,
                self._batched,
                self._aging_per_ms,
                self._language,
                self._head_base,
                self._head_created,
                self._head_seq,
            ):
                array[slot] = array[len(self._groups)]
            self._required_cols[slot] = self._required_cols[len(self._groups)]
            self._required_min[slot] = self._required_min[len(self._groups)]

    def _count_group(self, group: TaskGroup, step: int) -> None:
        """Counts the groups that need the optional parts of the scan."""
        self._language_groups += step * (group.requirement.language_col >= 0)
        self._pinned_groups += step * (group.target.pinned_row != NO_PIN)
        self._aging_groups += step * (group.target.aging_per_ms != 0)
        self._batched_groups += step * group.target.batched

    def _set_head(self, group: TaskGroup, head: OrderKey) -> None:
        """Heads compare across queues by priority, then true age: a LIFO queue serves its
        newest first, but its head does not outrank an older head of a FIFO queue."""
        group.head = head
        neg_base, _, _, task_id = head
        created_ms, seq = self._entry_of_task[task_id][2]
        self._head_base[group.slot] = -neg_base
        self._head_created[group.slot] = created_ms
        self._head_seq[group.slot] = seq

    def _ensure_capacity(self, groups: int, width: int) -> None:
        rows = self._channel.shape[0]
        if groups > rows:
            new_rows = rows * 2
            self._channel = np.resize(self._channel, new_rows)
            self._queue_slot = np.resize(self._queue_slot, new_rows)
            self._expression_slot = np.resize(self._expression_slot, new_rows)
            self._pinned = np.resize(self._pinned, new_rows)
            self._batched = np.resize(self._batched, new_rows)
            self._aging_per_ms = np.resize(self._aging_per_ms, new_rows)
            self._language = np.resize(self._language, new_rows)
            self._head_base = np.resize(self._head_base, new_rows)
            self._head_created = np.resize(self._head_created, new_rows)
            self._head_seq = np.resize(self._head_seq, new_rows)
            self._required_cols = np.vstack(
                [self._required_cols, np.zeros((new_rows - rows, self._required_width), np.intp)]
            )
            self._required_min = np.vstack(
                [
                    self._required_min,
                    np.full((new_rows - rows, self._required_width), -np.inf, np.float32),
                ]
            )
        if width > self._required_width:
            extra = width - self._required_width
            rows = self._channel.shape[0]
            self._required_cols = np.hstack([self._required_cols, np.zeros((rows, extra), np.intp)])
            self._required_min = np.hstack(
                [self._required_min, np.full((rows, extra), -np.inf, np.float32)]
            )
            self._required_width = width
