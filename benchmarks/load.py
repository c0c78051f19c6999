"""Load benchmark: whole task lifecycles per second over gRPC, stepped up to saturation, against
a null router measured in the same run.

    python -m benchmarks.load [--quick] [--json PATH] [--plot PATH] [--secure]
    python -m benchmarks.load --target HOST:PORT [--tls-ca PEM] [--token JWT]

An open-loop generator sends CreateTask calls at Poisson arrival times over several gRPC
channels, and simulated agents on the `workers` SDK accept and complete every offer at once
(no think time, no handle time: this measures the router, not people). The arrival rate is
multiplied step by step until the router saturates: its completed lifecycles per second fall
clearly below the offered rate, or its latency explodes. Then one longer step runs at half the
rate it sustained, twice: once with no snapshot in it, and once with a snapshot asked for (SIGUSR1)
a quarter of the way into its measured part, confirmed in the router's metrics (its count of
snapshots saved rose during the step), so that what a snapshot costs the writer's callers is the
ratio of the two p99s. Each step reports the lifecycles completed per second (create, offer,
accept, complete), the time from CreateTask being sent to the offer reaching its agent, and
from the agent's accept to the assignment reaching it, all stamped by one clock in this one
process; and the CPU time the server and this process spent per lifecycle, with the cores other
programs kept busy meanwhile (a step that shared the machine is slower than the machine).

The same generator and agents then load the null router (`benchmarks.null_router`): a bare gRPC
server with the same messages that hands each task to the next free agent, with no scoring and
no store, in its own process as the router is. Its throughput is the floor of what gRPC and
protobuf in Python cost on this machine, and `ratio_to_null` says how much of it the router
keeps.

By default the router is a `switchboard serve` process started here, durable (the journal on,
in a private Redis server under a temporary folder; `--in-memory` turns it off). `--target`
measures a router that is already running instead (its durability is then unknown: null in the
JSON), and skips the snapshot step (no signal can reach it, and its metrics are not known);
the null router is still started here, and runs its half-saturation step once (it has no
snapshots). A router started here takes snapshots only when asked (`--snapshot-every` set out
of reach), so that the step without one surely has none. Every process listens on 127.0.0.1
only and is stopped on exit."""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, TaskID
from rich.table import Table

from benchmarks.credentials import ClientAccess, write_local_credentials
from benchmarks.loadgen import AGENTS_DEFAULT, LoadRun, StepResult
from benchmarks.router_metrics import longest_stall_bound_s, snapshots_between
from benchmarks.servers import (
    Server,
    can_read_cpu,
    machine_cpu_s,
    null_router,
    switchboard_router,
)
from benchmarks.snapshots import SnapshotTrigger
from benchmarks.watchers import attached_watchers
from workers import TlsSettings

SECURE_ROUTER = "switchboard_secure"
"""The router measured with TLS and tokens (`--secure`), in the steps and the figure."""
TARGET_SECURE_RATIO = 0.85
"""Sustained lifecycles per second with TLS and tokens over those in plaintext, at least."""
WATCHED_ROUTER = "switchboard_watched"
"""The router measured with event subscribers and wallboards attached (`--subscribers`,
`--wallboards`)."""
TARGET_WATCHED_RATIO = 0.9
CUSTOMERS_ROUTER = "switchboard_customers"
"""The router measured with customer data on every task (`--customers`): a customer id among
N and personal attributes, so that every lifecycle hashes, seals and fills the timeline."""
TARGET_CUSTOMERS_RATIO = 0.85
"""Sustained lifecycles per second with customer data over those without, at least."""
"""Sustained lifecycles per second with the subscribers and wallboards over those without."""
SATURATED_SHARE = 0.85
"""A step whose completed lifecycles per second fall below this share of the offered rate is
past saturation."""
LATENCY_EXPLODED_MS = 100.0
"""A step whose median create-to-offer time passes this is past saturation too (the backlog
grows faster than the step is long enough to show in its throughput)."""
RUN_TIMEOUT_S = 900.0
"""The whole measurement of one router stops after this long, whatever the plan."""
OTHER_LOAD_WARNING_CORES = 0.25
"""Other programs busier than this during a step earn the run a warning."""
TARGET_RATIO_TO_NULL = 0.6
TARGET_P99_MS = 20.0
TARGET_TASKS_PER_S = 1_000.0
TARGET_SNAPSHOT_P99_RATIO = 1.5
"""The half-saturation step's p99 with a snapshot in it, over its p99 without, at most."""
SNAPSHOT_AT_SHARE = 0.25
"""The snapshot is asked for this share of the way into the measured part of its step."""
SNAPSHOT_SAVE_TIMEOUT_S = 60.0
"""Longest wait, after its step, for the asked-for snapshot to be saved."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How the rate is stepped up."""

    start_per_s: float
    """The first step's arrival rate."""
    factor: float
    """Each next step's rate is the previous one's times this."""
    steps_max: int
    """The ramp stops after this many steps even short of saturation."""
    warmup_s: float
    """Seconds of each step sent but not measured (the previous step's tail, caches, JIT-free
    Python's first calls)."""
    measure_s: float
    half_measure_s: float
    """The measured part of each step at half the saturation rate (a longer one: its p99 is the
    headline figure)."""


