"""`switchboard demo`: a simulated contact center routed live by an in-process router.

The demo starts a router on the real clock, creates four queues through AdminService, connects a
fleet of simulated agents (workers.fleet) over the Connect stream, and sends Poisson arrivals of
calls, chats and messages through TaskService, all over gRPC like any deployment. The center
(queues, agents, traffic) is the seeded one of `benchmarks.workload`. It shows the
queues live (StatsService.GetRealtimeStats, four times a second), then a summary. Ctrl-C ends
it early, with the summary."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import shutil
import signal
import statistics
import tempfile
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from benchmarks.workload import QUEUES, AgentProfileFactory, Traffic
from router._proto.switchboard.v1 import stats_service_pb2 as spb
from router._proto.switchboard.v1 import stats_service_pb2_grpc as sgrpc
from router.server import ServerConfig, start_server
from workers import AdminClient, SwitchboardError, TaskClient
from workers._backoff import DEFAULT_BACKOFF_S
from workers._channel import open_channel, unary
from workers.fleet import (
    CALM_SENTIMENT_MIN,
    UPSET_SENTIMENT_MAX,
    AgentBehaviour,
    Fleet,
    FleetStats,
)

REFRESH_S: Final = 0.25
"""How often the live view polls the router's statistics and redraws."""
PLAIN_LINE_EVERY_S: Final = 2.0
"""How often the plain-text output (no terminal, or --no-live) prints a line."""
RATE_WINDOW_S: Final = 2.0
"""The window of the offered/s and assigned/s rates: long enough to smooth, short enough to
follow a burst."""
SERVER_STOP_GRACE_S: Final = 0.5


AGENT_BEHAVIOUR: Final = AgentBehaviour(time_scale=0.35)
"""Agents work about three times faster than the default pace, so that a run of a few seconds
completes tasks."""


# == arguments ==================================================================================


def _positive(kind: type[int] | type[float]) -> Any:
    def parse(text: str) -> int | float:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error messages
    return parse


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the demo's options to `parser` (the `switchboard demo` sub-command)."""
    parser.add_argument(
        "--duration", type=_positive(float), default=30.0, help="seconds to run (default 30)"
    )
    parser.add_argument(
        "--agents", type=_positive(int), default=40, help="simulated agents (default 40)"
    )
    parser.add_argument(
        "--rate", type=_positive(float), default=6.0, help="task arrivals per second (default 6)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="seed of agents and traffic (default: random)"
    )
    parser.add_argument(
        "--port", type=int, default=0, help="gRPC port of the router (default 0: a free one)"
    )
    parser.add_argument(
        "--no-live", action="store_true", help="print plain lines instead of the live view"
    )


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """The demo's settings, from the command line."""

    duration_s: float
    agents: int
    rate_per_s: float
    seed: int
    port: int
    live: bool

    @classmethod
    def from_args(cls, args: argparse.Namespace, console: Console) -> DemoConfig:
        seed = args.seed if args.seed is not None else random.SystemRandom().randrange(10_000)
        return cls(
            duration_s=args.duration,
            agents=args.agents,
            rate_per_s=args.rate,
            seed=seed,
            port=args.port,
            live=console.is_terminal and not args.no_live,
        )


def run_demo(args: argparse.Namespace) -> int:
    """Runs the demo for `args.duration` seconds (or until Ctrl-C) and prints its summary."""
    console = Console()
    return asyncio.run(_demo(DemoConfig.from_args(args, console), console))


# == traffic ====================================================================================


@dataclass(slots=True)
class ArrivalCounts:
    sent: int = 0
    refused: int = 0


async def _arrivals(
    tasks: TaskClient,
    traffic: Traffic,
    rate_per_s: float,
    rng: np.random.Generator,
    counts: ArrivalCounts,
) -> None:
    """Creates tasks at exponential intervals (a Poisson process). Each arrival is scheduled
    from the previous one's planned time, so slow calls do not lower the rate."""
    loop = asyncio.get_running_loop()
    due_s = loop.time()
    while True:
        due_s += float(rng.exponential(1 / rate_per_s))
        await asyncio.sleep(max(0.0, due_s - loop.time()))
        try:
            await tasks.create_task(**traffic.next_task())
            counts.sent += 1
        except SwitchboardError:
            counts.refused += 1


