"""Large-state benchmark: a router holding a million waiting tasks restarts, serves reads while
it takes snapshots, and restarts again after a SIGKILL.

    python -m benchmarks.bigstate [--tasks N] [--json PATH] [--snapshots N] [--quiet-s S]
                                  [--get-rate R] [--create-rate R] [--data-dir FOLDER]

1. Builds N waiting tasks (default 1,000,000) and 1,000 offline workers through the core
   (`benchmarks.bigstate_build`, in a process of its own) and stores them as the snapshot of a
   fresh data folder, whose Redis is then stopped.
2. Starts `switchboard serve --data-dir FOLDER --metrics-port 0` on it and times it from the
   process's start to its health saying SERVING: the restart-to-lead time (target < 30 s at 1M),
   with where it went (Redis loading its append-only file, the state recovered, the lease).
3. For a bounded time, sends GetTask at a steady rate (200/s over 4 channels, each for a random
   task among those built) and a trickle of CreateTask (5/s): first `--quiet-s` without a
   snapshot, then `--snapshots` snapshots asked for back to back (SIGUSR1, the next as soon as
   the previous one is saved, as its metrics tell), then `--quiet-s` again. It reports the
   GetTask p50/p99 overall, while a snapshot ran (from its request to the metrics reading that
   saw it saved) and outside them, and the ratio of the two p99s (same run); each snapshot's
   size, background duration and the writer's pause (the router's metrics, read before and
   after each one); the longest loop stall; the leaderships lost (must be 0); and the memory:
   the router's resident set, the most a snapshot's forked child held alone (the pages it
   copied), the embedded Redis, and the machine's available memory at its lowest. No snapshot
   is asked for while the machine has less than 2 GiB available.
4. SIGKILLs the router, starts it again on the same folder (its Redis survived and is adopted;
   the lease of the killed router must expire first, 2 s), and times it to lead again.
5. Times each step of that recovery alone (`benchmarks.bigstate_recovery`, read only, in a
   process of its own): reading the snapshot from Redis, decoding it, rebuilding the engine,
   replaying the journal; `--profile-restore PATH` also profiles the rebuild.

Every process listens on 127.0.0.1 (Redis on a socket in the data folder) and is stopped on
exit; every wait is bounded. The data folder is temporary unless `--data-dir` names one."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console
from rich.table import Table

from benchmarks.bigstate_router import (
    RouterStart,
    logged_longest_stall_s,
    logged_snapshots,
    redis_aof_rewrites,
    redis_log_size,
    start_router,
    stop_router,
)
from benchmarks.bigstate_traffic import CHANNELS_DEFAULT, Traffic
from benchmarks.memwatch import MemoryWatch
from benchmarks.router_metrics import (
    Scrape,
    lease_losses,
    longest_stall_bound_s,
    snapshots_between,
)
from benchmarks.servers import memory_kib
from benchmarks.snapshots import SnapshotTrigger
from router.obs.loop_monitor import STALL_LOGGED_S
from router.store.embedded import EmbeddedRedis

TASKS_DEFAULT = 1_000_000
GET_PER_S_DEFAULT = 200.0
CREATE_PER_S_DEFAULT = 5.0
SNAPSHOTS_DEFAULT = 3
QUIET_S_DEFAULT = 10.0
BUILD_TIMEOUT_S = 3600.0
START_TIMEOUT_S = 600.0
"""Longest wait for a router to lead (a state too large for the target still gets measured)."""
SNAPSHOT_TIMEOUT_S = 600.0
"""Longest wait for one snapshot to be saved."""
BREAKDOWN_TIMEOUT_S = 1800.0
SAVED_POLL_S = 0.25
"""How often the metrics are read while a snapshot is being saved."""
TARGET_LEAD_S = 30.0


@dataclass(frozen=True, slots=True)
class SnapshotRun:
    """One snapshot asked for during the traffic."""

    requested_s: float
    """When SIGUSR1 was sent (perf_counter)."""
    saved_seen_s: float
    """When the metrics first showed it saved (perf_counter)."""
    writer_pause_ms: float | None
    background_s: float | None
    snapshot_bytes: int | None
    loop_stall_max_s: float | None
    """The router's longest loop stall meanwhile (the highest bucket's bound)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "bytes": self.snapshot_bytes,
            "writer_pause_ms": _rounded(self.writer_pause_ms),
            "background_s": _rounded(self.background_s),
            "loop_stall_max_s": self.loop_stall_max_s,
            "request_to_saved_seen_s": round(self.saved_seen_s - self.requested_s, 3),
        }


