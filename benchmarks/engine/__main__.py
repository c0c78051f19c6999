"""`python -m benchmarks.engine`: see the package's docstring."""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

import benchmarks.engine
from benchmarks.engine.harness import (
    FULL_CASES,
    QUICK_CASES,
    CaseSize,
    build_state,
    run_case,
    run_case_in_subprocess,
)
from benchmarks.engine.measurement import measure_task_arrives, measure_worker_frees
from benchmarks.engine.report import print_table, targets, vs_plain


def profile(size: CaseSize, seed: int, top: int) -> None:
    """cProfile of the timed calls only (the restores between decisions are not profiled)."""
    state = build_state(size, seed, _progress)
    for event, measure in (
        ("task_arrives", measure_task_arrives),
        ("worker_frees", measure_worker_frees),
    ):
        profiler = cProfile.Profile()
        run = measure(state, size.decisions, profiler=profiler)
        stats = pstats.Stats(profiler)
        rows = []
        for (filename, line, function), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
            where = f"{_short(filename)}:{line}({function})"
            rows.append((tottime, cumtime, calls, where))
        rows.sort(reverse=True)
        total_s = sum(row[0] for row in rows)
        print(
            f"\n== {event}: {size.label()}, {run.decisions} decisions, "
            f"{total_s / run.decisions * 1e6:.1f} us/decision under cProfile "
            f"({run.mean_ms() * 1e3:.1f} us mean with profiler on) =="
        )
        print(f"{'self us/dec':>11} {'cum us/dec':>10} {'calls/dec':>9}  function")
        for tottime, cumtime, calls, where in rows[:top]:
            print(
                f"{tottime / run.decisions * 1e6:11.2f} {cumtime / run.decisions * 1e6:10.2f} "
                f"{calls / run.decisions:9.2f}  {where}"
            )


def _short(filename: str) -> str:
    for marker in ("/router/", "/benchmarks/", "/site-packages/"):
        if marker in filename:
            return filename[filename.index(marker) + 1 :]
    return filename


def _progress(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.engine",
        description=benchmarks.engine.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only 10k workers x 100k waiting tasks (under a minute)",
    )
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--profile",
        nargs="?",
        const="plain",
        choices=("plain", "policy"),
        help="profile the decisions at 10k workers x 100k waiting tasks, of the plain case "
        "(the default) or of the policy case",
    )
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument("--one-case", help=argparse.SUPPRESS)
    parser.add_argument("--one-case-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one_case:
        workers, waiting, decisions, baseline, policy = (int(x) for x in args.one_case.split(","))
        size = CaseSize(workers, waiting, decisions, baseline, policy=bool(policy))
        results = run_case(size, seed=args.seed, progress=_progress)
        args.one_case_out.write_text(json.dumps(results))
        return 0
    if args.profile:
        policy = args.profile == "policy"
        profile(next(c for c in QUICK_CASES if c.policy == policy), args.seed, args.profile_top)
        return 0

    started = time.perf_counter()
    cases: list[dict[str, Any]] = []
    for size in QUICK_CASES if args.quick else FULL_CASES:
        _progress(f"case {size.label()}")
        cases += run_case_in_subprocess(size, args.seed)
    for case in cases:
        if case["policy"]:
            case["decisions_per_s_vs_plain"] = vs_plain(cases, case)
    checks = targets(cases)
    print_table(cases, checks)
    elapsed_s = time.perf_counter() - started
    print(f"{len(cases)} results in {elapsed_s:.1f} s")
    if args.json:
        report = {
            "benchmark": "engine",
            "command": "python -m benchmarks.engine" + (" --quick" if args.quick else ""),
            "seed": args.seed,
            "machine": {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
            },
            "elapsed_s": round(elapsed_s, 1),
            "cases": cases,
            "targets": checks,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