# == statistics =================================================================================


class StatsReader:
    """Reads StatsService.GetRealtimeStats and keeps a short history to turn totals into rates."""

    def __init__(self, address: str) -> None:
        self._channel = open_channel(address, reconnect_backoff_s=DEFAULT_BACKOFF_S)
        self._stub = sgrpc.StatsServiceStub(self._channel)
        self._history: deque[tuple[float, spb.GetRealtimeStatsResponse]] = deque()
        self.latest = spb.GetRealtimeStatsResponse()

    async def read(self) -> spb.GetRealtimeStatsResponse:
        request = spb.GetRealtimeStatsRequest()
        self.latest = await unary(self._stub.GetRealtimeStats(request, timeout=5))
        now_s = time.monotonic()
        self._history.append((now_s, self.latest))
        while len(self._history) > 2 and now_s - self._history[1][0] >= RATE_WINDOW_S:
            self._history.popleft()
        return self.latest

    def rates(self, queue_id: str) -> tuple[float, float]:
        """Offers and assignments per second in `queue_id` over the last RATE_WINDOW_S."""
        (first_s, first), (last_s, last) = self._history[0], self._history[-1]
        if last_s <= first_s:
            return 0.0, 0.0
        before, after = _queue(first, queue_id), _queue(last, queue_id)
        elapsed_s = last_s - first_s
        return (
            (after.offered_total - before.offered_total) / elapsed_s,
            (after.assigned_total - before.assigned_total) / elapsed_s,
        )

    async def close(self) -> None:
        await self._channel.close(grace=None)


def _queue(stats: spb.GetRealtimeStatsResponse, queue_id: str) -> spb.QueueStats:
    for queue in stats.queues:
        if queue.queue_id == queue_id:
            return queue
    return spb.QueueStats(queue_id=queue_id)


def _totals(stats: spb.GetRealtimeStatsResponse) -> dict[str, int]:
    return {
        "created": sum(q.created_total for q in stats.queues),
        "waiting": sum(q.waiting for q in stats.queues),
        "assigned": sum(q.assigned_total for q in stats.queues),
        "completed": sum(q.completed_total for q in stats.queues),
        "canceled": sum(q.canceled_total for q in stats.queues),
    }


# == the views ==================================================================================


@dataclass(slots=True)
class DemoState:
    """What the views show: the router's statistics, the fleet's counters, the clock."""

    config: DemoConfig
    address: str
    fleet: FleetStats
    stats: StatsReader
    arrivals: ArrivalCounts
    empathy_mean: float
    """The mean empathy of the whole fleet, the baseline of the empathy evidence."""
    started_s: float = field(default_factory=time.monotonic)
    run_s: float = 0.0
    """How long the center ran (set when it stops: the duration, or less after Ctrl-C)."""

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_s


def _mean_empathy(values: list[float]) -> str:
    return f"{statistics.fmean(values):.2f} (n={len(values)})" if values else "- (n=0)"


def _empathy_line(state: DemoState) -> str:
    """The evidence of empathy routing: upset customers should get the more empathetic agents."""
    fleet = state.fleet
    return (
        f"empathy routing: mean empathy of the agents assigned to upset customers (sentiment "
        f"<= {UPSET_SENTIMENT_MAX:g}) {_mean_empathy(fleet.empathy_upset)}, to calm ones "
        f"(>= {CALM_SENTIMENT_MIN:g}) {_mean_empathy(fleet.empathy_calm)}; "
        f"all agents {state.empathy_mean:.2f}"
    )


def _agents_line(stats: spb.GetRealtimeStatsResponse) -> str:
    by_activity = sorted(stats.workers_by_activity.items(), key=lambda item: -item[1])
    return "agents: " + ", ".join(f"{activity} {count}" for activity, count in by_activity)