@dataclass(frozen=True, slots=True)
class TrafficRun:
    """What the traffic phase measured."""

    sent_s: npt.NDArray[np.float64]
    latency_s: npt.NDArray[np.float64]
    get_errors: int
    creates: int
    create_errors: int
    snapshots: list[SnapshotRun]
    snapshots_failed: int
    """Snapshots asked for and not seen saved within SNAPSHOT_TIMEOUT_S."""
    skipped_for_memory: bool
    first: Scrape
    last: Scrape
    duration_s: float


async def drive(
    start: RouterStart,
    watch: MemoryWatch,
    *,
    tasks: int,
    get_per_s: float,
    create_per_s: float,
    snapshots: int,
    quiet_s: float,
) -> TrafficRun:
    """Reads (and a trickle of creations) throughout; snapshots back to back between two quiet
    periods."""
    trigger = SnapshotTrigger(start.process.pid, start.metrics_port)
    first = await trigger.scrape()
    runs: list[SnapshotRun] = []
    failed = 0
    skipped_for_memory = False
    stop = asyncio.Event()
    started_s = time.perf_counter()
    async with Traffic(
        start.address, tasks=tasks, get_per_s=get_per_s, create_per_s=create_per_s
    ) as traffic:
        sender = asyncio.create_task(traffic.run(stop))
        try:
            await asyncio.sleep(quiet_s)
            for _ in range(snapshots):
                if watch.memory_is_low:
                    skipped_for_memory = True
                    break
                before = await trigger.scrape()
                requested_s = time.perf_counter()
                trigger.request()
                after = await trigger.saved_after(
                    before, 1, SNAPSHOT_TIMEOUT_S, poll_s=SAVED_POLL_S
                )
                saved = snapshots_between(before, after)
                if saved.count == 0:
                    failed += 1
                    break
                runs.append(
                    SnapshotRun(requested_s, after.at_s, saved.writer_pause_ms,
                                saved.background_s, saved.snapshot_bytes,
                                longest_stall_bound_s(before, after))
                )  # fmt: skip
            await asyncio.sleep(quiet_s)
        finally:
            stop.set()
            await sender
    last = await trigger.scrape()
    sent_s, latency_s = traffic.timings.arrays()
    timings = traffic.timings
    return TrafficRun(
        sent_s=sent_s,
        latency_s=latency_s,
        get_errors=timings.get_errors,
        creates=timings.creates,
        create_errors=timings.create_errors,
        snapshots=runs,
        snapshots_failed=failed,
        skipped_for_memory=skipped_for_memory,
        first=first,
        last=last,
        duration_s=time.perf_counter() - started_s,
    )


# == the run =======================================================================================


def build(tasks: int, workers: int, data_dir: Path) -> dict[str, Any]:
    """The state, built and stored in `data_dir` by a process of its own."""
    command = [sys.executable, "-m", "benchmarks.bigstate_build", "--tasks", str(tasks),
               "--workers", str(workers), "--data-dir", str(data_dir)]  # fmt: skip
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the build failed:\n{done.stderr}")
    built: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return built


def recovery_breakdown(data_dir: Path, profile_path: Path | None) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.bigstate_recovery",
               "--redis-url", EmbeddedRedis(data_dir).url]  # fmt: skip
    if profile_path is not None:
        command += ["--profile", str(profile_path)]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=BREAKDOWN_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the recovery breakdown failed:\n{done.stderr}")
    if profile_path is not None:
        profile_path.with_suffix(".txt").write_text(done.stderr)
    breakdown: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return breakdown


