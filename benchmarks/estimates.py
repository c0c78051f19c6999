"""How honest is the estimated wait? The real engine, driven in virtual time, against the waits
that actually happened.

    python -m benchmarks.estimates [--quick] [--json PATH] [--seed N]

A single-skill queue with `agents` agents (one voice call each) takes Poisson arrivals at a given
offered load (utilisation rho = arrival rate x mean handle time / agents) and exponential handle
times; every offer is accepted at once. For each task, the estimate `CreateTask` returned is
compared with its actual wait (assignment time - creation time). Reported per load: how many
tasks waited, their mean actual wait, the mean absolute error (MAE) and the bias (mean of
estimate - actual) of the estimates of tasks that waited, the MAE relative to the mean wait, and
the share of estimates within 30 s of the truth. A task offered at once is estimated 0 and waits
0 (it is not counted). The first 10% of tasks warm the queue up (its handle-time samples).

The estimate is (position + 1) x h / s (see docs/policies.md): exact in expectation for this
M/M/c queue, so the error measured here is the irreducible spread of exponential service times
plus the error of the sampled handle time. The baseline, computed on the same tasks in the same
run, is the router's former method and the usual one: (position + 1) x the mean time between the
queue's latest 64 assignments (`baseline_mae_s`).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import random
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.core import commands as cmd
from router.core.engine import CreatedTask, Engine
from router.core.events import OfferCreated, TaskAssigned
from router.core.model import QueueConfig, TaskSpec, WorkerProfile

START_MS = 1_800_000_000_000
WARM_UP_SHARE = 0.1
GOOD_ENOUGH_S = 30.0


@dataclass(frozen=True)
class Case:
    agents: int
    load: float
    """Offered load per agent (utilisation), below 1."""
    handle_s: float
    tasks: int


def simulate(case: Case, seed: int) -> dict[str, Any]:
    """One run of a case: every task's estimate and actual wait, summarised."""
    rng = random.Random(seed)
    engine = Engine()
    engine.apply(cmd.UpsertQueue(QueueConfig("support")), START_MS)
    for i in range(case.agents):
        profile = WorkerProfile(f"a{i}", capacity_by_channel={"voice": 1}, activity="available")
        engine.apply(cmd.UpsertWorker(profile), START_MS)
    engine.take_events()
    arrival_rate_per_s = case.load * case.agents / case.handle_s
    # Future events: (time_ms, sequence, kind, task id); kinds "arrive" and "complete".
    pending: list[tuple[int, int, str, str]] = []
    sequence = 0
    now_ms = START_MS
    for _ in range(case.tasks):
        now_ms += max(1, round(rng.expovariate(arrival_rate_per_s) * 1000))
        sequence += 1
        pending.append((now_ms, sequence, "arrive", ""))
    heapq.heapify(pending)
    estimates: dict[str, int | None] = {}
    baseline: dict[str, int | None] = {}
    order: list[str] = []
    waits_ms: dict[str, int] = {}
    while pending:
        time_ms, _, kind, task_id = heapq.heappop(pending)
        if kind == "arrive":
            created: CreatedTask = engine.apply(
                cmd.CreateTask(TaskSpec(channel="voice", queue_id="support")), time_ms
            )
            estimates[created.task.task_id] = created.estimated_wait_ms
            baseline[created.task.task_id] = _assignment_rate_estimate_ms(engine, created)
            order.append(created.task.task_id)
        else:
            engine.apply(cmd.CompleteTask(task_id), time_ms)
        # Every offer is accepted at once; each accepted call ends after its handle time.
        while events := engine.take_events():
            for event in events:
                if isinstance(event, OfferCreated):
                    reservation = event.reservation
                    engine.apply(
                        cmd.AcceptOffer(reservation.worker_id, reservation.reservation_id),
                        time_ms,
                    )
                elif isinstance(event, TaskAssigned):
                    waits_ms[event.task.task_id] = event.wait_ms
                    handle_ms = max(1, round(rng.expovariate(1 / case.handle_s) * 1000))
                    sequence += 1
                    heapq.heappush(
                        pending, (time_ms + handle_ms, sequence, "complete", event.task.task_id)
                    )
    measured = order[int(len(order) * WARM_UP_SHARE) :]
    waited = [t for t in measured if waits_ms[t] > 0]
    known = [t for t in waited if estimates[t] is not None]
    errors_s = [((estimates[t] or 0) - waits_ms[t]) / 1000 for t in known]
    baseline_known = [t for t in waited if baseline[t] is not None]
    baseline_mae_s = (
        statistics.fmean(abs((baseline[t] or 0) - waits_ms[t]) / 1000 for t in baseline_known)
        if baseline_known
        else math.nan
    )
    mean_wait_s = statistics.fmean(waits_ms[t] / 1000 for t in waited) if waited else 0.0
    mae_s = statistics.fmean(abs(e) for e in errors_s) if errors_s else math.nan
    return {
        "agents": case.agents,
        "load": case.load,
        "handle_s": case.handle_s,
        "tasks": len(measured),
        "waited": len(waited),
        "estimate_known_share": len(known) / len(waited) if waited else math.nan,
        "mean_wait_s": round(mean_wait_s, 2),
        "mae_s": round(mae_s, 2),
        "bias_s": round(statistics.fmean(errors_s), 2) if errors_s else math.nan,
        "relative_mae": round(mae_s / mean_wait_s, 3) if mean_wait_s else math.nan,
        "baseline_mae_s": round(baseline_mae_s, 2),
        "mae_ratio_to_baseline": round(mae_s / baseline_mae_s, 3),
        "within_30s_share": round(sum(abs(e) <= GOOD_ENOUGH_S for e in errors_s) / len(errors_s), 3)
        if errors_s
        else math.nan,
    }


