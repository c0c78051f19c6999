"""The task and worker indexes: a walk page by page returns exactly what a full scan would, in
order, whatever the filters, page sizes and scan budgets; tasks move between lists as they
change; the table keeps closed tasks as bytes that read back as the records they were."""

from __future__ import annotations

import gc
import random

import pytest

from router.core.model import TaskRecord, TaskSpec, TaskStatus
from router.core.task_index import SEQ, TASK_ID, TaskFilter, TaskIndex, TaskKeys, keys_of
from router.core.task_table import TaskTable, decode_task, encode_task
from router.core.worker_index import WorkerIndex

QUEUES = ("support", "sales", "vip")
WORKERS = ("", "ana", "bo", "cy")
CHANNELS = ("voice", "chat", "email")


def keys(seq: int, status: TaskStatus, queue_id: str, worker_id: str, channel: str) -> TaskKeys:
    return (f"task-{seq}", seq, status.value, queue_id, worker_id, channel, "")


def random_keys(rng: random.Random, seq: int) -> TaskKeys:
    return (
        f"task-{seq}",
        seq,
        rng.choice(list(TaskStatus)).value,
        rng.choice(QUEUES),
        rng.choice(WORKERS),
        rng.choice(CHANNELS),
        rng.choice(["", "main"]),
    )


def random_filter(rng: random.Random) -> TaskFilter:
    return TaskFilter(
        status=rng.choice([None, *TaskStatus]),
        queue_id=rng.choice(["", *QUEUES, "nowhere"]),
        worker_id=rng.choice(["", *WORKERS[1:]]),
        channel=rng.choice(["", *CHANNELS]),
    )


def walk(index: TaskIndex, task_filter: TaskFilter, count_max: int, scan_max: int) -> list[int]:
    """Every page of a listing, token to token; asserts each page's bounds."""
    seqs: list[int] = []
    after_seq = 0
    while True:
        scan = index.scan(task_filter, after_seq=after_seq, count_max=count_max, scan_max=scan_max)
        assert len(scan.found) <= min(count_max, scan_max)
        seqs.extend(found[SEQ] for found in scan.found)
        if scan.resume_after_seq is None:
            return seqs
        assert scan.resume_after_seq > after_seq  # every page moves on
        after_seq = scan.resume_after_seq


@pytest.mark.parametrize("seed", range(5))
def test_a_paged_walk_lists_what_a_full_scan_would(seed: int) -> None:
    rng = random.Random(seed)
    index = TaskIndex()
    everything = {}
    for seq in rng.sample(range(1, 2000), 400):  # gaps, as forgotten tasks leave
        everything[seq] = random_keys(rng, seq)
        index.file(everything[seq])
    for _ in range(40):
        task_filter = random_filter(rng)
        expected = sorted(s for s, keys in everything.items() if task_filter.matches(keys))
        count_max, scan_max = rng.choice([1, 3, 50, 1000]), rng.choice([1, 7, 100, 10_000])
        assert walk(index, task_filter, count_max, scan_max) == expected, (task_filter, seed)


def test_the_most_selective_list_is_walked() -> None:
    index = TaskIndex()
    for seq in range(1, 1001):
        queue_id = "rare" if seq % 250 == 0 else "common"
        index.file(keys(seq, TaskStatus.PENDING, queue_id, "", "voice"))
    task_filter = TaskFilter(status=TaskStatus.PENDING, queue_id="rare", channel="voice")
    scan = index.scan(task_filter, after_seq=0, count_max=100, scan_max=4)
    assert [found[SEQ] for found in scan.found] == [250, 500, 750, 1000]
    assert scan.resume_after_seq is None  # four candidates examined, not a thousand


def test_a_spent_budget_gives_short_pages_that_still_walk_everything() -> None:
    index = TaskIndex()
    for seq in range(1, 101):  # 50 in support, 60 on ana: support's list is walked
        queue_id = "support" if seq % 2 == 0 else "sales"
        worker_id = "ana" if seq <= 60 else ""
        index.file(keys(seq, TaskStatus.ASSIGNED, queue_id, worker_id, "voice"))
    task_filter = TaskFilter(queue_id="support", worker_id="ana")
    pages: list[list[int]] = []
    after_seq = 0
    while True:
        scan = index.scan(task_filter, after_seq=after_seq, count_max=20, scan_max=10)
        pages.append([found[SEQ] for found in scan.found])
        if scan.resume_after_seq is None:
            break
        after_seq = scan.resume_after_seq
    # 10 candidates a call (support's tasks): ana's first, then pages with none of hers.
    assert pages == [
        list(range(2, 21, 2)),
        list(range(22, 41, 2)),
        list(range(42, 61, 2)),
        [],
        [],
    ]