@contextlib.contextmanager
def data_folder(path: Path | None) -> Iterator[Path]:
    """The run's folder: `path` (which must be new or empty, and is kept), or a temporary one.
    Whatever happens, the Redis server of its data folder is stopped on the way out."""
    with contextlib.ExitStack() as stack:
        if path is None:
            path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sb-bigstate-")))
        elif path.exists() and any(path.iterdir()):
            raise SystemExit(f"{path} is not empty")
        path.mkdir(parents=True, exist_ok=True)
        try:
            yield path
        finally:
            EmbeddedRedis(path / "data").stop()  # nothing to do if it is not running


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    started_s = time.monotonic()
    with data_folder(args.data_dir) as folder:
        data_dir = folder / "data"
        console.print(f"building {args.tasks:,} waiting tasks and {args.workers:,} workers")
        built = build(args.tasks, args.workers, data_dir)
        console.print(f"  built in {built['build_s']} s, snapshot of {built['snapshot_bytes']:,} "
                      f"bytes stored in {built['save_s']} s")  # fmt: skip
        console.print("starting the router on it")
        first_start = start_router(data_dir, folder / "router-start.log", timeout_s=START_TIMEOUT_S)
        restart: RouterStart | None = None
        try:
            console.print(f"  leading after {first_start.to_lead_s:.2f} s")
            at_lead = memory_kib(first_start.process.pid)
            rss_at_lead_mb = at_lead.get("VmRSS", 0) / 1024
            peak_at_lead_mb = at_lead.get("VmHWM", 0) / 1024
            console.print(
                f"traffic: GetTask {args.get_rate:g}/s, CreateTask {args.create_rate:g}/s; "
                f"{args.quiet_s:g} s quiet, {args.snapshots} snapshots, {args.quiet_s:g} s quiet"
            )
            redis_log_at = redis_log_size(data_dir)
            with MemoryWatch(first_start.process.pid) as watch:
                traffic = asyncio.run(
                    drive(
                        first_start,
                        watch,
                        tasks=args.tasks,
                        get_per_s=args.get_rate,
                        create_per_s=args.create_rate,
                        snapshots=args.snapshots,
                        quiet_s=args.quiet_s,
                    )
                )
            router_peak_mb = memory_kib(first_start.process.pid).get("VmHWM", 0) / 1024
            aof_rewrites = redis_aof_rewrites(data_dir, redis_log_at)
            console.print("SIGKILL, and a restart on the same folder")
            first_start.process.send_signal(signal.SIGKILL)
            first_start.process.wait(timeout=30)
            restart = start_router(data_dir, folder / "router-restart.log",
                                   timeout_s=START_TIMEOUT_S)  # fmt: skip
            console.print(f"  leading again after {restart.to_lead_s:.2f} s")
            breakdown = None
            if not args.no_breakdown:
                console.print("timing each step of a recovery")
                breakdown = recovery_breakdown(data_dir, args.profile_restore)
        finally:
            stop_router(first_start)
            if restart is not None:
                stop_router(restart)
        assert restart is not None
        log_snapshots = logged_snapshots(first_start.log_path)
        logged_stall_s = logged_longest_stall_s(first_start.log_path)
    return report(
        args, built, first_start, restart, traffic, watch, breakdown,
        rss_at_lead_mb=rss_at_lead_mb, peak_at_lead_mb=peak_at_lead_mb,
        router_peak_mb=router_peak_mb,
        log_snapshots=log_snapshots, logged_stall_s=logged_stall_s, aof_rewrites=aof_rewrites,
        elapsed_s=time.monotonic() - started_s,
    )  # fmt: skip


# == the report ====================================================================================


def report(
    args: argparse.Namespace,
    built: dict[str, Any],
    first_start: RouterStart,
    restart: RouterStart,
    traffic: TrafficRun,
    watch: MemoryWatch,
    breakdown: dict[str, Any] | None,
    *,
    rss_at_lead_mb: float,
    peak_at_lead_mb: float,
    router_peak_mb: float,
    log_snapshots: list[dict[str, Any]],
    logged_stall_s: float | None,
    aof_rewrites: int,
    elapsed_s: float,
) -> dict[str, Any]:
    during = np.zeros(len(traffic.sent_s), dtype=bool)
    for snap in traffic.snapshots:
        during |= (traffic.sent_s >= snap.requested_s) & (traffic.sent_s <= snap.saved_seen_s)
    latency_ms = traffic.latency_s * 1000
    p99_during = _percentile(latency_ms[during], 99)
    p99_outside = _percentile(latency_ms[~during], 99)
    stall_bound_s = longest_stall_bound_s(traffic.first, traffic.last)
    peaks = watch.peaks
    return {
        "benchmark": "bigstate",
        "tasks": args.tasks,
        "workers": args.workers,
        "build": built,
        "start": first_start.as_json(),
        "restart_after_kill": restart.as_json(),
        "recovery_breakdown": breakdown,
        "get_rate_per_s": args.get_rate,
        "create_rate_per_s": args.create_rate,
        "channels": CHANNELS_DEFAULT,
        "traffic_s": round(traffic.duration_s, 1),
        "get_calls": len(latency_ms),
        "get_errors": traffic.get_errors,
        "creates": traffic.creates,
        "create_errors": traffic.create_errors,
        "get_p50_ms": _rounded(_percentile(latency_ms, 50)),
        "get_p99_ms": _rounded(_percentile(latency_ms, 99)),
        "get_calls_during_snapshots": int(during.sum()),
        "get_p50_ms_during_snapshots": _rounded(_percentile(latency_ms[during], 50)),
        "get_p99_ms_during_snapshots": _rounded(p99_during),
        "get_calls_outside_snapshots": int((~during).sum()),
        "get_p50_ms_outside_snapshots": _rounded(_percentile(latency_ms[~during], 50)),
        "get_p99_ms_outside_snapshots": _rounded(p99_outside),
        "get_p99_ratio_during_vs_outside": (
            round(p99_during / p99_outside, 3)
            if math.isfinite(p99_during) and p99_outside > 0
            else None
        ),
        "snapshot_count": len(traffic.snapshots),
        "snapshots_failed": traffic.snapshots_failed,
        "snapshots_skipped_for_memory": traffic.skipped_for_memory,
        "snapshots": [
            {**snap.as_json(), "get_p99_ms": _rounded(_p99_within(traffic, latency_ms, snap))}
            for snap in traffic.snapshots
        ],
        "snapshots_logged": log_snapshots,
        "redis_aof_rewrites_during_traffic": aof_rewrites,
        "loop_stall_max_bound_s": stall_bound_s,
        "loop_stall_max_logged_s": logged_stall_s,
        "lease_losses": lease_losses(traffic.last),
        "router_rss_mb_at_lead": round(rss_at_lead_mb, 1),
        "router_rss_mb_peak_by_lead": round(peak_at_lead_mb, 1),
        "router_rss_mb_peak": round(router_peak_mb, 1),
        "snapshot_child_private_mb_peak": round(peaks.child_private_mb, 1),
        "snapshot_child_rss_mb_peak": round(peaks.child_rss_mb, 1),
        "redis_rss_mb_peak": round(peaks.redis_rss_mb, 1),
        "machine_available_mb_min": round(peaks.available_min_mb, 1),
        "cores": os.cpu_count(),
        "elapsed_s": round(elapsed_s, 1),
    }


