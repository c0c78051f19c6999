"""Dead agents: what a desktop that dies without a goodbye costs the customers, with and without
presence, against simply having fewer agents.

A center of AGENTS identical agents (one skill) at OCCUPANCY for one simulated hour per seed;
nobody hangs up, so every variant serves every customer and the waits compare like for like.
At the start, before the first contact, `k` agents' desktops die: their Connect stream drops
without a goodbye. They stay `available` and never answer an offer, so every offer made to one
waits out the queue's reservation timeout (30 s by default); having taken no work, a dead agent
is always the longest idle, so it gets the first offer whenever it is free, and a contact can
bounce through several dead agents in turn (a timed-out offer excludes only that agent).

    none           AGENTS agents, nobody dead
    dead           k dead agents, no presence: the router is never told (as before presence)
    dead+presence  the same k dead agents; the service issues `PresenceLost` as the stream drops,
                   the grace (10 s by default) runs, and they move to `offline`
    fewer          AGENTS - k agents, nobody dead

Every variant replays the same trace per seed through the real core in virtual time, firing its
timers (offer expiry, the presence grace) as the service's ticks would. Live agents accept every
offer at once and take no after-call work; a call lasts its contact's work."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import numpy as np
import numpy.typing as npt

from benchmarks.simulation.center import Contact, make_trace
from benchmarks.simulation.metrics import WARM_UP_SHARE, mean_ci95
from router.core import commands as cmd
from router.core.engine import Engine
from router.core.events import Event, OfferClosed, OfferCreated, TaskAssigned
from router.core.model import (
    PresenceSettings,
    QueueConfig,
    ReservationStatus,
    TaskSpec,
    WorkerProfile,
)

AGENTS: Final = 20
OCCUPANCY: Final = 0.7
"""Offered load / agents: 14 Erlangs on 20 agents."""
MEAN_WORK_S: Final = 240.0
HOUR_S: Final = 3600.0
DEAD_COUNTS: Final = (1, 5)
SKILL: Final = "support"
QUEUE_ID: Final = "center"
START_MS: Final = 1_800_000_000_000

CLOSE_TOLERANCE: Final = 0.10
CLOSE_TOLERANCE_S: Final = 1.0
"""Presence is "close to fewer agents" when its mean wait is within CLOSE_TOLERANCE of the
fewer-agents mean, or CLOSE_TOLERANCE_S, whichever is larger. Dying before any offer was made to
them, the dead agents are never offered anything once lost, so the two differ only by ties among
equally idle agents (nothing at all when ties fall the same way). 10%, and at least 1 s where
10% of a low wait is a fraction of a second, absorbs that, and stays far below the gap to the
no-presence case (2x and more)."""


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    dead: int
    """Agents whose desktops die at the start (the first `dead` ones)."""
    presence: bool = False
    """The service issues `PresenceLost` for each as its stream drops."""
    fewer: bool = False
    """The dead agents are not in the center at all."""


def variants() -> list[Variant]:
    """The variants compared, in the order the table lists them."""
    listed = [Variant("none", 0)]
    for k in DEAD_COUNTS:
        listed += [
            Variant(f"{k}_dead", k),
            Variant(f"{k}_dead_presence", k, presence=True),
            Variant(f"{k}_fewer", k, fewer=True),
        ]
    return listed


def make_dead_agent_trace(seed: int, hours: float = 1.0) -> list[Contact]:
    """Poisson arrivals at OCCUPANCY x AGENTS Erlangs for `hours`, one skill, lognormal work;
    nobody hangs up."""
    rate_per_s = OCCUPANCY * AGENTS / MEAN_WORK_S
    return make_trace(
        round(rate_per_s * HOUR_S * hours),
        rate_per_s,
        seed,
        mean_work_s=MEAN_WORK_S,
        mean_patience_s=None,
        need_share={SKILL: 1.0},
        start_ms=START_MS,
    )


@dataclass(slots=True)
class DeadAgentOutcomes:
    """Per contact, in arrival order, and what reached the dead agents."""

    wait_ms: npt.NDArray[np.int64]
    offers: npt.NDArray[np.int64]
    """Offers made for the contact (accepted or not)."""
    timed_out: npt.NDArray[np.int64]
    """Of those, offers that waited out the reservation timeout."""
    dead_offer_ms: list[int] = field(default_factory=list)
    """When each offer to a dead agent was made."""
    dead_activities: list[str] = field(default_factory=list)
    """The dead agents' activities when the run ended."""


