"""Server processes for the benchmarks: starting one and waiting until it serves; for the load
benchmark, the router and the null router on 127.0.0.1, each stopped on exit, and the CPU time
they (and the whole machine) use, read from /proc."""

from __future__ import annotations

import contextlib
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

SERVER_START_TIMEOUT_S = 30.0


def is_serving(address: str) -> bool:
    """Whether the server's health says SERVING (a router does once it leads)."""
    with contextlib.suppress(grpc.RpcError), grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    return False


def start_process(
    command: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Starts a server that prints `... serving on HOST:PORT` first; returns it and the address
    as soon as that line comes (it may not serve yet)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    assert process.stdout is not None
    # Never block on a server that hangs before its first line.
    ready, _, _ = select.select([process.stdout], [], [], SERVER_START_TIMEOUT_S)
    match = re.search(r"serving on (\S+)", process.stdout.readline() if ready else "")
    if not match:
        _stop(process)
        raise RuntimeError(f"{' '.join(command)} did not start")
    return process, match.group(1)


def _start(
    command: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """`start_process`, then waits until the server serves."""
    process, address = start_process(command, env)
    deadline_s = time.monotonic() + SERVER_START_TIMEOUT_S
    while not is_serving(address):  # a durable router serves once it holds the lease
        if time.monotonic() > deadline_s or process.poll() is not None:
            _stop(process)
            raise RuntimeError(f"{address} did not start serving")
        time.sleep(0.05)
    return process, address


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass(frozen=True, slots=True)
class Server:
    """A server process started here."""

    address: str
    pid: int

    def cpu_s(self) -> float:
        """CPU seconds the process and its children (the private Redis) have used so far."""
        return _cpu_s(self.pid) + sum(_cpu_s(child) for child in _children(self.pid))


_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text[text.rindex(")") + 2 :].split()  # after the command, which may hold spaces


def _cpu_s(pid: int) -> float:
    fields = _stat_fields(pid)  # fields[11], [12]: utime, stime (man 5 proc, from field 3)
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS_PER_S if fields else 0.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat_fields(int(entry.name))
        if fields and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def machine_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat)."""
    with Path("/proc/stat").open() as stat:
        fields = stat.readline().split()  # cpu user nice system idle iowait irq softirq steal
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7, 8)) / _CLOCK_TICKS_PER_S


def can_read_cpu() -> bool:
    """Whether server CPU time can be read (Linux /proc)."""
    return bool(_stat_fields(os.getpid()))


@contextlib.contextmanager
def switchboard_router(
    data_dir: Path, *, durable: bool, profile_path: Path | None = None
) -> Iterator[Server]:
    """A `switchboard serve` process on 127.0.0.1 (durable: a private Redis in `data_dir`);
    yields its address once it leads. With `profile_path`, it runs under cProfile, which writes
    its statistics there when the process is stopped."""
    command = [sys.executable]
    if profile_path is not None:
        command += ["-m", "cProfile", "-o", str(profile_path)]
    command += ["-m", "router.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                "--metrics-port", "-1", "--log-level", "ERROR"]  # fmt: skip
    command += ["--data-dir", str(data_dir)] if durable else ["--in-memory"]
    process, address = _start(command)
    try:
        yield Server(address, process.pid)
    finally:
        _stop(process)


@contextlib.contextmanager
def null_router() -> Iterator[Server]:
    """A `benchmarks.null_router` process on 127.0.0.1."""
    command = [sys.executable, "-m", "benchmarks.null_router", "--host", "127.0.0.1", "--port", "0"]
    process, address = _start(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        yield Server(address, process.pid)
    finally:
        _stop(process)