def _p99_within(
    traffic: TrafficRun, latency_ms: npt.NDArray[np.float64], snap: SnapshotRun
) -> float:
    inside = (traffic.sent_s >= snap.requested_s) & (traffic.sent_s <= snap.saved_seen_s)
    return _percentile(latency_ms[inside], 99)


def targets(result: dict[str, Any]) -> list[tuple[str, Any, str, bool]]:
    lead = result["start"]["to_lead_s"]
    relead = result["restart_after_kill"]["to_lead_s"]
    return [
        ("restart to lead (s)", lead, f"< {TARGET_LEAD_S:g}", lead < TARGET_LEAD_S),
        ("restart to lead after SIGKILL (s)", relead, f"< {TARGET_LEAD_S:g}",
         relead < TARGET_LEAD_S),
        ("lease losses", result["lease_losses"], "== 0", result["lease_losses"] == 0),
        ("GetTask errors", result["get_errors"], "== 0", result["get_errors"] == 0),
        ("snapshots saved", result["snapshot_count"], "> 0", result["snapshot_count"] > 0),
    ]  # fmt: skip


def print_report(console: Console, result: dict[str, Any]) -> None:
    figures = Table(title=f"bigstate: {result['tasks']:,} waiting tasks", title_justify="left")
    for name in ("figure", "value"):
        figures.add_column(name, justify="left" if name == "figure" else "right")
    build, start, restart = result["build"], result["start"], result["restart_after_kill"]
    rows: list[tuple[str, Any]] = [
        ("build through the core (s)", build["build_s"]),
        ("snapshot size (bytes)", f"{build['snapshot_bytes']:,}"),
        ("  encoded in one process (s)", build["encode_s"]),
        ("  stored in Redis, 512 KiB pieces, fsynced (s)", build["save_s"]),
        ("start to lead (s)", start["to_lead_s"]),
        ("  the router's CPU time by then (s)", start["cpu_s_to_lead"]),
        ("  Redis loading its append-only file (s)", start["redis_aof_load_s"]),
        ("  start to the state recovered (s)", start["to_recovered_s"]),
        ("restart to lead after SIGKILL (s)", restart["to_lead_s"]),
        ("  the router's CPU time by then (s)", restart["cpu_s_to_lead"]),
        ("  restart to the state recovered (s)", restart["to_recovered_s"]),
    ]
    if result["recovery_breakdown"]:
        steps = result["recovery_breakdown"]
        rows += [
            ("recovery: read the snapshot from Redis (s)", steps["read_s"]),
            ("recovery: read the journal after it (s)", steps["read_journal_s"]),
            ("recovery: decode it (s)", steps["decode_s"]),
            ("recovery: rebuild the engine (s)", steps["rebuild_s"]),
            ("recovery: replay the journal (s)", steps["replay_s"]),
            ("recovery: gc.freeze (s)", steps["freeze_s"]),
        ]
    rows += [
        ("GetTask calls / errors", f"{result['get_calls']:,} / {result['get_errors']}"),
        ("GetTask p50 / p99 (ms)", f"{result['get_p50_ms']} / {result['get_p99_ms']}"),
        ("GetTask p50 / p99 during snapshots (ms)",
         f"{result['get_p50_ms_during_snapshots']} / {result['get_p99_ms_during_snapshots']}"),
        ("GetTask p50 / p99 outside snapshots (ms)",
         f"{result['get_p50_ms_outside_snapshots']} / {result['get_p99_ms_outside_snapshots']}"),
        ("GetTask p99 during ÷ outside snapshots", result["get_p99_ratio_during_vs_outside"]),
        ("Redis append-only file rewrites meanwhile", result["redis_aof_rewrites_during_traffic"]),
        ("longest loop stall (s, bucket bound)", result["loop_stall_max_bound_s"]),
        (f"longest loop stall logged (s, >= {STALL_LOGGED_S:g})",
         result["loop_stall_max_logged_s"]),
        ("lease losses", result["lease_losses"]),
        ("router RSS at lead / peak by then / peak (MB)",
         f"{result['router_rss_mb_at_lead']:,} / {result['router_rss_mb_peak_by_lead']:,} / "
         f"{result['router_rss_mb_peak']:,}"),
        ("snapshot child: own pages at most (MB)", f"{result['snapshot_child_private_mb_peak']:,}"),
        ("embedded Redis RSS at most (MB)", f"{result['redis_rss_mb_peak']:,}"),
        ("machine memory available at least (MB)", f"{result['machine_available_mb_min']:,}"),
    ]  # fmt: skip
    for name, value in rows:
        figures.add_row(name, "-" if value is None else str(value))
    console.print(figures)
    snapshots = Table(title="snapshots, back to back", title_justify="left")
    for name in ("#", "bytes", "writer pause ms", "background s", "request → seen saved s",
                 "loop stall ≤ s", "GetTask p99 ms"):  # fmt: skip
        snapshots.add_column(name, justify="right")
    for index, snap in enumerate(result["snapshots"], start=1):
        snapshots.add_row(
            str(index), f"{snap['bytes']:,}", str(snap["writer_pause_ms"]),
            str(snap["background_s"]), str(snap["request_to_saved_seen_s"]),
            str(snap["loop_stall_max_s"]), str(snap["get_p99_ms"]),
        )  # fmt: skip
    console.print(snapshots)
    if result["snapshots_skipped_for_memory"]:
        console.print("warning: snapshots stopped: the machine had less than 2 GiB available")
    if result["snapshots_failed"]:
        console.print(f"warning: a snapshot was not seen saved within {SNAPSHOT_TIMEOUT_S:g} s")
    console.print("targets:")
    for name, value, target, met in targets(result):
        console.print(f"  {name:<36} {value!s:>10} {target:>6}  {'PASS' if met else 'MISS'}")