def _worker_id(index: int) -> str:
    return f"a{index}"


def run(
    trace: Sequence[Contact],
    variant: Variant,
    *,
    agents: int = AGENTS,
    grace_s: float | None = None,
) -> DeadAgentOutcomes:
    """Replays the trace through the real core under `variant`; `grace_s` sets the presence
    grace (None: the default)."""
    engine = Engine()
    engine.apply(cmd.UpsertQueue(QueueConfig(QUEUE_ID)), START_MS)
    if grace_s is not None:
        settings = PresenceSettings(presence_grace_s=grace_s)
        engine.apply(cmd.UpsertPresenceSettings(settings), START_MS)
    dying = [_worker_id(i) for i in range(variant.dead)]
    staff = [_worker_id(i) for i in range(variant.dead if variant.fewer else 0, agents)]
    for worker_id in staff:
        profile = WorkerProfile(
            worker_id, skills={SKILL: 3.0}, capacity_by_channel={"voice": 1}, activity="available"
        )
        engine.apply(cmd.UpsertWorker(profile), START_MS)
        engine.apply(cmd.WorkerAttached(worker_id), START_MS)  # every desktop logs in
    dead = set() if variant.fewer else set(dying)
    if variant.presence:
        for worker_id in sorted(dead):  # the streams drop: the service tells the core at once
            engine.apply(cmd.PresenceLost(worker_id), START_MS)
    engine.take_events()

    count = len(trace)
    outcomes = DeadAgentOutcomes(
        wait_ms=np.full(count, -1, dtype=np.int64),
        offers=np.zeros(count, dtype=np.int64),
        timed_out=np.zeros(count, dtype=np.int64),
    )
    contact_of_task: dict[str, int] = {}
    # (time ms, order, contact index, task id): arrivals (order 0) before the ends of calls.
    pending: list[tuple[int, int, int, str]] = [(c.arrival_ms, 0, c.index, "") for c in trace]
    heapq.heapify(pending)
    answered = 0

    def settle(now_ms: int) -> None:
        """Live agents accept their offers at once; dead ones never answer."""
        nonlocal answered
        while events := engine.take_events():
            for event in events:
                answered += _observe(event, now_ms)

    def _observe(event: Event, now_ms: int) -> int:
        if isinstance(event, OfferCreated):
            reservation = event.reservation
            outcomes.offers[contact_of_task[reservation.task_id]] += 1
            if reservation.worker_id in dead:
                outcomes.dead_offer_ms.append(now_ms)
            else:
                accept = cmd.AcceptOffer(reservation.worker_id, reservation.reservation_id)
                engine.apply(accept, now_ms)
        elif isinstance(event, OfferClosed):
            if event.reservation.status is ReservationStatus.TIMED_OUT:
                outcomes.timed_out[contact_of_task[event.reservation.task_id]] += 1
        elif isinstance(event, TaskAssigned):
            task_id = event.task.task_id
            index = contact_of_task[task_id]
            outcomes.wait_ms[index] = now_ms - trace[index].arrival_ms
            end_ms = now_ms + max(1, round(trace[index].work_s * 1000))
            heapq.heappush(pending, (end_ms, 1, index, task_id))
            return 1
        return 0

    while pending or answered < count:
        timer_ms = engine.next_timer_ms()
        if timer_ms is not None and (not pending or timer_ms < pending[0][0]):
            engine.apply(cmd.Tick(), timer_ms)  # an offer expires, a grace runs out
            settle(timer_ms)
            continue
        if not pending:
            raise RuntimeError("contacts wait with nothing left to happen")
        now_ms, order, index, task_id = heapq.heappop(pending)
        if order == 0:
            spec = TaskSpec(channel="voice", queue_id=QUEUE_ID, required_skills={SKILL: 1.0})
            created = engine.apply(cmd.CreateTask(spec), now_ms)
            contact_of_task[created.task.task_id] = index
        else:
            engine.apply(cmd.CompleteTask(task_id), now_ms)
        settle(now_ms)
    outcomes.dead_activities = [engine.workers[w].activity for w in sorted(dead)]
    return outcomes