def _assignment_rate_estimate_ms(engine: Engine, created: CreatedTask) -> int | None:
    """The baseline: (position + 1) x the mean interval between the latest assignments."""
    if created.estimated_wait_ms in (None, 0):
        return created.estimated_wait_ms
    samples = engine.counters[created.task.queue_id].assigned_ms
    if len(samples) < 2 or samples[-1] <= samples[0]:
        return None
    interval_ms = (samples[-1] - samples[0]) / (len(samples) - 1)
    return round((created.queue_position + 1) * interval_ms)


def cases(quick: bool) -> list[Case]:
    tasks = 4_000 if quick else 40_000
    return [Case(agents=20, load=load, handle_s=180.0, tasks=tasks) for load in (0.8, 0.9, 0.95)]


def print_table(results: Sequence[dict[str, Any]]) -> None:
    print(
        f"{'agents':>6} {'load':>5} {'tasks':>7} {'waited':>7} {'mean wait s':>12} "
        f"{'MAE s':>8} {'bias s':>8} {'MAE/wait':>9} {'within 30 s':>12} "
        f"{'baseline MAE s':>15} {'MAE/baseline':>13}"
    )
    for r in results:
        print(
            f"{r['agents']:>6} {r['load']:>5.2f} {r['tasks']:>7} {r['waited']:>7} "
            f"{r['mean_wait_s']:>12.1f} {r['mae_s']:>8.1f} {r['bias_s']:>8.1f} "
            f"{r['relative_mae']:>9.2f} {r['within_30s_share']:>12.0%} "
            f"{r['baseline_mae_s']:>15.1f} {r['mae_ratio_to_baseline']:>13.2f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Estimated waits against the waits that happened (virtual time, real engine)."
    )
    parser.add_argument("--quick", action="store_true", help="4,000 tasks per load (seconds)")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    results = [simulate(case, args.seed) for case in cases(args.quick)]
    print_table(results)
    if args.json:
        document = {"benchmark": "estimates", "seed": args.seed, "cases": results}
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