def _fleet_line(fleet: FleetStats) -> str:
    return (
        f"fleet: {fleet.offers} offers, {fleet.accepts} accepted, {fleet.rejects} rejected, "
        f"{fleet.lost_offers} lost, {fleet.completed} completed"
    )


def _live_view(state: DemoState) -> Group:
    stats, config = state.stats.latest, state.config
    table = Table(title=None, expand=False, header_style="bold")
    for column in (
        "queue",
        "waiting",
        "longest wait",
        "offered/s",
        "assigned/s",
        "in service",
        "wrapping",
        "completed",
        "eligible",
    ):
        table.add_column(column, justify="left" if column == "queue" else "right")
    for queue in stats.queues:
        offered_per_s, assigned_per_s = state.stats.rates(queue.queue_id)
        wait_style = "red" if queue.longest_wait_s >= 10 else ""
        table.add_row(
            queue.queue_id,
            str(queue.waiting),
            Text(f"{queue.longest_wait_s:.1f} s", style=wait_style),
            f"{offered_per_s:.1f}",
            f"{assigned_per_s:.1f}",
            str(queue.assigned),
            str(queue.wrapping),
            str(queue.completed_total),
            str(queue.eligible_workers),
        )
    header = Text.assemble(
        ("Switchboard demo", "bold"),
        f"  router {state.address} · {config.agents} agents · {config.rate_per_s:g} tasks/s · "
        f"seed {config.seed} · {min(state.elapsed_s, config.duration_s):.1f} s of "
        f"{config.duration_s:g} s · Ctrl-C to stop",
    )
    return Group(
        header,
        table,
        Text(_agents_line(stats)),
        Text(_fleet_line(state.fleet)),
        Text(_empathy_line(state), style="cyan"),
    )


def _plain_line(state: DemoState) -> str:
    totals = _totals(state.stats.latest)
    agents = _agents_line(state.stats.latest)
    return (
        f"[{state.elapsed_s:5.1f}s] created {totals['created']} waiting {totals['waiting']} "
        f"assigned {totals['assigned']} completed {totals['completed']} "
        f"canceled {totals['canceled']} | {agents} | empathy of the agents assigned to upset "
        f"customers {_mean_empathy(state.fleet.empathy_upset)}, "
        f"to calm ones {_mean_empathy(state.fleet.empathy_calm)}"
    )


def _print_summary(console: Console, state: DemoState) -> None:
    stats = state.stats.latest
    table = Table(title="Summary", title_justify="left", header_style="bold")
    for column in ("queue", "created", "assigned", "completed", "canceled", "avg wait", "max wait"):
        table.add_column(column, justify="left" if column == "queue" else "right")
    all_waits_ms: list[int] = []
    for queue in stats.queues:
        waits_ms = state.fleet.waits_ms_by_queue.get(queue.queue_id, [])
        all_waits_ms += waits_ms
        table.add_row(
            queue.queue_id,
            str(queue.created_total),
            str(queue.assigned_total),
            str(queue.completed_total),
            str(queue.canceled_total),
            *_waits(waits_ms),
        )
    totals = _totals(stats)
    table.add_row(
        "all",
        str(totals["created"]),
        str(totals["assigned"]),
        str(totals["completed"]),
        str(totals["canceled"]),
        *_waits(all_waits_ms),
        style="bold",
    )
    run_s = max(state.run_s, 1e-3)
    console.print(table)
    for line in (
        f"throughput: {totals['assigned']} assigned, {totals['completed']} completed in "
        f"{run_s:.1f} s ({totals['assigned'] / run_s:.2f} assigned/s, "
        f"{totals['completed'] / run_s:.2f} completed/s); waits run from creation to assignment",
        f"{_fleet_line(state.fleet)}; {state.arrivals.refused} arrivals refused",
        _empathy_line(state),
    ):
        console.print(line, soft_wrap=True, highlight=False)


def _waits(waits_ms: list[int]) -> tuple[str, str]:
    if not waits_ms:
        return "-", "-"
    return f"{statistics.fmean(waits_ms) / 1000:.2f} s", f"{max(waits_ms) / 1000:.2f} s"


