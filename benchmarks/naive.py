"""The baseline the engine benchmark compares against: a naive pure-Python router.

It keeps workers and waiting tasks as plain Python objects and makes the same two routing
decisions as the engine, by brute force:

- `best_worker_for(task)`: every worker is checked against the hard constraints (available, free
  capacity on the task's channel and within its total capacity, queue membership, minimum skill
  levels, language, exclusions) and every eligible one is scored with the formula of
  `router/core/scoring.py`; the best score wins, ties going to the lowest row.
- `best_task_for(worker)`: the waiting tasks are walked in serving order (higher priority first,
  then the oldest, then creation order) and the first one the worker is eligible for is taken.

It is what someone would write without the engine's columns and task groups, and it is the
yardstick for the engine's speed-up. It only decides: applying the decision (offers, records,
events) is left to the caller, so the comparison flatters the baseline a little.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from router.core.limits import SKILL_LEVEL_MAX
from router.core.model import ScoringWeights
from router.core.scoring import REPEAT_CONTACTS_COUNTED_MAX, REPEAT_NEED_STEP

CAPACITY_EPSILON = 1e-9
"""Slack when comparing a total load with a total capacity (as the engine does)."""


@dataclass(slots=True)
class NaiveWorker:
    """One worker as plain Python values."""

    worker_id: str
    row: int
    """Position in the engine's columns; the tie-breaker (lowest row wins)."""
    available: bool
    skills: dict[str, float]
    languages: frozenset[str]
    empathy: float
    capacity_by_channel: dict[str, int]
    cost_by_channel: dict[str, float]
    total_capacity: float | None
    queue_ids: frozenset[str]
    """Queues whose target set the worker belongs to."""
    idle_since_ms: int
    load_by_channel: dict[str, int] = field(default_factory=dict)

    @property
    def total_load(self) -> float:
        """Capacity in use, in units of `total_capacity` (each task costs its channel's cost)."""
        return sum(
            load * self.cost_by_channel.get(channel, 1.0)
            for channel, load in self.load_by_channel.items()
        )

    @property
    def load_share(self) -> float:
        """Share of the worker's capacity in use, 0 to 1 (as the engine's load column)."""
        if self.total_capacity is not None and self.total_capacity > 0:
            share = self.total_load / self.total_capacity
        else:
            capacity_sum = sum(self.capacity_by_channel.values())
            load_sum = sum(self.load_by_channel.values())
            share = load_sum / capacity_sum if capacity_sum > 0 else 1.0
        return min(max(share, 0.0), 1.0)


@dataclass(slots=True)
class NaiveTask:
    """One task as plain Python values."""

    task_id: str
    seq: int
    queue_id: str
    channel: str
    required_skills: Mapping[str, float]
    preferred_skills: Mapping[str, float]
    language: str
    priority: int
    created_ms: int
    sentiment: float = 0.0
    repeat_contacts: int = 0
    affinity_worker_ids: frozenset[str] = frozenset()
    excluded_worker_ids: frozenset[str] = frozenset()

    @property
    def order_key(self) -> tuple[int, int, int]:
        """Serving order: higher priority first, then the oldest, then creation order."""
        return (-self.priority, self.created_ms, self.seq)


def empathy_need(sentiment: float, repeat_contacts: int) -> float:
    """How much the customer needs an empathetic agent, 0 to 1 (as `scoring.empathy_need`)."""
    repeats = min(repeat_contacts, REPEAT_CONTACTS_COUNTED_MAX)
    return min(1.0, max(0.0, -sentiment) + REPEAT_NEED_STEP * repeats)


def is_eligible(worker: NaiveWorker, task: NaiveTask) -> bool:
    """The hard constraints: may this worker be offered this task now?"""
    if not worker.available:
        return False
    channel = task.channel
    if worker.load_by_channel.get(channel, 0) >= worker.capacity_by_channel.get(channel, 0):
        return False
    if worker.total_capacity is not None:
        cost = worker.cost_by_channel.get(channel, 1.0)
        if worker.total_load + cost > worker.total_capacity + CAPACITY_EPSILON:
            return False
    if task.queue_id not in worker.queue_ids:
        return False
    for skill, level_min in task.required_skills.items():
        level = worker.skills.get(skill)
        if level is None or level < level_min:
            return False
    if task.language and task.language not in worker.languages:
        return False
    return worker.worker_id not in task.excluded_worker_ids