FULL = Plan(start_per_s=100, factor=1.25, steps_max=20, warmup_s=1.0, measure_s=4.0,
            half_measure_s=15.0)  # fmt: skip
QUICK = Plan(start_per_s=150, factor=1.4, steps_max=10, warmup_s=0.5, measure_s=1.5,
             half_measure_s=4.0)  # fmt: skip


# == the ramp ======================================================================================


def is_saturated(step: StepResult) -> bool:
    """Past saturation: throughput clearly below the offered rate, arrivals skipped or left
    over, or the median latency exploded."""
    return (
        step.lifecycles_per_s < SATURATED_SHARE * step.offered_per_s
        or step.skipped > 0
        or not step.drained
        or step.create_to_offer_p50_ms > LATENCY_EXPLODED_MS
    )


def sustained_per_s(steps: Sequence[StepResult]) -> float:
    """The most lifecycles per second a router completed in one step of its ramp."""
    return max((s.lifecycles_per_s for s in steps if s.phase == "ramp"), default=0.0)


class _Bar:
    """A progress bar on a terminal, nothing otherwise."""

    def __init__(self, progress: Progress | None, total: int) -> None:
        self._progress = progress
        self._task: TaskID | None = None
        if progress is not None:
            self._task = progress.add_task("starting", total=total)

    def show(self, description: str, *, advance: int = 0) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, description=description, advance=advance)

    def finish(self) -> None:
        if self._progress is not None and self._task is not None:
            task = self._progress.tasks[self._task]
            self._progress.update(self._task, completed=task.total)


async def measure_router(
    address: str,
    router: str,
    plan: Plan,
    *,
    agents: int,
    bar: _Bar,
    server_cpu_s: Callable[[], float] | None = None,
    machine_cpu_s: Callable[[], float] | None = None,
    snapshots: SnapshotTrigger | None = None,
    access: ClientAccess | None = None,
    customers: int = 0,
) -> list[StepResult]:
    """Ramps the rate up to saturation, then runs a step at half the sustained rate; with
    `snapshots`, runs that step again with a snapshot asked for in it, and counts the
    snapshots of every step. With `access`, every client calls over TLS with tokens; with
    `customers`, every task carries customer data (see `LoadRun`)."""
    steps: list[StepResult] = []
    async with LoadRun(address, router, agents=agents, access=access, customers=customers) as run:

        async def step(rate_per_s: float, measure_s: float, phase: str) -> StepResult:
            with_snapshot = phase == "half_snapshot"
            during = None
            if with_snapshot and snapshots is not None:
                delay_s = SNAPSHOT_AT_SHARE * measure_s
                during = functools.partial(snapshots.request_after, delay_s)
            before = await snapshots.scrape() if snapshots is not None else None
            result = await run.step(
                rate_per_s,
                warmup_s=plan.warmup_s,
                measure_s=measure_s,
                phase=phase,
                server_cpu_s=server_cpu_s,
                machine_cpu_s=machine_cpu_s,
                during_measure=during,
            )
            result = replace(result, saturated=is_saturated(result))
            if snapshots is None or before is None:
                return result
            if with_snapshot:
                after = await snapshots.saved_after(before, 1, SNAPSHOT_SAVE_TIMEOUT_S)
            else:
                after = await snapshots.scrape()
            saved = snapshots_between(before, after)
            stall_s = longest_stall_bound_s(before, after)
            return replace(
                result,
                snapshots=saved.count,
                snapshot_writer_pause_ms=saved.writer_pause_ms,
                snapshot_background_s=saved.background_s,
                snapshot_bytes=saved.snapshot_bytes,
                loop_stall_max_ms=None if stall_s is None else 1000 * stall_s,
            )

        rate_per_s = plan.start_per_s
        for _ in range(plan.steps_max):
            bar.show(f"{router}: {rate_per_s:,.0f}/s offered")
            ramp = await step(rate_per_s, plan.measure_s, "ramp")
            steps.append(ramp)
            bar.show(f"{router}: {ramp.lifecycles_per_s:,.0f}/s done", advance=1)
            if ramp.saturated:
                break
            rate_per_s *= plan.factor
        half_per_s = sustained_per_s(steps) / 2
        bar.show(f"{router}: half saturation, {half_per_s:,.0f}/s")
        steps.append(await step(half_per_s, plan.half_measure_s, "half"))
        if snapshots is not None:
            bar.show(f"{router}: half saturation with a snapshot, {half_per_s:,.0f}/s")
            steps.append(await step(half_per_s, plan.half_measure_s, "half_snapshot"))
    bar.finish()
    return steps


