"""M/M/c queueing theory (Erlang C) and an independent simulator (ciw), to check the simulation
against.

The case: `agents` identical agents, Poisson arrivals, exponential handle times with mean
`handle_s`, offered load A = arrival rate x handle_s Erlangs (A < agents), nobody hangs up."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import ciw

from benchmarks.simulation import outcomes
from benchmarks.simulation.center import Agent, Contact


@dataclass(frozen=True, slots=True)
class QueueFigures:
    p_wait: float
    """The share of contacts that wait at all."""
    service_level: float
    """The share answered within the service-level threshold."""
    asa_s: float
    """Mean wait (average speed of answer), over all contacts."""


def erlang_c(agents: int, load_erlangs: float, handle_s: float, threshold_s: float) -> QueueFigures:
    """The closed forms: P(wait) = C(c, A) by the Erlang B recursion (stable for large c),
    service level = 1 - C e^{-(c - A) t / h}, ASA = C h / (c - A)."""
    if not 0 < load_erlangs < agents:
        raise ValueError(f"offered load {load_erlangs} must be in (0, agents={agents})")
    blocking = 1.0  # Erlang B with 0 agents
    for k in range(1, agents + 1):
        blocking = load_erlangs * blocking / (k + load_erlangs * blocking)
    p_wait = agents * blocking / (agents - load_erlangs * (1 - blocking))
    spare = agents - load_erlangs
    return QueueFigures(
        p_wait=p_wait,
        service_level=1 - p_wait * math.exp(-spare * threshold_s / handle_s),
        asa_s=p_wait * handle_s / spare,
    )


def ciw_waits_s(agents: int, gaps_s: Sequence[float], handles_s: Sequence[float]) -> list[float]:
    """Each customer's wait in an FCFS queue with `agents` servers, by ciw (its own event
    engine), given the inter-arrival gaps and the handle times in arrival order: the same sample
    path the real core was given, so the two must agree customer by customer."""
    # ciw's Sequential cycles through its values: a last, endless gap keeps a second lap of
    # arrivals from joining before the last customer of this one is served.
    network = ciw.create_network(
        arrival_distributions=[ciw.dists.Sequential([*gaps_s, math.inf])],
        service_distributions=[ciw.dists.Sequential(list(handles_s))],
        number_of_servers=[agents],
    )
    simulation = ciw.Simulation(network)
    simulation.simulate_until_max_customers(len(gaps_s), method="Finish", progress_bar=False)
    records = sorted(simulation.get_all_records(), key=lambda r: r.arrival_date)
    return [r.waiting_time for r in records]


def ciw_waits_for_trace(
    trace: Sequence[Contact], staff: Sequence[Agent], start_ms: int
) -> list[float]:
    """`ciw_waits_s` on a trace's own sample path: its arrival gaps from `start_ms`, and each
    contact's handle time with the (identical) agents of `staff`."""
    arrivals_s = [(c.arrival_ms - start_ms) / 1000 for c in trace]
    gaps_s = [arrivals_s[0]] + [later - earlier for earlier, later in pairwise(arrivals_s)]
    handles_s = [outcomes.handle_ms(c, staff[0]) / 1000 for c in trace]
    return ciw_waits_s(len(staff), gaps_s, handles_s)
