"""Timing the engine's decisions, one at a time, on a steady state."""

from __future__ import annotations

import cProfile
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.engine.workload import CHAT, SteadyState
from router.core import commands as cmd
from router.core.model import (
    TaskStatus,
)

# == measuring =====================================================================================

DECISION_STEP_MS = 10
"""Router clock advance between two measured decisions."""
WARMUP_DECISIONS = 100


@dataclass
class Run:
    """Latencies of one series of decisions and what they decided."""

    latencies_ns: list[int] = field(default_factory=list)
    offered: int = 0
    compared: int = 0
    agreed: int = 0
    agreed_exactly: int = 0
    candidates_total: int = 0

    def record(self, elapsed_ns: int) -> None:
        self.latencies_ns.append(elapsed_ns)

    @property
    def decisions(self) -> int:
        return len(self.latencies_ns)

    def percentile_ms(self, percent: float) -> float:
        return float(np.percentile(np.array(self.latencies_ns), percent)) / 1e6

    def mean_ms(self) -> float:
        return float(np.mean(self.latencies_ns)) / 1e6

    def decisions_per_s(self) -> float:
        total_ns = sum(self.latencies_ns)
        return self.decisions * 1e9 / total_ns if total_ns else math.nan


Profiler = cProfile.Profile | None


def _timed(profiler: Profiler, call: Callable[[], Any]) -> tuple[Any, int]:
    if profiler is not None:
        profiler.enable()
    started = time.perf_counter_ns()
    result = call()
    elapsed = time.perf_counter_ns() - started
    if profiler is not None:
        profiler.disable()
    return result, elapsed


def measure_task_arrives(
    state: SteadyState,
    decisions: int,
    *,
    warmup: int = WARMUP_DECISIONS,
    profiler: Profiler = None,
) -> Run:
    """The engine routing arriving chat tasks, one `CreateTask` at a time."""
    run = Run()
    for index in range(warmup + decisions):
        spec = state.source.next_spec(CHAT)
        state.advance(DECISION_STEP_MS)
        state.tick()
        command, now_ms = cmd.CreateTask(spec), state.now_ms
        created, elapsed_ns = _timed(
            profiler if index >= warmup else None,
            lambda: state.engine.apply(command, now_ms),  # noqa: B023 (called at once)
        )
        if index >= warmup:
            run.record(elapsed_ns)
            run.offered += created.task.status is TaskStatus.RESERVED
        state.restore_after_arrival(created)
    return run


def measure_worker_frees(
    state: SteadyState,
    decisions: int,
    *,
    warmup: int = WARMUP_DECISIONS,
    profiler: Profiler = None,
) -> Run:
    """The engine serving workers who complete their call, one `CompleteTask` at a time."""
    run = Run()
    busy = state.busy_worker_ids()
    picks = [state.rng.randrange(len(busy)) for _ in range(warmup + decisions)]
    for index, pick in enumerate(picks):
        worker_id = busy[pick]
        state.advance(DECISION_STEP_MS)
        state.tick()
        task_id = state.voice_task_by_worker_id[worker_id]
        command, now_ms = cmd.CompleteTask(task_id), state.now_ms
        _, elapsed_ns = _timed(
            profiler if index >= warmup else None,
            lambda: state.engine.apply(command, now_ms),  # noqa: B023 (called at once)
        )
        offered = state.restore_after_free(worker_id, state.engine.take_events())
        if index >= warmup:
            run.record(elapsed_ns)
            run.offered += offered is not None
    return run