def run_benchmark(
    plan: Plan,
    *,
    target: str | None,
    durable: bool,
    agents: int,
    progress: Progress | None,
    profile_path: Path | None = None,
    secure: bool = False,
    target_access: ClientAccess | None = None,
    watchers: tuple[int, int] = (0, 0),
    customers: int = 0,
) -> list[StepResult]:
    """Measures the router (started here, or `target`), with `secure` a second router started
    here with TLS and tokens (its clients with credentials), with `watchers` (subscribers,
    wallboards) one with that many event subscribers and wallboards attached (in a process of
    their own), with `customers` one whose tasks carry customer data, and then the null
    router."""
    steps: list[StepResult] = []
    timeout_s = RUN_TIMEOUT_S

    def measure(
        address: str,
        router: str,
        server: Server | None,
        *,
        snapshots: bool = False,
        access: ClientAccess | None = None,
        with_customers: int = 0,
    ) -> list[StepResult]:
        bar = _Bar(progress, plan.steps_max + 2)
        cpu_s = server.cpu_s if server is not None and can_read_cpu() else None
        trigger = None
        if snapshots and server is not None and server.metrics_port is not None:
            trigger = SnapshotTrigger(server.pid, server.metrics_port)
        coroutine = measure_router(
            address, router, plan, agents=agents, bar=bar, server_cpu_s=cpu_s,
            machine_cpu_s=machine_cpu_s if cpu_s else None, snapshots=trigger, access=access,
            customers=with_customers,
        )  # fmt: skip
        return asyncio.run(asyncio.wait_for(coroutine, timeout_s))

    if target is not None:
        steps += measure(target, "switchboard", None, access=target_access)
    else:
        with (
            tempfile.TemporaryDirectory(prefix="switchboard-load-") as folder,
            switchboard_router(
                Path(folder), durable=durable, profile_path=profile_path,
                snapshots_on_request=durable,
            ) as server,
        ):  # fmt: skip
            steps += measure(server.address, "switchboard", server, snapshots=durable)
    if secure:
        with tempfile.TemporaryDirectory(prefix="switchboard-load-secure-") as folder:
            credentials = write_local_credentials(Path(folder) / "tls")
            # Snapshots only when asked, as the plain router: a snapshot in a step would be
            # charged to TLS.
            with switchboard_router(
                Path(folder) / "data", durable=durable, credentials=credentials,
                snapshots_on_request=durable,
            ) as server:  # fmt: skip
                access = credentials.client_access()
                steps += measure(server.address, SECURE_ROUTER, server, access=access)
    if any(watchers):
        with (
            tempfile.TemporaryDirectory(prefix="switchboard-load-watched-") as folder,
            switchboard_router(
                Path(folder), durable=durable, snapshots_on_request=durable
            ) as server,
            attached_watchers(server.address, *watchers),
        ):
            steps += measure(server.address, WATCHED_ROUTER, server)
    if customers:
        with (
            tempfile.TemporaryDirectory(prefix="switchboard-load-customers-") as folder,
            switchboard_router(
                Path(folder), durable=durable, snapshots_on_request=durable
            ) as server,
        ):
            steps += measure(server.address, CUSTOMERS_ROUTER, server, with_customers=customers)
    with null_router() as server:
        steps += measure(server.address, "null", server)
    return steps


