"""Indexes over every known task (the open ones and the closed ones kept), so that listing tasks
never scans them all: the tasks in creation order, and per status, per current queue, per worker
and per channel, each a sorted list of creation sequence numbers. A listing walks the shortest
list its filters allow and resumes after a sequence number in O(log n). Open tasks are also
indexed by routing policy, so that changing a policy touches only the tasks it routes.

Entries are creation sequence numbers: ints add, remove and bisect in a `SortedList` in one or
two microseconds. The keys each task is filed under are kept with it, so that a change moves the
task only in the lists whose key changed, and a closed task (kept as bytes) is filtered and
forgotten without being decoded."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final, TypeVar

from sortedcontainers import SortedList

from router.core.model import TaskRecord, TaskStatus

_Key = TypeVar("_Key")

TaskKeys = tuple[str, int, str, str, str, str, str]
"""What a task is filed under: its id, seq, status (`TaskStatus.value`), current queue (the one
it was created for, before it is routed), worker, channel and policy. A plain tuple of strings
and ints, because the garbage collector stops tracking those: it would walk millions of named
tuples (or enum members' holders) at every full collection."""
# Positions in `TaskKeys`.
TASK_ID: Final = 0
SEQ: Final = 1
STATUS: Final = 2
QUEUE_ID: Final = 3
WORKER_ID: Final = 4
CHANNEL: Final = 5
POLICY_ID: Final = 6
_OPEN_STATUSES = frozenset(status.value for status in TaskStatus if status.is_open)


def keys_of(task: TaskRecord) -> TaskKeys:
    spec = task.spec
    return (
        task.task_id,
        task.seq,
        task.status.value,
        task.queue_id or spec.queue_id,
        task.worker_id,
        spec.channel,
        spec.policy_id,
    )


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """Which tasks a listing wants; an empty field does not filter."""

    status: TaskStatus | None = None
    queue_id: str = ""
    worker_id: str = ""
    channel: str = ""

    def matches(self, keys: TaskKeys) -> bool:
        return (
            (self.status is None or keys[STATUS] == self.status.value)
            and (not self.queue_id or keys[QUEUE_ID] == self.queue_id)
            and (not self.worker_id or keys[WORKER_ID] == self.worker_id)
            and (not self.channel or keys[CHANNEL] == self.channel)
        )


@dataclass(frozen=True, slots=True)
class TaskScan:
    """What one bounded walk of an index found."""

    found: list[TaskKeys]
    """The matching tasks, in creation order."""
    resume_after_seq: int | None
    """Where the next walk starts (after this sequence number); None when nothing is left."""


_EMPTY: SortedList = SortedList()


class TaskIndex:
    """Sorted lists of creation sequence numbers over the tasks filed with `update`."""

    def __init__(self) -> None:
        self._keys: dict[int, TaskKeys] = {}
        self._all = SortedList()
        self._by_status: dict[str, SortedList] = {}
        self._by_queue: dict[str, SortedList] = {}
        self._by_worker: dict[str, SortedList] = {}
        self._by_channel: dict[str, SortedList] = {}
        self._open_by_policy: dict[str, SortedList] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self, seq: int) -> TaskKeys:
        return self._keys[seq]

    def task_id(self, seq: int) -> str:
        return self._keys[seq][TASK_ID]

    def update(self, task: TaskRecord) -> None:
        """Files a new task, or refiles one whose status, queue or worker changed."""
        old = self._keys.get(task.seq)
        if (  # called at every change of a task: most change none of its keys
            old is not None
            and old[STATUS] == task.status.value
            and old[WORKER_ID] == task.worker_id
            and old[QUEUE_ID] == (task.queue_id or task.spec.queue_id)
        ):
            return
        self.file(keys_of(task))

    def file(self, keys: TaskKeys) -> None:
        """`update` for a task known only by its keys (a closed task restored as bytes)."""
        seq = keys[SEQ]
        old = self._keys.get(seq)
        if old == keys:
            return
        self._keys[seq] = keys
        if old is None:
            self._all.add(seq)
            _move(self._by_channel, seq, None, keys[CHANNEL])
            _move(self._by_status, seq, None, keys[STATUS])
            _move(self._by_queue, seq, None, keys[QUEUE_ID])
            _move(self._by_worker, seq, None, keys[WORKER_ID] or None)
            _move(self._open_by_policy, seq, None, _open_policy(keys))
            return
        if old[STATUS] != keys[STATUS]:
            _move(self._by_status, seq, old[STATUS], keys[STATUS])
            _move(self._open_by_policy, seq, _open_policy(old), _open_policy(keys))
        if old[QUEUE_ID] != keys[QUEUE_ID]:
            _move(self._by_queue, seq, old[QUEUE_ID], keys[QUEUE_ID])
        if old[WORKER_ID] != keys[WORKER_ID]:
            _move(self._by_worker, seq, old[WORKER_ID] or None, keys[WORKER_ID] or None)

    def load(self, tasks: Iterable[TaskKeys]) -> None:
        """Files many tasks into an empty index at once (a snapshot restore): each list is
        sorted once instead of taking one insertion per task (4x faster at 1M tasks)."""
        assert not self._keys, "load fills an empty index"
        lists: tuple[dict[str, list[int]], ...] = ({}, {}, {}, {}, {})
        by_channel, by_status, by_queue, by_worker, by_policy = lists
        for keys in tasks:
            seq = keys[SEQ]
            self._keys[seq] = keys
            by_channel.setdefault(keys[CHANNEL], []).append(seq)
            by_status.setdefault(keys[STATUS], []).append(seq)
            by_queue.setdefault(keys[QUEUE_ID], []).append(seq)
            if keys[WORKER_ID]:
                by_worker.setdefault(keys[WORKER_ID], []).append(seq)
            policy_id = _open_policy(keys)
            if policy_id is not None:
                by_policy.setdefault(policy_id, []).append(seq)
        self._all = SortedList(self._keys)
        for target, seqs_by_key in zip(
            (self._by_channel, self._by_status, self._by_queue, self._by_worker,
             self._open_by_policy),
            lists,
            strict=True,
        ):  # fmt: skip
            for key, seqs in seqs_by_key.items():
                target[key] = SortedList(seqs)

    def remove(self, seq: int) -> None:
        """Forgets a task (a closed task past the number kept)."""
        keys = self._keys.pop(seq)
        self._all.remove(seq)
        _move(self._by_channel, seq, keys[CHANNEL], None)
        _move(self._by_status, seq, keys[STATUS], None)
        _move(self._by_queue, seq, keys[QUEUE_ID], None)
        _move(self._by_worker, seq, keys[WORKER_ID] or None, None)
        _move(self._open_by_policy, seq, _open_policy(keys), None)

    def seqs(self) -> Iterator[int]:
        """Every task, in creation order."""
        return iter(self._all)

    def open_of_policy(self, policy_id: str) -> list[str]:
        """The ids of a routing policy's open tasks, in creation order."""
        return [self._keys[seq][TASK_ID] for seq in self._open_by_policy.get(policy_id, _EMPTY)]

    def open_count_of_policy(self, policy_id: str) -> int:
        return len(self._open_by_policy.get(policy_id, _EMPTY))

    def scan(
        self, task_filter: TaskFilter, *, after_seq: int, count_max: int, scan_max: int
    ) -> TaskScan:
        """Up to `count_max` tasks created after `after_seq` that match, examining at most
        `scan_max` candidates of the shortest list the filter allows: O(log n + scan_max)."""
        candidates = self._candidates(task_filter)
        start = candidates.bisect_right(after_seq)
        found: list[TaskKeys] = []
        examined = 0
        last_seq = after_seq
        for seq in candidates.islice(start, start + scan_max):
            examined += 1
            last_seq = seq
            keys = self._keys[seq]
            if task_filter.matches(keys):
                found.append(keys)
                if len(found) == count_max:
                    break
        more = start + examined < len(candidates)
        return TaskScan(found, last_seq if more else None)

    def _candidates(self, task_filter: TaskFilter) -> SortedList:
        """The shortest list holding every task the filter matches."""
        lists = [self._all]
        if task_filter.status is not None:
            lists.append(self._by_status.get(task_filter.status.value, _EMPTY))
        if task_filter.queue_id:
            lists.append(self._by_queue.get(task_filter.queue_id, _EMPTY))
        if task_filter.worker_id:
            lists.append(self._by_worker.get(task_filter.worker_id, _EMPTY))
        if task_filter.channel:
            lists.append(self._by_channel.get(task_filter.channel, _EMPTY))
        return min(lists, key=len)

    def check(self, tasks: Iterable[TaskKeys]) -> None:
        """Raises AssertionError unless the index holds exactly these tasks under these keys.
        O(n log n): for tests."""
        expected = TaskIndex()
        for keys in tasks:
            expected.file(keys)
        assert self._keys == expected._keys, "task index keys differ from the records"
        for name in ("_all", "_by_status", "_by_queue", "_by_worker", "_by_channel"):
            assert _plain(getattr(self, name)) == _plain(getattr(expected, name)), name
        assert _plain(self._open_by_policy) == _plain(expected._open_by_policy), "by policy"


def _open_policy(keys: TaskKeys) -> str | None:
    return keys[POLICY_ID] if keys[POLICY_ID] and keys[STATUS] in _OPEN_STATUSES else None


def _move(lists: dict[_Key, SortedList], seq: int, old: _Key | None, new: _Key | None) -> None:
    """Moves `seq` from the list of `old` to that of `new` (None: no list); an emptied list is
    dropped, so that keys of the past (workers removed, queues deleted) cost nothing."""
    if old is not None:
        entries = lists[old]
        entries.remove(seq)
        if not entries:
            del lists[old]
    if new is not None:
        entries = lists.get(new)
        if entries is None:
            entries = lists[new] = SortedList()
        entries.add(seq)


def _plain(value: object) -> object:
    if isinstance(value, dict):
        return {key: list(entries) for key, entries in value.items()}
    assert isinstance(value, SortedList)
    return list(value)