def summarise_dead_agents(outcomes: DeadAgentOutcomes) -> dict[str, float]:
    """The figures of one run over the contacts after the warm-up: mean, p90 and worst wait,
    and the share of their offers that timed out."""
    start = int(len(outcomes.wait_ms) * WARM_UP_SHARE)
    wait_s = outcomes.wait_ms[start:] / 1000
    offers = int(outcomes.offers[start:].sum())
    return {
        "mean_wait_s": float(wait_s.mean()),
        "p90_wait_s": float(np.percentile(wait_s, 90)),
        "worst_wait_s": float(wait_s.max()),
        "timed_out_share": float(outcomes.timed_out[start:].sum() / offers) if offers else 0.0,
    }


def compare(seeds: int) -> list[dict[str, float | str]]:
    """Every variant on the same `seeds` one-hour traces; each figure's mean over seeds and its
    95% CI half-width, and the worst wait of any seed (`worst_wait_max_s`)."""
    runs: dict[Variant, list[dict[str, float]]] = {variant: [] for variant in variants()}
    for seed in range(1, seeds + 1):
        trace = make_dead_agent_trace(seed)
        for variant, variant_runs in runs.items():
            variant_runs.append(summarise_dead_agents(run(trace, variant)))
    rows: list[dict[str, float | str]] = []
    for variant, variant_runs in runs.items():
        row: dict[str, float | str] = {
            "variant": variant.name,
            "agents": float(AGENTS - variant.dead if variant.fewer else AGENTS),
            "dead": float(0 if variant.fewer else variant.dead),
            "presence": float(variant.presence),
            "seeds": float(seeds),
        }
        for key in variant_runs[0]:
            mean, half_width = mean_ci95([r[key] for r in variant_runs])
            row[key] = round(mean, 4)
            row[f"{key}_ci95"] = round(half_width, 4)
        row["worst_wait_max_s"] = round(max(r["worst_wait_s"] for r in variant_runs), 3)
        rows.append(row)
    return rows


def verdict(rows: Sequence[dict[str, float | str]]) -> dict[str, bool]:
    """Per dead count k: whether presence brings the mean wait with k dead agents within the
    tolerance (CLOSE_TOLERANCE, CLOSE_TOLERANCE_S) of k fewer agents', and far below the
    no-presence case's (non-overlapping 95% intervals)."""
    by_name = {str(r["variant"]): r for r in rows}
    checks = {}
    for k in DEAD_COUNTS:
        dead = by_name[f"{k}_dead"]
        presence = by_name[f"{k}_dead_presence"]
        fewer = by_name[f"{k}_fewer"]
        tolerance_s = max(CLOSE_TOLERANCE_S, CLOSE_TOLERANCE * float(fewer["mean_wait_s"]))
        gap_s = abs(float(presence["mean_wait_s"]) - float(fewer["mean_wait_s"]))
        checks[f"presence_{k}_dead_close_to_{k}_fewer_agents"] = gap_s <= tolerance_s
        low = float(dead["mean_wait_s"]) - float(dead["mean_wait_s_ci95"])
        high = float(presence["mean_wait_s"]) + float(presence["mean_wait_s_ci95"])
        checks[f"presence_{k}_dead_far_below_no_presence"] = low > high
    return checks
