"""Worker ids in order, over every worker and per activity: a listing resumes after an id in
O(log n) instead of building the list of every worker, and the number of workers in an activity
is the length of its list (read every second by the metrics and the statistics)."""

from __future__ import annotations

from collections.abc import Iterable

from sortedcontainers import SortedList

_EMPTY: SortedList = SortedList()


class WorkerIndex:
    def __init__(self) -> None:
        self._all = SortedList()
        self._by_activity: dict[str, SortedList] = {}

    def add(self, worker_id: str, activity: str) -> None:
        self._all.add(worker_id)
        self._join(worker_id, activity)

    def move(self, worker_id: str, old_activity: str, new_activity: str) -> None:
        self._leave(worker_id, old_activity)
        self._join(worker_id, new_activity)

    def remove(self, worker_id: str, activity: str) -> None:
        self._all.remove(worker_id)
        self._leave(worker_id, activity)

    def count(self, activity: str) -> int:
        return len(self._by_activity.get(activity, _EMPTY))

    def after(self, worker_id: str, *, activity: str, count_max: int) -> tuple[list[str], bool]:
        """Up to `count_max` worker ids after `worker_id` in id order (of one activity, unless
        `activity` is empty), and whether more follow: O(log n + count_max)."""
        ids = self._by_activity.get(activity, _EMPTY) if activity else self._all
        start = ids.bisect_right(worker_id)
        page = list(ids.islice(start, start + count_max))
        return page, start + len(page) < len(ids)

    def _join(self, worker_id: str, activity: str) -> None:
        ids = self._by_activity.get(activity)
        if ids is None:
            ids = self._by_activity[activity] = SortedList()
        ids.add(worker_id)

    def _leave(self, worker_id: str, activity: str) -> None:
        ids = self._by_activity[activity]
        ids.remove(worker_id)
        if not ids:
            del self._by_activity[activity]

    def check(self, workers: Iterable[tuple[str, str]]) -> None:
        """Raises AssertionError unless the index holds exactly these (worker id, activity)
        pairs (for tests)."""
        expected = WorkerIndex()
        for worker_id, activity in workers:
            expected.add(worker_id, activity)
        assert list(self._all) == list(expected._all), "worker index ids"
        assert {a: list(ids) for a, ids in self._by_activity.items()} == {
            a: list(ids) for a, ids in expected._by_activity.items()
        }, "worker index activities"
