"""Server processes for the benchmarks: starting one and waiting until it serves; for the load
benchmark, the router and the null router on 127.0.0.1, each stopped on exit, and the CPU time
and memory they (and the whole machine) use, read from /proc."""

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
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.credentials import LocalCredentials
from router.privacy.keyring import KEYRING_ENV, KEYRING_FILE_ENV, Keyring

SERVER_START_TIMEOUT_S = 30.0
SNAPSHOTS_ON_REQUEST_ONLY = 10**12
RUN_KEYRING_JSON = Keyring.generate().to_json()
"""The keyring of the routers this run starts (a standby must open what its leader sealed)."""
"""`--snapshot-every` for a router whose snapshots a benchmark triggers itself (SIGUSR1): so
many journaled commands that none falls due on its own during a run."""


def is_serving(address: str, tls_ca: bytes | None = None) -> bool:
    """Whether the server's health says SERVING (a router does once it leads); over TLS,
    trusting `tls_ca`, when given."""
    channel = (
        grpc.insecure_channel(address)
        if tls_ca is None
        else grpc.secure_channel(address, grpc.ssl_channel_credentials(tls_ca))
    )
    with contextlib.suppress(grpc.RpcError), channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=2)
        return reply.status == health_pb2.HealthCheckResponse.SERVING
    return False