# == the report ====================================================================================


def target_access(tls_ca: Path | None, token: str | None) -> ClientAccess | None:
    """How the clients reach a --target: over TLS trusting `tls_ca`, with `token` (an admin's:
    it may act as every agent) on every call."""
    if tls_ca is None and token is None:
        return None
    tls = TlsSettings(root_certificates=tls_ca.read_bytes()) if tls_ca is not None else None
    return ClientAccess(tls, (lambda *_, **__: token) if token else None)


def snapshot_step_skipped(target: str | None, durable: bool | None) -> str | None:
    """Why the half-saturation step with a snapshot did not run, or None when it did."""
    if target is not None:
        return "--target: the router was not started here (no signal, no metrics)"
    if not durable:
        return "--in-memory: the router takes no snapshots"
    return None


def summary(
    steps: Sequence[StepResult], durable: bool | None, *, snapshot_skipped: str | None = None
) -> dict[str, Any]:
    """The JSON report: headline figures, then every step."""
    router = [s for s in steps if s.router == "switchboard"]
    null = [s for s in steps if s.router == "null"]
    router_per_s, null_per_s = sustained_per_s(router), sustained_per_s(null)
    half = next((s for s in router if s.phase == "half"), None)
    with_snapshot = next((s for s in router if s.phase == "half_snapshot"), None)
    null_half = next((s for s in null if s.phase == "half"), None)
    secure = [s for s in steps if s.router == SECURE_ROUTER]
    secure_per_s = sustained_per_s(secure) if secure else None
    secure_half = next((s for s in secure if s.phase == "half"), None)
    watched = [s for s in steps if s.router == WATCHED_ROUTER]
    watched_per_s = sustained_per_s(watched) if watched else None
    watched_half = next((s for s in watched if s.phase == "half"), None)
    customers = [s for s in steps if s.router == CUSTOMERS_ROUTER]
    customers_per_s = sustained_per_s(customers) if customers else None
    customers_half = next((s for s in customers if s.phase == "half"), None)
    return {
        "benchmark": "load",
        "durable": durable,
        "router_tasks_per_s": round(router_per_s, 1),
        "null_router_tasks_per_s": round(null_per_s, 1),
        "ratio_to_null": round(router_per_s / null_per_s, 3) if null_per_s else None,
        "half_saturation_per_s": round(half.offered_per_s, 1) if half else None,
        "create_to_offer_p50_ms": round(half.create_to_offer_p50_ms, 3) if half else None,
        "create_to_offer_p99_ms": round(half.create_to_offer_p99_ms, 3) if half else None,
        "accept_to_assigned_p50_ms": round(half.accept_to_assigned_p50_ms, 3) if half else None,
        "accept_to_assigned_p99_ms": round(half.accept_to_assigned_p99_ms, 3) if half else None,
        **_snapshot_figures(half, with_snapshot, snapshot_skipped),
        # CPU per lifecycle at half saturation: what each server costs, whatever else runs.
        "router_cpu_ms_per_task": _rounded(half.server_cpu_ms_per_task if half else None),
        "null_router_cpu_ms_per_task": _rounded(
            null_half.server_cpu_ms_per_task if null_half else None
        ),
        "client_cpu_ms_per_task": _rounded(half.client_cpu_ms_per_task if half else None),
        "cpu_ratio_to_null": _cpu_ratio(half, null_half),
        # --secure: the same router with TLS and bearer tokens, its clients with credentials.
        "secure_router_tasks_per_s": _rounded(secure_per_s),
        "secure_ratio_to_plaintext": round(secure_per_s / router_per_s, 3)
        if secure_per_s is not None and router_per_s
        else None,
        "secure_cpu_ratio_to_plaintext": _cpu_ratio_at_equal_rates(router, secure),
        "secure_create_to_offer_p99_ms": _rounded(
            secure_half.create_to_offer_p99_ms if secure_half else None
        ),
        "secure_router_cpu_ms_per_task": _rounded(
            secure_half.server_cpu_ms_per_task if secure_half else None
        ),
        # --subscribers/--wallboards: the same router with the event feed and statistics read.
        "watched_router_tasks_per_s": _rounded(watched_per_s),
        "watched_ratio_to_plain": round(watched_per_s / router_per_s, 3)
        if watched_per_s is not None and router_per_s
        else None,
        "watched_cpu_ratio_to_plain": _cpu_ratio_at_equal_rates(router, watched),
        "watched_create_to_offer_p99_ms": _rounded(
            watched_half.create_to_offer_p99_ms if watched_half else None
        ),
        "watched_router_cpu_ms_per_task": _rounded(
            watched_half.server_cpu_ms_per_task if watched_half else None
        ),
        # --customers: the same router with customer data (sealing, hashing, the timeline).
        "customers_router_tasks_per_s": _rounded(customers_per_s),
        "customers_ratio_to_plain": round(customers_per_s / router_per_s, 3)
        if customers_per_s is not None and router_per_s
        else None,
        "customers_cpu_ratio_to_plain": _cpu_ratio_at_equal_rates(router, customers),
        "customers_create_to_offer_p99_ms": _rounded(
            customers_half.create_to_offer_p99_ms if customers_half else None
        ),
        "customers_router_cpu_ms_per_task": _rounded(
            customers_half.server_cpu_ms_per_task if customers_half else None
        ),
        "other_load_cores_max": _rounded(
            max((s.other_load_cores for s in steps if s.other_load_cores is not None), default=None)
        ),
        "steps": [s.as_json() for s in steps],
    }


