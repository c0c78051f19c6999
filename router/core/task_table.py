"""Every task the engine knows, by id: the open ones as live records, the latest closed ones as
bytes, and the indexes over both (`task_index.py`).

A closed task never changes again, and up to `CLOSED_TASKS_KEPT_MAX` of them are kept for
GetTask and ListTasks. As records they would be millions of Python objects (a record, its spec,
its attribute documents) that every garbage collection and every snapshot walks; as their
msgpack encoding each is one bytes object, decoded when read, kept in a tuple with its index
keys, all of which the garbage collector stops tracking. The encoding is deterministic (sets
and dict keys sorted), so equal tasks are equal bytes: digests and snapshots use the bytes as
they are."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import msgspec

from router.core.limits import CLOSED_TASKS_KEPT_MAX
from router.core.model import TaskRecord
from router.core.task_index import SEQ, TASK_ID, TaskIndex, TaskKeys, keys_of

_encoder = msgspec.msgpack.Encoder(order="deterministic")
_decoder = msgspec.msgpack.Decoder(TaskRecord)


def encode_task(task: TaskRecord) -> bytes:
    # Copied to a bytes object of its exact size: msgspec's own result keeps the spare room of
    # its growing buffer (12 KiB allocated for 8.6 KiB of task), for as long as it is kept.
    return bytes(memoryview(_encoder.encode(task)))


def decode_task(data: bytes) -> TaskRecord:
    return _decoder.decode(data)


ClosedTask = tuple[TaskKeys, bytes]
"""A closed task as kept: its index keys (to list and forget it undecoded) and its bytes. A
plain tuple, untracked by the garbage collector like its contents."""


class TaskCopy(NamedTuple):
    """A task as it was when copied, which later commands do not change: an open task's record
    (a snapshot) with its place in its queue, or a closed task's bytes. Taking copies is cheap
    (a named tuple: a page takes a thousand in one step); `record()` (decoding) can wait until
    the writer's turn is over."""

    seq: int
    snapshot: TaskRecord | None
    """The open task's record; None for a closed task."""
    closed_data: bytes = b""
    queue_position: int = 0
    estimated_wait_ms: int | None = None

    def record(self) -> TaskRecord:
        return self.snapshot if self.snapshot is not None else decode_task(self.closed_data)


@dataclass(frozen=True, slots=True)
class TaskPage:
    """Copies of the tasks of one listing, and where the next listing starts."""

    copies: list[TaskCopy]
    resume_after_seq: int | None
    """None when no task is left to list."""


class TaskTable(Mapping[str, TaskRecord]):
    """Open records, closed bytes, and their indexes, kept in step. Reading a closed task gives
    a decoded copy: only open records are the engine's to change."""

    def __init__(self) -> None:
        self.open: dict[str, TaskRecord] = {}
        """The open tasks, in creation order."""
        self.closed: OrderedDict[str, ClosedTask] = OrderedDict()
        """The closed tasks kept, the first closed first (forgotten first)."""
        self.index = TaskIndex()

    # -- reading ----------------------------------------------------------------------------

    def __getitem__(self, task_id: str) -> TaskRecord:
        task = self.open.get(task_id)
        if task is not None:
            return task
        return decode_task(self.closed[task_id][1])

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.open or task_id in self.closed

    def __len__(self) -> int:
        return len(self.open) + len(self.closed)

    def __iter__(self) -> Iterator[str]:
        """Every task id, in creation order."""
        index = self.index
        return (index.task_id(seq) for seq in index.seqs())

    # -- changing ---------------------------------------------------------------------------

    def add(self, task: TaskRecord) -> None:
        """A new open task."""
        self.open[task.task_id] = task
        self.index.update(task)

    def changed(self, task: TaskRecord) -> None:
        """An open task's status, queue or worker may have changed: refiles it."""
        self.index.update(task)

    def close(self, task: TaskRecord) -> None:
        """Keeps a task that has closed as bytes, forgetting the oldest closed past the limit."""
        del self.open[task.task_id]
        self.index.update(task)
        self.closed[task.task_id] = (self.index.keys(task.seq), encode_task(task))
        while len(self.closed) > CLOSED_TASKS_KEPT_MAX:
            _, (keys, _) = self.closed.popitem(last=False)
            self.index.remove(keys[SEQ])

    def restore(self, open_tasks: Iterable[TaskRecord], closed: Iterable[ClosedTask]) -> None:
        """Fills an empty table from a snapshot: its open records, and its closed tasks in the
        order they closed; the indexes are built at once."""
        assert not self.open and not self.closed, "restore fills an empty table"
        for task in open_tasks:
            self.open[task.task_id] = task
        for closed_task in closed:
            self.closed[closed_task[0][TASK_ID]] = closed_task
        self.index.load(
            [keys_of(task) for task in self.open.values()]
            + [keys for keys, _ in self.closed.values()]
        )

    def check(self) -> None:
        """Raises AssertionError unless the indexes agree with the records and the bytes.
        O(state): for tests."""
        assert not self.open.keys() & self.closed.keys(), "a task both open and closed"
        assert len(self.closed) <= CLOSED_TASKS_KEPT_MAX
        for task in self.open.values():
            assert task.status.is_open, f"{task.task_id} is {task.status.value} but open"
        for task_id, (keys, data) in self.closed.items():
            task = decode_task(data)
            assert keys_of(task) == keys and task_id == task.task_id, task_id
            assert not task.status.is_open, f"{task_id} is {task.status.value} but closed"
        self.index.check(
            [keys_of(t) for t in self.open.values()] + [keys for keys, _ in self.closed.values()]
        )
