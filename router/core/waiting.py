"""Waiting tasks, grouped so that a worker becoming free does not scan every task.

Tasks of one queue with the same requirement (channel, required skills and minimum levels,
language) have the same eligible workers, exclusions aside, so they wait together in one group
ordered by the queue's order. A freed worker is checked against every group's requirement at once
(numpy arrays, one row per group), and takes the head of the best eligible group: the highest
priority, then the oldest (newest for LIFO queues)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from sortedcontainers import SortedList

from router.core.columns import ColumnIndex, WorkerColumns
from router.core.model import QueueOrder
from router.core.scoring import Requirement

OrderKey = tuple[int, int, int, str]
"""(-priority, age key, sequence key, task id): ascending order is serving order."""


def order_key(
    *, priority: int, created_ms: int, seq: int, task_id: str, order: QueueOrder
) -> OrderKey:
    if order is QueueOrder.LIFO:
        return (-priority, -created_ms, -seq, task_id)
    return (-priority, created_ms, seq, task_id)


class QueueMembership:
    """members[queue_index, worker_row]: the worker belongs to the queue's target set."""

    def __init__(self) -> None:
        self.queue_index = ColumnIndex()
        self.matrix = np.zeros((4, 256), dtype=bool)

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

    def members(self, queue_id: str) -> npt.NDArray[np.bool_]:
        """The membership row of a queue (a view)."""
        row: npt.NDArray[np.bool_] = self.matrix[self.index_of(queue_id)]
        return row


@dataclass(eq=False)
class TaskGroup:
    slot: int
    queue_id: str
    queue_slot: int
    requirement: Requirement
    key: tuple[object, ...]
    entries: SortedList = field(default_factory=SortedList)


class WaitingIndex:
    """The waiting tasks of every queue."""

    def __init__(self) -> None:
        self._groups: list[TaskGroup] = []
        self._group_by_key: dict[tuple[object, ...], TaskGroup] = {}
        self._entry_of_task: dict[str, tuple[TaskGroup, OrderKey, tuple[int, int]]] = {}
        self._queue_order: dict[str, SortedList] = {}
        """Per queue, every waiting task's order key: positions."""
        self._queue_age: dict[str, SortedList] = {}
        """Per queue, (created_ms, seq) of every waiting task: the longest wait."""
        self._required_width = 1
        capacity = 16
        self._channel = np.zeros(capacity, dtype=np.intp)
        self._queue_slot = np.zeros(capacity, dtype=np.intp)
        self._language = np.zeros(capacity, dtype=np.intp)
        self._required_cols = np.zeros((capacity, 1), dtype=np.intp)
        self._required_min = np.full((capacity, 1), -np.inf, dtype=np.float32)
        self._head = np.zeros((capacity, 3), dtype=np.float64)

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
        return int(self._queue_order[group.queue_id].bisect_left(key))

    def oldest_created_ms(self, queue_id: str) -> int | None:
        ages = self._queue_age.get(queue_id)
        if not ages:
            return None
        return int(ages[0][0])

    def task_ids(self, queue_id: str) -> list[str]:
        """The queue's waiting tasks in serving order."""
        return [key[3] for key in self._queue_order.get(queue_id, ())]

    def add(
        self,
        *,
        task_id: str,
        queue_id: str,
        queue_slot: int,
        requirement: Requirement,
        key: OrderKey,
        created_ms: int,
        seq: int,
    ) -> None:
        group_key = (queue_id, *requirement.group_key)
        group = self._group_by_key.get(group_key)
        if group is None:
            group = self._new_group(group_key, queue_id, queue_slot, requirement)
        group.entries.add(key)
        age = (created_ms, seq)
        self._entry_of_task[task_id] = (group, key, age)
        self._queue_order.setdefault(queue_id, SortedList()).add(key)
        self._queue_age.setdefault(queue_id, SortedList()).add(age)
        self._refresh_head(group)

    def remove(self, task_id: str) -> None:
        group, key, age = self._entry_of_task.pop(task_id)
        group.entries.remove(key)
        self._queue_order[group.queue_id].remove(key)
        self._queue_age[group.queue_id].remove(age)
        if group.entries:
            self._refresh_head(group)
        else:
            self._drop_group(group)

    def best_task_for(
        self,
        row: int,
        columns: WorkerColumns,
        membership: QueueMembership,
        excludes: Callable[[str], bool],
    ) -> str | None:
        """The waiting task a worker (free on at least one channel) should take next, or None.

        `excludes(task_id)` tells whether this worker may not be offered that task."""
        n = len(self._groups)
        if n == 0:
            return None
        ok = columns.ready[row][self._channel[:n]]
        if not ok.any():  # free on no channel that has waiting tasks: the common case when busy
            return None
        ok &= membership.matrix[self._queue_slot[:n], row]
        skill_row = columns.skills[row]
        ok &= np.all(skill_row[self._required_cols[:n]] >= self._required_min[:n], axis=1)
        languages = columns.languages[row]
        any_language = self._language[:n] < 0
        ok &= any_language | languages[np.where(any_language, 0, self._language[:n])]
        candidates = np.flatnonzero(ok)
        if candidates.size == 0:
            return None
        heads = self._head[candidates]
        for i in np.lexsort((heads[:, 2], heads[:, 1], heads[:, 0])):
            group = self._groups[int(candidates[i])]
            for key in group.entries:
                task_id: str = key[3]
                if not excludes(task_id):
                    return task_id
        return None

    # -- groups -------------------------------------------------------------------------------

    def _new_group(
        self,
        group_key: tuple[object, ...],
        queue_id: str,
        queue_slot: int,
        requirement: Requirement,
    ) -> TaskGroup:
        slot = len(self._groups)
        self._ensure_capacity(slot + 1, len(requirement.required))
        group = TaskGroup(slot, queue_id, queue_slot, requirement, group_key)
        self._groups.append(group)
        self._group_by_key[group_key] = group
        self._channel[slot] = requirement.channel_col
        self._queue_slot[slot] = queue_slot
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
        if last is not group:
            slot = group.slot
            self._groups[slot] = last
            last.slot = slot
            for array in (self._channel, self._queue_slot, self._language, self._head):
                array[slot] = array[len(self._groups)]
            self._required_cols[slot] = self._required_cols[len(self._groups)]
            self._required_min[slot] = self._required_min[len(self._groups)]

    def _refresh_head(self, group: TaskGroup) -> None:
        """Heads compare across queues by priority, then true age: a LIFO queue serves its
        newest first, but its head does not outrank an older head of a FIFO queue."""
        neg_priority, _, _, task_id = group.entries[0]
        created_ms, seq = self._entry_of_task[task_id][2]
        self._head[group.slot] = (neg_priority, created_ms, seq)

    def _ensure_capacity(self, groups: int, width: int) -> None:
        rows = self._channel.shape[0]
        if groups > rows:
            new_rows = rows * 2
            self._channel = np.resize(self._channel, new_rows)
            self._queue_slot = np.resize(self._queue_slot, new_rows)
            self._language = np.resize(self._language, new_rows)
            self._head = np.resize(self._head, (new_rows, 3))
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
