"""Worker state in numpy columns, so that scoring one task against thousands of workers is a
handful of array operations. Row i holds one worker; rows of removed workers are reused.

Skills, languages and channels are columns whose index is assigned on first use; matrices grow by
doubling in both dimensions. The skill matrix is column-major because a task reads a few skill
columns over every worker."""

from __future__ import annotations

import heapq
from typing import Any, Literal, TypeVar, cast

import numpy as np
import numpy.typing as npt

from router.core.model import WorkerProfile

MISSING_LEVEL = np.float32(-1.0)
"""Skill level of a worker that lacks the skill: below every minimum, even a minimum of 0."""

EMPATHY, IDLE_SINCE_MS, FREE_SHARE = 0, 1, 2
"""Columns of WorkerColumns.features."""

_ROWS_INITIAL = 256
_COLS_INITIAL = 8

BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]


class ColumnIndex:
    """Names to column numbers, assigned in order of first use (deterministic under replay)."""

    def __init__(self) -> None:
        self._index: dict[str, int] = {}

    def get(self, name: str) -> int:
        """The column of `name`, or -1 when it has none yet."""
        return self._index.get(name, -1)

    def get_or_add(self, name: str) -> int:
        col = self._index.get(name)
        if col is None:
            col = len(self._index)
            self._index[name] = col
        return col

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, name: str) -> bool:
        return name in self._index

    def names(self) -> list[str]:
        return list(self._index)


def _grown(shape_now: int, needed: int) -> int:
    size = max(shape_now, 1)
    while size < needed:
        size *= 2
    return size