def _snapshot_figures(
    half: StepResult | None, with_snapshot: StepResult | None, skipped: str | None
) -> dict[str, Any]:
    """The half-saturation step with a snapshot against the one without: its latencies, their
    ratio, and the snapshots it had (the ratio is None unless it had at least one)."""
    figures: dict[str, Any] = {
        "snapshot_step": "skipped: " + skipped if skipped else "ran",
        "create_to_offer_p50_ms_with_snapshot": None,
        "create_to_offer_p99_ms_with_snapshot": None,
        "snapshot_p99_ratio": None,
        "snapshots_in_step": None,
        "snapshots_in_step_without": None if half is None else half.snapshots,
        "snapshot_writer_pause_ms": None,
        "snapshot_background_s": None,
        "snapshot_bytes": None,
        "loop_stall_max_ms": None if half is None else _rounded(half.loop_stall_max_ms),
        "loop_stall_max_ms_with_snapshot": None,
    }
    if with_snapshot is None:
        return figures
    p99 = with_snapshot.create_to_offer_p99_ms
    figures.update(
        create_to_offer_p50_ms_with_snapshot=round(with_snapshot.create_to_offer_p50_ms, 3),
        create_to_offer_p99_ms_with_snapshot=round(p99, 3),
        snapshots_in_step=with_snapshot.snapshots,
        snapshot_writer_pause_ms=_rounded(with_snapshot.snapshot_writer_pause_ms),
        snapshot_background_s=_rounded(with_snapshot.snapshot_background_s),
        snapshot_bytes=with_snapshot.snapshot_bytes,
        loop_stall_max_ms_with_snapshot=_rounded(with_snapshot.loop_stall_max_ms),
    )
    if half is not None and with_snapshot.snapshots and half.create_to_offer_p99_ms > 0:
        figures["snapshot_p99_ratio"] = round(p99 / half.create_to_offer_p99_ms, 3)
    return figures


def _cpu_ratio_at_equal_rates(
    plain: Sequence[StepResult], secure: Sequence[StepResult]
) -> float | None:
    """CPU per lifecycle (server and clients) of the plain router over that of the other one
    (with TLS and tokens, or with watchers), over the ramp steps both ran at the same rate
    unsaturated: what the throughput ratio would be on a machine of their own, less swayed than
    the best steps by what else ran meanwhile."""
    plain_by_rate = {s.offered_per_s: s for s in plain if s.phase == "ramp" and not s.saturated}
    pairs = [
        (plain_by_rate[s.offered_per_s], s)
        for s in secure
        if s.phase == "ramp" and not s.saturated and s.offered_per_s in plain_by_rate
    ]
    total_ms = [
        (p.server_cpu_ms_per_task + p.client_cpu_ms_per_task,
         s.server_cpu_ms_per_task + s.client_cpu_ms_per_task)
        for p, s in pairs
        if p.server_cpu_ms_per_task and s.server_cpu_ms_per_task
    ]  # fmt: skip
    if not total_ms:
        return None
    return round(sum(p for p, _ in total_ms) / sum(s for _, s in total_ms), 3)