def test_an_unmatched_walk_ends_after_budgeted_empty_pages() -> None:
    index = TaskIndex()
    for seq in range(1, 101):
        index.file(keys(seq, TaskStatus.COMPLETED, "support", "", "voice"))
    # Every candidate of the shortest list (the queue's) fails the channel: 10 empty pages.
    task_filter = TaskFilter(queue_id="support", channel="chat")
    index.file(keys(101, TaskStatus.COMPLETED, "other", "", "chat"))
    index.file(keys(102, TaskStatus.COMPLETED, "other", "", "chat"))
    calls = 0
    after_seq = 0
    while True:
        calls += 1
        scan = index.scan(task_filter, after_seq=after_seq, count_max=5, scan_max=1)
        assert scan.found == []
        if scan.resume_after_seq is None:
            break
        after_seq = scan.resume_after_seq
    assert calls == 2  # the channel's list (2 tasks) is shorter than the queue's (100)


def test_a_changed_task_moves_between_lists() -> None:
    index = TaskIndex()
    task = TaskRecord("task-1", 1, TaskSpec("voice", "support", policy_id="main"), "", 0, 0)
    index.update(task)
    task.status, task.worker_id = TaskStatus.RESERVED, "ana"
    index.update(task)
    assert index.open_of_policy("main") == ["task-1"]
    on_ana = index.scan(TaskFilter(worker_id="ana"), after_seq=0, count_max=5, scan_max=5)
    assert [found[TASK_ID] for found in on_ana.found] == ["task-1"]
    task.status = TaskStatus.COMPLETED
    index.update(task)
    assert index.open_of_policy("main") == [] and index.open_count_of_policy("main") == 0
    pending = index.scan(
        TaskFilter(status=TaskStatus.PENDING), after_seq=0, count_max=5, scan_max=5
    )
    assert pending.found == []
    index.check([keys_of(task)])
    index.remove(1)
    index.check([])
    assert len(index) == 0


def test_a_closed_task_is_kept_as_bytes_and_reads_back_equal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("router.core.task_table.CLOSED_TASKS_KEPT_MAX", 2)
    table = TaskTable()
    tasks = []
    for seq in range(1, 5):
        spec = TaskSpec("chat", "support", attributes={"z": 1, "a": [1.5, {"k": None}]})
        task = TaskRecord(f"task-{seq}", seq, spec, f"req-{seq}", seq, seq)
        task.excluded_worker_ids = frozenset({"bo", "ana"})
        tasks.append(task)
        table.add(task)
    for task in (tasks[2], tasks[0], tasks[1]):  # closing order, not creation order
        task.status = TaskStatus.COMPLETED
        table.close(task)
    assert list(table.closed) == ["task-1", "task-2"]  # task-3 closed first: forgotten first
    assert "task-3" not in table and len(table) == 3
    assert isinstance(table.closed["task-1"][1], bytes)
    assert table["task-1"] == tasks[0] and table["task-4"] is tasks[3]
    assert list(table) == ["task-1", "task-2", "task-4"]  # creation order
    table.check()
    with pytest.raises(KeyError):
        table["task-3"]


def test_the_garbage_collector_stops_tracking_closed_tasks_and_keys() -> None:
    """A full collection walks every tracked object: 100,000 closed tasks and two million
    tasks' index keys must not be among them."""
    table = TaskTable()
    for seq in (1, 2):
        table.add(
            TaskRecord(f"task-{seq}", seq, TaskSpec("chat", "q", attributes={"a": [{}]}), "", 0, 0)
        )
    closing = table.open["task-1"]
    closing.status = TaskStatus.COMPLETED
    table.close(closing)
    del closing
    gc.collect()
    gc.collect()  # a tuple is untracked once its items are: the outer one at the next pass
    assert not gc.is_tracked(table.closed["task-1"])
    assert not gc.is_tracked(table.index.keys(1)) and not gc.is_tracked(table.index.keys(2))


def test_equal_tasks_encode_to_equal_bytes() -> None:
    """Set and dict orders (hash seeds, insertion) do not show in a closed task's bytes: the
    digest and snapshots use them as they are."""
    one = TaskRecord("t", 1, TaskSpec("voice", attributes={"a": 1, "b": 2}), "", 0, 0)
    two = TaskRecord("t", 1, TaskSpec("voice", attributes={"b": 2, "a": 1}), "", 0, 0)
    one.excluded_worker_ids = frozenset(["x", "y", "z"])
    two.excluded_worker_ids = frozenset(["z", "y", "x"])
    assert encode_task(one) == encode_task(two)
    assert decode_task(encode_task(one)) == one


def test_workers_page_in_id_order_per_activity() -> None:
    index = WorkerIndex()
    for number in range(25):
        index.add(f"w{number:02d}", "available" if number % 2 else "offline")
    index.move("w03", "available", "break")
    index.remove("w05", "available")
    assert (index.count("available"), index.count("offline"), index.count("break")) == (10, 13, 1)
    page, more = index.after("", activity="", count_max=4)
    assert page == ["w00", "w01", "w02", "w03"] and more
    page, more = index.after("w20", activity="available", count_max=4)
    assert page == ["w21", "w23"] and not more
    page, more = index.after("w04", activity="available", count_max=2)
    assert page == ["w07", "w09"] and more
    assert index.after("", activity="lunch", count_max=4) == ([], False)
