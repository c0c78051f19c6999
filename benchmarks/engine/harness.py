"""One case of the engine benchmark: its size, its state built, both events measured (engine and
baseline) into the JSON fields, in this process or a fresh one."""

from __future__ import annotations

import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.engine.baseline import compare_task_arrives, compare_worker_frees
from benchmarks.engine.measurement import Run, measure_task_arrives, measure_worker_frees
from benchmarks.engine.workload import (
    POLICY_RULES,
    PolicySteadyState,
    SteadyState,
)
from benchmarks.workload import SKILL_COUNT


def build_state(
    size: CaseSize, seed: int, progress: Callable[[str], None] = lambda _: None
) -> SteadyState:
    """The steady state of a case, built."""
    kind = PolicySteadyState if size.policy else SteadyState
    state = kind(workers=size.workers, waiting_tasks=size.waiting_tasks, seed=seed)
    state.build(progress)
    return state


# == one case ======================================================================================


@dataclass(frozen=True, slots=True)
class CaseSize:
    workers: int
    waiting_tasks: int
    decisions: int
    baseline_decisions: int
    """Ignored in the policy case, which has no baseline."""
    policy: bool = False

    def label(self) -> str:
        policy = ", through the routing policy" if self.policy else ""
        return f"{self.workers:,} workers x {self.waiting_tasks:,} waiting{policy}"


def rss_mb() -> float:
    """The process's resident memory now."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def full_collection_ms() -> float:
    """How long one full garbage collection takes with this state in memory: the pause the
    single writer takes whenever Python decides to collect the oldest generation."""
    started = time.perf_counter_ns()
    gc.collect()
    return (time.perf_counter_ns() - started) / 1e6


def run_case(
    size: CaseSize, *, seed: int = 7, progress: Callable[[str], None] = lambda _: None
) -> list[dict[str, Any]]:
    """Builds the steady state of one size and measures both events, engine and baseline (no
    baseline in the policy case: its fields are None). Returns one result per event, in the
    shape of the JSON `cases`."""
    state = build_state(size, seed, progress)
    memory_mb = rss_mb()
    gc_full_ms = full_collection_ms()  # before the baseline's copy of the state exists
    waiting = state.waiting_count()
    policy_fields: dict[str, dict[str, Any]] = {}
    progress(f"built in {state.times.total_s:.1f} s, {memory_mb:,.0f} MB; measuring")
    engine_runs: dict[str, Run] = {}
    for event, measure in (
        ("task_arrives", measure_task_arrives),
        ("worker_frees", measure_worker_frees),
    ):
        policy_fields[event] = {"policy": state.policy}
        if isinstance(state, PolicySteadyState):
            policy_fields[event] |= {
                "policy_filters": len(POLICY_RULES),
                "policy_steps": 3,
                "backlog_by_step": state.backlog_by_step(),
                "backlog_by_route": state.backlog_by_route(),
                "backlog_flow_per_s": round(1000 / state.flow_step_ms, 1),
            }
        engine_runs[event] = measure(state, size.decisions)
    baseline_runs: dict[str, Run] = {}
    if not state.policy:
        progress("measuring the baseline")
        baseline_runs = {
            "task_arrives": compare_task_arrives(state, size.baseline_decisions),
            "worker_frees": compare_worker_frees(state, size.baseline_decisions),
        }
    results = []
    for event, run in engine_runs.items():
        engine_rate = run.decisions_per_s()
        results.append(
            {
                "workers": size.workers,
                "skills": SKILL_COUNT,
                "waiting_tasks": waiting,
                "event": event,
                **policy_fields[event],
                "decisions": run.decisions,
                "decisions_per_s": round(engine_rate, 1),
                "p50_ms": round(run.percentile_ms(50), 4),
                "p99_ms": round(run.percentile_ms(99), 4),
                "mean_ms": round(run.mean_ms(), 4),
                "max_ms": round(max(run.latencies_ns) / 1e6, 4),
                "offered_share": round(run.offered / run.decisions, 4),
                **baseline_fields(event, engine_rate, baseline_runs.get(event)),
                "task_types": len(state.catalog),
                "rss_mb": round(memory_mb, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "setup_s": round(state.times.total_s, 2),
                "setup_backlog_s": round(state.times.backlog_s, 2),
                "setup_workers_s": round(state.times.workers_s, 2),
                "setup_fixup_tasks": state.times.fixup_tasks,
                "gc_full_ms": round(gc_full_ms, 1),
            }
        )
    return results


BASELINE_FIELDS = (
    "baseline_decisions",
    "baseline_decisions_per_s",
    "baseline_p50_ms",
    "baseline_p99_ms",
    "speedup_vs_baseline",
    "agreement",
    "agreement_exact",
    "eligible_workers_mean",
)
"""The result fields that come from the baseline (all None when it did not run)."""


def baseline_fields(event: str, engine_rate: float, baseline: Run | None) -> dict[str, Any]:
    if baseline is None:
        return dict.fromkeys(BASELINE_FIELDS)
    baseline_rate = baseline.decisions_per_s()
    return {
        "baseline_decisions": baseline.decisions,
        "baseline_decisions_per_s": round(baseline_rate, 1),
        "baseline_p50_ms": round(baseline.percentile_ms(50), 4),
        "baseline_p99_ms": round(baseline.percentile_ms(99), 4),
        "speedup_vs_baseline": round(engine_rate / baseline_rate, 2),
        "agreement": round(baseline.agreed / baseline.compared, 4),
        "agreement_exact": round(baseline.agreed_exactly / baseline.compared, 4),
        "eligible_workers_mean": (
            round(baseline.candidates_total / baseline.decisions, 1)
            if event == "task_arrives"
            else None
        ),
    }


# == the runs ======================================================================================

QUICK_CASES = (
    CaseSize(10_000, 100_000, decisions=2_000, baseline_decisions=200),
    CaseSize(10_000, 100_000, decisions=2_000, baseline_decisions=0, policy=True),
)
FULL_CASES = (
    *(
        CaseSize(workers, waiting, decisions=3_000, baseline_decisions=200)
        for workers in (1_000, 10_000, 100_000)
        for waiting in (10_000, 100_000)
    ),
    CaseSize(100_000, 1_000_000, decisions=1_000, baseline_decisions=50),
    CaseSize(10_000, 100_000, decisions=3_000, baseline_decisions=0, policy=True),
)
"""Every size of the full run; the 1M one is the memory check, the last the policy case."""


def run_case_in_subprocess(size: CaseSize, seed: int) -> list[dict[str, Any]]:
    """Runs one case in a fresh interpreter, so that its memory figure is its own."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "case.json"
        command = [
            sys.executable,
            "-m",
            "benchmarks.engine",
            "--one-case",
            f"{size.workers},{size.waiting_tasks},{size.decisions},{size.baseline_decisions},"
            f"{int(size.policy)}",
            "--seed",
            str(seed),
            "--one-case-out",
            str(out),
        ]
        subprocess.run(command, check=True, cwd=Path(__file__).resolve().parents[2])
        results: list[dict[str, Any]] = json.loads(out.read_text())
        return results