def _cpu_ratio(router: StepResult | None, null: StepResult | None) -> float | None:
    """The null router's CPU per lifecycle over the router's, both at half saturation: the
    throughput ratio the two would show each on a core of its own, with a client to spare."""
    if router is None or null is None:
        return None
    if not router.server_cpu_ms_per_task or not null.server_cpu_ms_per_task:
        return None
    return round(null.server_cpu_ms_per_task / router.server_cpu_ms_per_task, 3)


def targets(result: dict[str, Any]) -> list[tuple[str, Any, str, bool]]:
    """(figure, value, target, met) for each of the benchmark's targets."""

    def at_least(value: Any, bound: float) -> bool:
        return isinstance(value, float) and value >= bound

    p99 = result["create_to_offer_p99_ms"]
    ratio, cpu_ratio = result["ratio_to_null"], result["cpu_ratio_to_null"]
    snapshot_ratio = result["snapshot_p99_ratio"]
    found = [
        ("ratio_to_null", ratio, f">= {TARGET_RATIO_TO_NULL:g}",
         at_least(ratio, TARGET_RATIO_TO_NULL)),
        ("cpu_ratio_to_null (server CPU per task)", cpu_ratio, f">= {TARGET_RATIO_TO_NULL:g}",
         at_least(cpu_ratio, TARGET_RATIO_TO_NULL)),
        ("create_to_offer_p99_ms at half saturation", p99, f"<= {TARGET_P99_MS:g}",
         isinstance(p99, float) and p99 <= TARGET_P99_MS),
        ("router_tasks_per_s", result["router_tasks_per_s"], f">= {TARGET_TASKS_PER_S:,.0f}",
         at_least(result["router_tasks_per_s"], TARGET_TASKS_PER_S)),
        ("snapshot_p99_ratio (half step, with ÷ without)", snapshot_ratio,
         f"<= {TARGET_SNAPSHOT_P99_RATIO:g}",
         isinstance(snapshot_ratio, float) and snapshot_ratio <= TARGET_SNAPSHOT_P99_RATIO),
    ]  # fmt: skip
    secure_ratio = result["secure_ratio_to_plaintext"]
    if secure_ratio is not None:  # --secure
        met = secure_ratio >= TARGET_SECURE_RATIO
        name = "secure_ratio_to_plaintext (TLS + tokens ÷ plaintext)"
        found.append((name, secure_ratio, f">= {TARGET_SECURE_RATIO:g}", met))
    watched_ratio = result["watched_ratio_to_plain"]
    if watched_ratio is not None:  # --subscribers / --wallboards
        met = watched_ratio >= TARGET_WATCHED_RATIO
        name = "watched_ratio_to_plain (with subscribers ÷ without)"
        found.append((name, watched_ratio, f">= {TARGET_WATCHED_RATIO:g}", met))
    customers_ratio = result["customers_ratio_to_plain"]
    if customers_ratio is not None:  # --customers
        met = customers_ratio >= TARGET_CUSTOMERS_RATIO
        name = "customers_ratio_to_plain (with customer data ÷ without)"
        found.append((name, customers_ratio, f">= {TARGET_CUSTOMERS_RATIO:g}", met))
    return found


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _ms(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.2f}"


