"""The large-state benchmark's router: `switchboard serve` started on a data folder, timed from
the process's start to its health saying SERVING (the restart-to-lead time), with where that
time went as its logs tell it: the embedded Redis loading its append-only file (`redis.log`),
the router recovering the state (its "recovered" line), then taking the lease."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.servers import (
    metrics_port_in,
    process_cpu_s,
    start_process_line,
    stop_process,
    wait_until_serving,
)

_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")
_AOF_LOADED = re.compile(r"DB loaded from append only file: ([\d.]+) seconds")
_SNAPSHOT_LINE = re.compile(r"snapshot of (\d+) bytes through (\S+) in ([\d.]+) s")
_STALL_LINE = re.compile(r"the event loop stalled for ([\d.]+) s")
_AOF_REWRITE = "Background append only file rewriting started"


@dataclass(frozen=True, slots=True)
class RouterStart:
    """A router started on a data folder, and how long it took to lead."""

    process: subprocess.Popen[str]
    address: str
    metrics_port: int
    log_path: Path
    to_lead_s: float
    """From the process's start to its health saying SERVING."""
    cpu_s_to_lead: float
    """CPU seconds the router process (its threads, not its Redis) had used by then: unlike
    the time, it hardly depends on what else the machine runs."""
    to_first_line_s: float
    """From the process's start to its first line (printed once the state is recovered and
    gRPC listens)."""
    to_recovered_s: float | None
    """From the process's start to its log's "recovered" line (the state is in memory)."""
    redis_aof_load_s: float | None
    """How long the embedded Redis took to load its append-only file, when this router started
    it (None when it adopted a running one)."""

    def as_json(self) -> dict[str, Any]:
        return {
            "to_lead_s": round(self.to_lead_s, 3),
            "cpu_s_to_lead": round(self.cpu_s_to_lead, 3),
            "to_first_line_s": round(self.to_first_line_s, 3),
            "to_recovered_s": _rounded(self.to_recovered_s),
            "redis_aof_load_s": _rounded(self.redis_aof_load_s),
        }


def start_router(data_dir: Path, log_path: Path, *, timeout_s: float) -> RouterStart:
    """Starts `switchboard serve` on `data_dir` (127.0.0.1, free ports, INFO logs to
    `log_path`) and returns once it leads, or raises RuntimeError after `timeout_s`."""
    command = [sys.executable, "-m", "router.cli", "serve", "--host", "127.0.0.1",
               "--port", "0", "--metrics-port", "0", "--data-dir", str(data_dir),
               "--log-level", "INFO"]  # fmt: skip
    redis_log_start = redis_log_size(data_dir)
    started_wall_s = time.time()
    started_s = time.perf_counter()
    with log_path.open("a") as log:
        process, line = start_process_line(command, stderr=log, timeout_s=timeout_s)
    first_line_s = time.perf_counter() - started_s
    address = re.search(r"serving on (\S+)", line)
    metrics_port = metrics_port_in(line)
    assert address is not None and metrics_port is not None, line
    wait_until_serving(process, address.group(1), timeout_s - first_line_s)
    to_lead_s = time.perf_counter() - started_s
    cpu_s = process_cpu_s(process.pid)
    return RouterStart(
        process=process,
        address=address.group(1),
        metrics_port=metrics_port,
        log_path=log_path,
        to_lead_s=to_lead_s,
        cpu_s_to_lead=cpu_s,
        to_first_line_s=first_line_s,
        to_recovered_s=_recovered_after(log_path, started_wall_s),
        redis_aof_load_s=_aof_load_s(data_dir / "redis.log", redis_log_start),
    )


def stop_router(start: RouterStart) -> None:
    with contextlib.suppress(OSError):
        stop_process(start.process)


def logged_snapshots(log_path: Path) -> list[dict[str, Any]]:
    """The router's "snapshot of N bytes through ID in S s" lines."""
    found = []
    for match in _SNAPSHOT_LINE.finditer(log_path.read_text()):
        found.append(
            {"bytes": int(match.group(1)), "through_id": match.group(2),
             "seconds": float(match.group(3))}
        )  # fmt: skip
    return found


def logged_longest_stall_s(log_path: Path) -> float | None:
    """The longest loop stall the router logged (it logs those of `STALL_LOGGED_S` or more)."""
    stalls = [float(m.group(1)) for m in _STALL_LINE.finditer(log_path.read_text())]
    return max(stalls, default=None)


def redis_log_size(data_dir: Path) -> int:
    """Where the data folder's Redis log ends now (to read what it logs from here on)."""
    log = data_dir / "redis.log"
    return log.stat().st_size if log.exists() else 0


def redis_aof_rewrites(data_dir: Path, offset: int) -> int:
    """Append-only file rewrites the data folder's Redis started since `offset` of its log
    (it forks to rewrite the file once it has doubled since the last rewrite or start)."""
    log = data_dir / "redis.log"
    if not log.exists():
        return 0
    with log.open() as text:
        text.seek(offset)
        return text.read().count(_AOF_REWRITE)


def _recovered_after(log_path: Path, started_wall_s: float) -> float | None:
    for line in log_path.read_text().splitlines():
        match = _LOG_TIME.match(line)
        if match and " recovered " in line:
            at_s = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at_s >= started_wall_s - 1:
                return max(0.0, at_s - started_wall_s)
    return None


def _aof_load_s(redis_log: Path, offset: int) -> float | None:
    if not redis_log.exists():
        return None
    with redis_log.open() as log:
        log.seek(offset)
        match = _AOF_LOADED.search(log.read())
    return float(match.group(1)) if match else None


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