def skill_fit(worker: NaiveWorker, task: NaiveTask) -> float:
    """Weighted mean of min(level / 5, 1) over required (weight 1) and preferred skills."""
    weighted_sum = 0.0
    weight_sum = 0.0
    weighted = [(skill, 1.0) for skill in sorted(task.required_skills)]
    weighted += list(task.preferred_skills.items())
    for skill, weight in weighted:
        level = worker.skills.get(skill, 0.0)
        weighted_sum += weight * min(max(level / SKILL_LEVEL_MAX, 0.0), 1.0)
        weight_sum += weight
    return weighted_sum / weight_sum if weight_sum > 0 else 0.0


@dataclass(frozen=True, slots=True)
class WorkerChoice:
    """The outcome of `best_worker_for`: the winner and every candidate's score (for ties)."""

    worker: NaiveWorker | None
    score_by_worker_id: Mapping[str, float]


def best_worker_for(
    workers: Iterable[NaiveWorker],
    task: NaiveTask,
    weights: ScoringWeights,
    now_ms: int,
) -> WorkerChoice:
    """Checks every worker, scores the eligible ones, and returns the best (lowest row on ties).

    `workers` must be in row order for the tie-break to match the engine's."""
    need = empathy_need(task.sentiment, task.repeat_contacts)
    candidates: list[tuple[NaiveWorker, float, float]] = []
    longest_idle_ms = 0.0
    for worker in workers:
        if not is_eligible(worker, task):
            continue
        partial = 0.0
        if weights.skill:
            partial += weights.skill * skill_fit(worker, task)
        if need > 0 and weights.empathy:
            partial += weights.empathy * need * worker.empathy
        if weights.affinity and worker.worker_id in task.affinity_worker_ids:
            partial += weights.affinity
        if weights.load:
            partial += weights.load * (1.0 - worker.load_share)
        busy = any(worker.load_by_channel.values())  # only a worker holding no task is idle
        idle_ms = 0.0 if busy else float(max(now_ms - worker.idle_since_ms, 0))
        longest_idle_ms = max(longest_idle_ms, idle_ms)
        candidates.append((worker, partial, idle_ms))

    best: NaiveWorker | None = None
    best_score = float("-inf")
    score_by_worker_id: dict[str, float] = {}
    for worker, partial, idle_ms in candidates:
        score = partial
        if weights.idle and longest_idle_ms > 0:
            score += weights.idle * idle_ms / longest_idle_ms
        score_by_worker_id[worker.worker_id] = score
        if score > best_score:
            best, best_score = worker, score
    return WorkerChoice(best, score_by_worker_id)


class WaitingList:
    """The waiting tasks in serving order, as one sorted Python list."""

    def __init__(self, tasks: Iterable[NaiveTask] = ()) -> None:
        self._tasks: list[NaiveTask] = sorted(tasks, key=lambda task: task.order_key)
        self._keys: list[tuple[int, int, int]] = [task.order_key for task in self._tasks]

    def __len__(self) -> int:
        return len(self._tasks)

    def add(self, task: NaiveTask) -> None:
        index = bisect.bisect_right(self._keys, task.order_key)
        self._keys.insert(index, task.order_key)
        self._tasks.insert(index, task)

    def remove(self, task_id: str, order_key: tuple[int, int, int]) -> None:
        index = bisect.bisect_left(self._keys, order_key)
        while self._tasks[index].task_id != task_id:
            index += 1
        del self._keys[index]
        del self._tasks[index]

    def best_task_for(self, worker: NaiveWorker) -> NaiveTask | None:
        """The first waiting task, in serving order, that the worker is eligible for."""
        for task in self._tasks:
            if is_eligible(worker, task):
                return task
        return None