# == running ====================================================================================


async def _demo(config: DemoConfig, console: Console) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Durable, as in production, but in a folder of its own: each demo starts from nothing.
    data_dir = Path(tempfile.mkdtemp(prefix="switchboard-demo-"))
    try:
        server = await start_server(
            ServerConfig(port=config.port, metrics_port=0, data_dir=data_dir)
        )
    except (OSError, RuntimeError) as error:  # grpc reports a port it cannot bind as RuntimeError
        console.print(f"error: cannot start the router: {error}", soft_wrap=True, highlight=False)
        shutil.rmtree(data_dir, ignore_errors=True)
        return 1
    address = server.address
    console.print(
        f"router on {address} (metrics on http://{server.config.host}:{server.metrics_port}"
        f"/metrics); {config.agents} agents, {config.rate_per_s:g} tasks/s for "
        f"{config.duration_s:g} s, seed {config.seed}",
        soft_wrap=True,
        highlight=False,
    )
    try:
        await server.wait_until_leading()
        await _create_queues(address)
        state = await _run_center(config, console, address, stop)
    finally:
        await server.stop(SERVER_STOP_GRACE_S)
        shutil.rmtree(data_dir, ignore_errors=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    _print_summary(console, state)
    return 0


async def _create_queues(address: str) -> None:
    async with AdminClient(address, call_timeout_s=5) as admin:
        for queue in QUEUES:
            await admin.upsert_queue(queue.to_pb())


async def _run_center(
    config: DemoConfig, console: Console, address: str, stop: asyncio.Event
) -> DemoState:
    """Runs the fleet and the arrivals until the duration ends or `stop` is set."""
    profiles_rng, fleet_rng, traffic_rng, arrivals_rng = np.random.default_rng(config.seed).spawn(4)
    # The center staffs the teams of its own queues only.
    domains = sorted({domain for queue in QUEUES for domain in queue.domains})
    profiles = AgentProfileFactory(profiles_rng, domains=domains).profiles(config.agents)
    fleet_seed = int(fleet_rng.integers(2**31))
    fleet = Fleet(address, profiles, behaviour=AGENT_BEHAVIOUR, seed=fleet_seed)
    stats = StatsReader(address)
    try:
        async with fleet, TaskClient(address) as tasks:
            empathy_mean = statistics.fmean(profile.empathy for profile in profiles)
            state = DemoState(config, address, fleet.stats, stats, ArrivalCounts(), empathy_mean)
            await stats.read()  # the first frame shows the queues
            traffic = Traffic(traffic_rng, QUEUES)
            arrivals = asyncio.create_task(
                _arrivals(tasks, traffic, config.rate_per_s, arrivals_rng, state.arrivals)
            )
            try:
                await _watch(state, console, stop)
                state.run_s = state.elapsed_s
            finally:
                arrivals.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await arrivals
            await stats.read()
    finally:
        await stats.close()
    return state


async def _watch(state: DemoState, console: Console, stop: asyncio.Event) -> None:
    """Redraws the live view (or prints a plain line now and then) until the end."""
    if state.config.live:
        with Live(_live_view(state), console=console, auto_refresh=False) as live:
            while _running(state, stop):
                await _refresh(state, stop)
                live.update(_live_view(state), refresh=True)
        return
    next_line_s = PLAIN_LINE_EVERY_S
    while _running(state, stop):
        await _refresh(state, stop)
        if state.elapsed_s >= next_line_s:
            next_line_s += PLAIN_LINE_EVERY_S
            console.print(_plain_line(state), soft_wrap=True, highlight=False)


def _running(state: DemoState, stop: asyncio.Event) -> bool:
    return not stop.is_set() and state.elapsed_s < state.config.duration_s


async def _refresh(state: DemoState, stop: asyncio.Event) -> None:
    """Reads the statistics, then sleeps until the next refresh (waking early on Ctrl-C)."""
    with contextlib.suppress(SwitchboardError):
        await state.stats.read()
    remaining_s = state.config.duration_s - state.elapsed_s
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max(0.0, min(REFRESH_S, remaining_s)))