def _percentile(values: npt.NDArray[np.float64], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def _rounded(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(value, 3)


# == the command ===================================================================================


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bigstate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tasks", type=int, default=TASKS_DEFAULT,
                        help="waiting tasks (default: %(default)s)")  # fmt: skip
    parser.add_argument("--workers", type=int, default=1_000,
                        help="offline workers (default: %(default)s)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--get-rate", type=float, default=GET_PER_S_DEFAULT, metavar="PER_S",
                        help="GetTask calls per second (default: %(default)s)")  # fmt: skip
    parser.add_argument("--create-rate", type=float, default=CREATE_PER_S_DEFAULT,
                        metavar="PER_S",
                        help="CreateTask calls per second (default: %(default)s)")  # fmt: skip
    parser.add_argument("--snapshots", type=int, default=SNAPSHOTS_DEFAULT,
                        help="snapshots, back to back (default: %(default)s)")  # fmt: skip
    parser.add_argument("--quiet-s", type=float, default=QUIET_S_DEFAULT, metavar="SECONDS",
                        help="traffic without a snapshot before and after them "
                        "(default: %(default)s)")  # fmt: skip
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="FOLDER",
        help="work in this new folder and keep it (default: a temporary one)",
    )
    parser.add_argument(
        "--no-breakdown",
        action="store_true",
        help="do not time the steps of a recovery after the restart",
    )
    parser.add_argument("--profile-restore", type=Path, metavar="PATH",
                        help="cProfile the rebuild of the engine in the breakdown "
                        "(statistics to PATH, the heaviest functions to PATH.txt)")  # fmt: skip
    args = parser.parse_args(argv)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    result = run(args, console)
    print_report(console, result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