def start_process(
    command: list[str], env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Starts a server that prints `... serving on HOST:PORT` first; returns it and the address
    as soon as that line comes (it may not serve yet)."""
    process, line = start_process_line(command, env)
    return process, _address_in(line)


def start_process_line(
    command: list[str],
    env: dict[str, str] | None = None,
    *,
    stderr: IO[Any] | None = None,
    timeout_s: float = SERVER_START_TIMEOUT_S,
) -> tuple[subprocess.Popen[str], str]:
    """Starts a server that prints `... serving on HOST:PORT ...` first (its standard error
    to `stderr`, inherited by default); returns it and that first line, within `timeout_s`."""
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=router_env(env)
    )
    assert process.stdout is not None
    # Never block on a server that hangs before its first line.
    ready, _, _ = select.select([process.stdout], [], [], timeout_s)
    line = process.stdout.readline() if ready else ""
    if not re.search(r"serving on (\S+)", line):
        stop_process(process)
        raise RuntimeError(f"{' '.join(command)} did not start")
    return process, line


def router_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a server this run starts: `env` (default: this process's), with the
    run's keyring unless one is set already."""
    env = dict(os.environ if env is None else env)
    if not env.get(KEYRING_ENV) and not env.get(KEYRING_FILE_ENV):
        env[KEYRING_ENV] = RUN_KEYRING_JSON
    return env


def _address_in(line: str) -> str:
    match = re.search(r"serving on (\S+)", line)
    assert match is not None
    return match.group(1)


def metrics_port_in(line: str) -> int | None:
    """The metrics port a router's first line names (`... metrics=PORT`), None when off."""
    match = re.search(r"metrics=(\d+)", line)
    return int(match.group(1)) if match else None


def _start(
    command: list[str], env: dict[str, str] | None = None, tls_ca: bytes | None = None
) -> tuple[subprocess.Popen[str], str]:
    """`start_process_line`, then waits until the server serves."""
    process, line = start_process_line(command, env)
    wait_until_serving(process, _address_in(line), SERVER_START_TIMEOUT_S, tls_ca)
    return process, line


def wait_until_serving(
    process: subprocess.Popen[str], address: str, timeout_s: float, tls_ca: bytes | None = None
) -> None:
    """Returns once the server's health says SERVING (a durable router: once it holds the
    lease); stops it and raises RuntimeError if it exits or `timeout_s` passes first."""
    deadline_s = time.monotonic() + timeout_s
    while not is_serving(address, tls_ca):
        if time.monotonic() > deadline_s or process.poll() is not None:
            stop_process(process)
            raise RuntimeError(f"{address} did not start serving")
        time.sleep(0.05)


def stop_process(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL if it has not exited 15 s later."""
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
    metrics_port: int | None = None
    """Where the server's Prometheus metrics are (a router started with them), else None."""

    def cpu_s(self) -> float:
        """CPU seconds the process and its children (the private Redis, a snapshot's child)
        have used so far, those that ended included."""
        return _cpu_s(self.pid, reaped=True) + sum(_cpu_s(child) for child in children(self.pid))


_CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return text[text.rindex(")") + 2 :].split()  # after the command, which may hold spaces


def process_cpu_s(pid: int) -> float:
    """CPU seconds the process (all its threads) has used so far (0 when it is gone)."""
    return _cpu_s(pid)


def _cpu_s(pid: int, *, reaped: bool = False) -> float:
    """CPU seconds of the process; with `reaped`, also of its children that ended and were
    waited for (a snapshot's child counts, once the router reaps it)."""
    fields = _stat_fields(pid)  # [11], [12]: utime, stime; [13], [14]: of reaped children
    if not fields:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _CLOCK_TICKS_PER_S


def children(pid: int) -> list[int]:
    """The process ids of the process's children (from /proc)."""
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


def memory_kib(pid: int) -> dict[str, int]:
    """The process's memory from /proc/PID/status, in KiB: `VmRSS` (resident now), `VmHWM`
    (the most resident so far); empty when the process is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return {}
    found = {}
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def private_kib(pid: int) -> int | None:
    """Memory the process holds alone (`Private_Clean + Private_Dirty` in smaps_rollup), in
    KiB: for a forked child, the pages it copied or made, not those it shares with its parent."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return None
    total = 0
    for line in lines:
        name, _, value = line.partition(":")
        if name in ("Private_Clean", "Private_Dirty"):
            total += int(value.split()[0])
    return total


def available_kib() -> int:
    """The machine's MemAvailable, in KiB."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def can_read_cpu() -> bool:
    """Whether server CPU time can be read (Linux /proc)."""
    return bool(_stat_fields(os.getpid()))


@contextlib.contextmanager
def switchboard_router(
    data_dir: Path,
    *,
    durable: bool,
    profile_path: Path | None = None,
    snapshots_on_request: bool = False,
    credentials: LocalCredentials | None = None,
) -> Iterator[Server]:
    """A `switchboard serve` process on 127.0.0.1 (durable: a private Redis in `data_dir`),
    with its metrics on a free port; yields it once it leads. With `profile_path`, it runs
    under cProfile, which writes its statistics there when the process is stopped. With
    `snapshots_on_request`, it takes snapshots only when sent SIGUSR1. With `credentials`, it
    serves TLS and requires their tokens."""
    command = [sys.executable]
    if profile_path is not None:
        command += ["-m", "cProfile", "-o", str(profile_path)]
    command += ["-m", "router.cli", "serve", "--host", "127.0.0.1", "--port", "0",
                "--metrics-port", "0", "--log-level", "ERROR"]  # fmt: skip
    command += ["--data-dir", str(data_dir)] if durable else ["--in-memory"]
    if snapshots_on_request:
        command += ["--snapshot-every", str(SNAPSHOTS_ON_REQUEST_ONLY)]
    tls_ca = None
    if credentials is not None:
        command += credentials.server_flags()
        tls_ca = credentials.ca_cert.read_bytes()
    process, line = _start(command, tls_ca=tls_ca)
    try:
        yield Server(_address_in(line), process.pid, metrics_port_in(line))
    finally:
        stop_process(process)


@contextlib.contextmanager
def null_router() -> Iterator[Server]:
    """A `benchmarks.null_router` process on 127.0.0.1."""
    command = [sys.executable, "-m", "benchmarks.null_router", "--host", "127.0.0.1", "--port", "0"]
    process, line = _start(command, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        yield Server(_address_in(line), process.pid)
    finally:
        stop_process(process)