def _count(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def print_report(console: Console, steps: Sequence[StepResult], result: dict[str, Any]) -> None:
    table = Table(
        title="load steps (latencies in ms; CPU in ms per lifecycle; other load in cores; the "
        "router's longest loop stall; snapshots saved in the step, the writer's pause for each "
        "and its background save)",
        title_justify="left",
    )
    for name in ("router", "phase", "offered/s", "lifecycles/s", "create→offer p50",
                 "p99", "accept→assigned p50", "p99", "server CPU", "client CPU",
                 "other load", "tasks", "errors", "saturated", "loop stall ≤ ms",
                 "snapshots", "pause ms", "save s"):  # fmt: skip
        label = name in ("router", "phase")
        table.add_column(name, justify="left" if label else "right", no_wrap=label)
    for s in steps:
        table.add_row(
            s.router, s.phase, f"{s.offered_per_s:,.0f}", f"{s.lifecycles_per_s:,.0f}",
            _ms(s.create_to_offer_p50_ms), _ms(s.create_to_offer_p99_ms),
            _ms(s.accept_to_assigned_p50_ms), _ms(s.accept_to_assigned_p99_ms),
            _ms(s.server_cpu_ms_per_task), _ms(s.client_cpu_ms_per_task),
            _ms(s.other_load_cores), f"{s.tasks:,}",
            str(s.errors + s.skipped), "yes" if s.saturated else "",
            "" if s.loop_stall_max_ms is None else f"{s.loop_stall_max_ms:g}", _count(s.snapshots),
            _ms(s.snapshot_writer_pause_ms) if s.snapshots else "",
            _ms(s.snapshot_background_s) if s.snapshots else "",
        )  # fmt: skip
    console.print(table)
    for key, value in result.items():
        if key != "steps":
            console.print(f"  {key:<38} {value}")
    if result["snapshot_step"] != "ran":
        console.print(f"the half-saturation step with a snapshot: {result['snapshot_step']}")
    elif not result["snapshots_in_step"]:
        console.print("warning: the half-saturation step with a snapshot saw none saved within "
                      f"{SNAPSHOT_SAVE_TIMEOUT_S:g} s: snapshot_p99_ratio is unknown")  # fmt: skip
    busy = result["other_load_cores_max"]
    if busy is not None and busy > OTHER_LOAD_WARNING_CORES:
        console.print(f"warning: other programs kept up to {busy:.2f} cores busy during a step: "
                      "its throughput and latency are lower than the machine can do; its CPU "
                      "per task still holds")  # fmt: skip
    console.print("targets:")
    for name, value, target, met in targets(result):
        console.print(f"  {name:<48} {value!s:>10} {target:>8}  {'PASS' if met else 'MISS'}")


def plot(steps: Sequence[StepResult], path: Path, title: str) -> None:
    """Latency against load (left) and throughput against load (right), both routers."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (latency, throughput) = plt.subplots(1, 2, figsize=(12, 4.8))
    colours = {
        "switchboard": "tab:blue", SECURE_ROUTER: "tab:orange", WATCHED_ROUTER: "tab:green",
        "null": "tab:grey",
    }  # fmt: skip
    top_per_s = max(s.offered_per_s for s in steps)
    for router, colour in colours.items():
        ramp = sorted(
            (s for s in steps if s.router == router and s.phase == "ramp"),
            key=lambda s: s.offered_per_s,
        )
        if not ramp:
            continue
        x = [s.offered_per_s for s in ramp]
        latency.plot(x, [s.create_to_offer_p50_ms for s in ramp], "o-", color=colour,
                     label=f"{router} p50")  # fmt: skip
        latency.plot(x, [s.create_to_offer_p99_ms for s in ramp], "s--", color=colour,
                     label=f"{router} p99")  # fmt: skip
        throughput.plot(x, [s.lifecycles_per_s for s in ramp], "o-", color=colour, label=router)
        for half in (s for s in steps if s.router == router and s.phase == "half"):
            latency.plot([half.offered_per_s] * 2,
                         [half.create_to_offer_p50_ms, half.create_to_offer_p99_ms], "*",
                         color=colour, markersize=13,
                         label=f"{router} at half saturation")  # fmt: skip
        for half in (s for s in steps if s.router == router and s.phase == "half_snapshot"):
            latency.plot([half.offered_per_s] * 2,
                         [half.create_to_offer_p50_ms, half.create_to_offer_p99_ms], "P",
                         color=colour, markersize=11, markerfacecolor="none",
                         label=f"{router} at half saturation, with a snapshot")  # fmt: skip
    latency.axhline(TARGET_P99_MS, color="tab:red", linestyle=":", label="p99 target")
    latency.set(xscale="log", yscale="log", xlabel="offered tasks/s (Poisson)",
                ylabel="CreateTask sent → offer at the agent, ms",
                title="create → offer latency")  # fmt: skip
    throughput.plot([0, top_per_s], [0, top_per_s], ":", color="black", label="offered")
    throughput.set(xlabel="offered tasks/s (Poisson)", ylabel="whole lifecycles completed/s",
                   title="throughput")  # fmt: skip
    for axes in (latency, throughput):
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


# == the command ===================================================================================


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="shorter steps, under 90 s in all")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument(
        "--plot",
        type=Path,
        default=Path("bench-results/load.png"),
        help="the latency-against-load figure (default: %(default)s)",
    )
    parser.add_argument(
        "--target", metavar="HOST:PORT", help="measure this running router instead of starting one"
    )
    parser.add_argument(
        "--in-memory",
        action="store_true",
        help="start the router with its journal off (default: durable)",
    )
    parser.add_argument(
        "--agents", type=int, default=AGENTS_DEFAULT, help="simulated agents (default: %(default)s)"
    )
    parser.add_argument(
        "--steps", type=int, metavar="N", help="at most N steps of the ramp per router"
    )
    parser.add_argument(
        "--step-s",
        type=float,
        metavar="SECONDS",
        help="measured seconds of each step (a quarter more is warm-up; "
        "the half-saturation step measures twice as long)",
    )
    parser.add_argument(
        "--start-rate", type=float, metavar="PER_S", help="the first step's arrival rate"
    )
    parser.add_argument(
        "--tls-ca", type=Path, metavar="PEM",
        help="with --target: call it over TLS, trusting this CA",
    )  # fmt: skip
    parser.add_argument(
        "--token",
        help="with --target: an admin token, sent by every client (set-up, creators, agents)",
    )
    parser.add_argument(
        "--secure",
        action="store_true",
        help="also measure a router started with TLS (a self-signed CA made here) and HS256 "
        "tokens, its clients with credentials, and report its ratio to the plaintext one",
    )
    parser.add_argument(
        "--subscribers", type=int, default=0, metavar="N",
        help="also measure a router with N event-feed subscribers attached (and --wallboards), "
        "and report its ratio to the router without them",
    )  # fmt: skip
    parser.add_argument(
        "--wallboards", type=int, default=0, metavar="M",
        help="with --subscribers: M WatchStats wallboards attached too",
    )  # fmt: skip
    parser.add_argument(
        "--customers", type=int, default=0, metavar="N",
        help="also measure a router whose tasks carry one of N customer ids and personal "
        "attributes (encrypted, hashed, projected into the timeline), and report its ratio to "
        "the router without them",
    )  # fmt: skip
    parser.add_argument(
        "--server-profile",
        type=Path,
        metavar="PATH",
        help="run the started router under cProfile, statistics to PATH",
    )
    args = parser.parse_args(argv)
    if args.secure and args.target:
        parser.error("--secure starts its own routers: it cannot go with --target")
    if (args.subscribers or args.wallboards) and args.target:
        parser.error("--subscribers and --wallboards start their own router: not with --target")
    if args.customers and args.target:
        parser.error("--customers starts its own router: not with --target")
    if (args.tls_ca or args.token) and not args.target:
        parser.error("--tls-ca and --token are for a --target")
    plan = QUICK if args.quick else FULL
    if args.steps is not None:
        plan = replace(plan, steps_max=args.steps)
    if args.step_s is not None:
        plan = replace(plan, warmup_s=args.step_s / 4, measure_s=args.step_s,
                       half_measure_s=2 * args.step_s)  # fmt: skip
    if args.start_rate is not None:
        plan = replace(plan, start_per_s=args.start_rate)
    durable = None if args.target else not args.in_memory
    # A table wider than the 80 columns rich assumes for a file or a pipe.
    console = Console() if sys.stdout.isatty() else Console(width=240)
    started_s = time.monotonic()
    where = args.target or ("a durable router" if durable else "an in-memory router")
    console.print(f"load: {where} and the null router, {args.agents} agents, rate from "
                  f"{plan.start_per_s:g}/s x{plan.factor:g} per step")  # fmt: skip
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        steps = run_benchmark(
            plan, target=args.target, durable=bool(durable), agents=args.agents,
            progress=progress, profile_path=args.server_profile, secure=args.secure,
            target_access=target_access(args.tls_ca, args.token),
            watchers=(args.subscribers, args.wallboards), customers=args.customers,
        )  # fmt: skip
    result = summary(steps, durable, snapshot_skipped=snapshot_step_skipped(args.target, durable))
    result["elapsed_s"] = round(time.monotonic() - started_s, 1)
    print_report(console, steps, result)
    mode = {True: "journal on", False: "journal off", None: args.target}[durable]
    plot(steps, args.plot, f"Switchboard ({mode}) against the null router, {os.cpu_count()} cores")
    console.print(f"plot: {args.plot}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