class WorkerColumns:
    """The columns of every worker, indexed by row."""

    def __init__(self) -> None:
        self.skill_index = ColumnIndex()
        self.language_index = ColumnIndex()
        self.channel_index = ColumnIndex()
        self.row_count = 0
        """One past the highest row ever used; arrays are at least this long."""
        self._free_rows: list[int] = []
        rows, cols = _ROWS_INITIAL, _COLS_INITIAL
        self.alive = np.zeros(rows, dtype=bool)
        self.available = np.zeros(rows, dtype=bool)
        self.features = np.zeros((rows, 3), dtype=np.float64)
        """Per worker, the score's worker-side inputs in one row, so that scoring gathers the
        candidates once: EMPATHY, IDLE_SINCE_MS (+inf while the worker holds a task: not
        idle) and FREE_SHARE (the share of its capacity not in use, 1 - load)."""
        self.features[:, IDLE_SINCE_MS] = np.inf
        """When the worker last became idle; +inf while it holds a task (not idle at all)."""
        self.total_capacity = np.full(rows, np.inf, dtype=np.float64)
        self.total_load = np.zeros(rows, dtype=np.float64)
        self.capacity_sum = np.zeros(rows, dtype=np.int64)
        """Sum of the channel capacities (the load share's base without a total capacity)."""
        self.held_tasks = np.zeros(rows, dtype=np.int64)
        self.skills = np.full((rows, cols), MISSING_LEVEL, dtype=np.float32, order="F")
        self.languages = np.zeros((rows, cols), dtype=bool, order="F")
        self.capacity = np.zeros((rows, cols), dtype=np.int32)
        self.load = np.zeros((rows, cols), dtype=np.int32)
        self.cost = np.ones((rows, cols), dtype=np.float64)
        self.ready = np.zeros((rows, cols), dtype=bool, order="F")
        """ready[row, channel]: alive, in an available activity, and able to take one more task
        of that channel within both its channel capacity and its total capacity."""

    # -- allocation ---------------------------------------------------------------------------

    def allocate_row(self) -> int:
        """A free row (the lowest one, so that row order is deterministic)."""
        if self._free_rows:
            row = heapq.heappop(self._free_rows)
        else:
            row = self.row_count
            self.row_count += 1
            self._ensure_rows(self.row_count)
        self.alive[row] = True
        return row

    def claim_row(self, row: int) -> None:
        """Takes a given row (restoring a snapshot, where rows must stay where they were);
        rows below it left unclaimed become free once `reclaim_free_rows` runs."""
        self.row_count = max(self.row_count, row + 1)
        self._ensure_rows(self.row_count)
        self.alive[row] = True

    def reclaim_free_rows(self) -> None:
        self._free_rows = [row for row in range(self.row_count) if not self.alive[row]]
        heapq.heapify(self._free_rows)

    def release_row(self, row: int) -> None:
        self.alive[row] = False
        self.available[row] = False
        self.skills[row, :] = MISSING_LEVEL
        self.languages[row, :] = False
        self.capacity[row, :] = 0
        self.load[row, :] = 0
        self.cost[row, :] = 1.0
        self.ready[row, :] = False
        self.features[row] = (0.0, np.inf, 0.0)
        self.total_capacity[row] = np.inf
        self.total_load[row] = 0.0
        self.capacity_sum[row] = 0
        self.held_tasks[row] = 0
        heapq.heappush(self._free_rows, row)

    def _ensure_rows(self, needed: int) -> None:
        rows_now = self.alive.shape[0]
        if needed <= rows_now:
            return
        rows = _grown(rows_now, needed)
        self.alive = _resize_1d(self.alive, rows, False)
        self.available = _resize_1d(self.available, rows, False)
        features = np.zeros((rows, 3), dtype=np.float64)
        features[:, IDLE_SINCE_MS] = np.inf
        features[: self.features.shape[0]] = self.features
        self.features = features
        self.total_capacity = _resize_1d(self.total_capacity, rows, np.inf)
        self.total_load = _resize_1d(self.total_load, rows, 0.0)
        self.capacity_sum = _resize_1d(self.capacity_sum, rows, 0)
        self.held_tasks = _resize_1d(self.held_tasks, rows, 0)
        self.skills = _resize_2d(self.skills, rows, self.skills.shape[1], MISSING_LEVEL)
        self.languages = _resize_2d(self.languages, rows, self.languages.shape[1], False)
        self.capacity = _resize_2d(self.capacity, rows, self.capacity.shape[1], 0)
        self.load = _resize_2d(self.load, rows, self.load.shape[1], 0)
        self.cost = _resize_2d(self.cost, rows, self.cost.shape[1], 1.0)
        self.ready = _resize_2d(self.ready, rows, self.ready.shape[1], False)

    # -- column registration ------------------------------------------------------------------

    def skill_col(self, name: str) -> int:
        col = self.skill_index.get_or_add(name)
        if col >= self.skills.shape[1]:
            cols = _grown(self.skills.shape[1], col + 1)
            self.skills = _resize_2d(self.skills, self.skills.shape[0], cols, MISSING_LEVEL)
        return col

    def language_col(self, name: str) -> int:
        col = self.language_index.get_or_add(name)
        if col >= self.languages.shape[1]:
            cols = _grown(self.languages.shape[1], col + 1)
            self.languages = _resize_2d(self.languages, self.languages.shape[0], cols, False)
        return col

    def channel_col(self, name: str) -> int:
        col = self.channel_index.get_or_add(name)
        if col >= self.capacity.shape[1]:
            rows = self.capacity.shape[0]
            cols = _grown(self.capacity.shape[1], col + 1)
            self.capacity = _resize_2d(self.capacity, rows, cols, 0)
            self.load = _resize_2d(self.load, rows, cols, 0)
            self.cost = _resize_2d(self.cost, rows, cols, 1.0)
            self.ready = _resize_2d(self.ready, rows, cols, False)
        return col

    # -- per-worker updates -------------------------------------------------------------------

    def write_profile(self, row: int, profile: WorkerProfile) -> None:
        """Writes skills, languages, empathy and capacity; keeps load. Channels must be known."""
        skill_cols = [self.skill_col(name) for name in profile.skills]
        language_cols = [self.language_col(name) for name in profile.languages]
        self.skills[row, :] = MISSING_LEVEL
        if skill_cols:
            self.skills[row, skill_cols] = np.fromiter(
                profile.skills.values(), dtype=np.float32, count=len(skill_cols)
            )
        self.languages[row, :] = False
        self.languages[row, language_cols] = True
        self.features[row, EMPATHY] = profile.empathy
        self.capacity[row, :] = 0
        self.cost[row, :] = 1.0
        for channel, capacity in profile.capacity_by_channel.items():
            self.capacity[row, self.channel_index.get(channel)] = capacity
        for channel, cost in profile.cost_by_channel.items():
            self.cost[row, self.channel_index.get(channel)] = cost
        total = profile.total_capacity
        self.total_capacity[row] = np.inf if total is None else total
        # Costs may have changed while tasks are held: the load is re-priced, not carried over.
        self.total_load[row] = float(self.load[row] @ self.cost[row])
        self.capacity_sum[row] = int(self.capacity[row].sum())
        self.refresh(row)

    def add_load(self, row: int, channel_col: int, tasks: int) -> None:
        """Takes (tasks > 0) or gives back (tasks < 0) capacity of one channel. Runs on every
        offer and release: reads and writes scalars as Python numbers (a numpy scalar's
        in-place `+=` costs a read, a numpy add and a write), the same float64 arithmetic."""
        load = self.load[row]
        load[channel_col] += tasks
        total_load = float(self.total_load[row]) + tasks * float(self.cost[row, channel_col])
        self.total_load[row] = total_load
        held = int(self.held_tasks[row]) + tasks
        self.held_tasks[row] = held
        features = self.features[row]
        if held > 0:
            features[IDLE_SINCE_MS] = np.inf
        self._refresh(row, load, features, total_load, held)

    def refresh(self, row: int) -> None:
        """Recomputes the derived columns of one row (ready, load share)."""
        self._refresh(
            row,
            self.load[row],
            self.features[row],
            float(self.total_load[row]),
            int(self.held_tasks[row]),
        )

    def _refresh(
        self,
        row: int,
        load: npt.NDArray[np.int32],
        features: npt.NDArray[np.float64],
        total_load: float,
        held: int,
    ) -> None:
        """`refresh` with the row's load, features, total load and held tasks already read;
        works on scalars and writes the ready row in place."""
        ready = self.ready[row]
        total_cap = float(self.total_capacity[row])
        if self.alive[row] and self.available[row]:
            np.less(load, self.capacity[row], out=ready)
            if total_cap != np.inf:
                ready &= self.cost[row] <= total_cap - total_load + 1e-9
        else:
            ready[:] = False
        if total_cap != np.inf and total_cap > 0:
            share = total_load / total_cap
        else:
            cap_sum = int(self.capacity_sum[row])
            share = held / cap_sum if cap_sum > 0 else 1.0
        features[FREE_SHARE] = 1.0 - min(max(share, 0.0), 1.0)


_Array = TypeVar("_Array", bound=np.ndarray[Any, Any])


def _resize_1d(array: _Array, rows: int, fill: object) -> _Array:
    grown = np.full(rows, fill, dtype=array.dtype)
    grown[: array.shape[0]] = array
    return cast(_Array, grown)


def _resize_2d(array: _Array, rows: int, cols: int, fill: object) -> _Array:
    order: Literal["C", "F"] = (
        "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
    )
    grown = np.full((rows, cols), fill, dtype=array.dtype, order=order)
    grown[: array.shape[0], : array.shape[1]] = array
    return cast(_Array, grown)
