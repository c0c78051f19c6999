"""The discrete-event loop: a trace of contacts replayed against a router in virtual time (no
sockets, no sleeping). Events are arrivals, hang-ups of customers still waiting, and the ends of
calls; every offer is accepted at once and agents take no after-call work."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from benchmarks.simulation import outcomes
from benchmarks.simulation.center import Agent, Contact
from benchmarks.simulation.routers import Assignment, Router

ARRIVE, HANG_UP, END = 0, 1, 2
"""Event kinds; at the same millisecond an arrival goes first, then a hang-up, then a call end."""


@dataclass(frozen=True, slots=True)
class Outcomes:
    """Per contact, in arrival order."""

    wait_ms: npt.NDArray[np.int64]
    """Arrival to answer; -1 for a contact that hung up first."""
    resolved: npt.NDArray[np.bool_]
    satisfaction: npt.NDArray[np.float64]
    """1 to 5 for answered contacts, NaN for abandoned ones."""


def replay(trace: Sequence[Contact], agents: Sequence[Agent], router: Router) -> Outcomes:
    """Runs the whole trace through `router` and returns what happened to every contact."""
    count = len(trace)
    wait_ms = np.full(count, -1, dtype=np.int64)
    resolved = np.zeros(count, dtype=np.bool_)
    satisfaction = np.full(count, np.nan)
    # (time ms, kind, contact index, agent index): unique per contact and kind, so no ties
    # reach the agent index.
    events: list[tuple[int, int, int, int]] = [(c.arrival_ms, ARRIVE, c.index, -1) for c in trace]
    heapq.heapify(events)

    def answer(assignments: list[Assignment], now_ms: int) -> None:
        for contact_index, agent_index in assignments:
            contact, agent = trace[contact_index], agents[agent_index]
            waited_ms = now_ms - contact.arrival_ms
            wait_ms[contact_index] = waited_ms
            solved = contact.resolve_draw < outcomes.resolve_chance(contact, agent)
            resolved[contact_index] = solved
            satisfaction[contact_index] = outcomes.satisfaction(contact, agent, solved, waited_ms)
            end_ms = now_ms + outcomes.handle_ms(contact, agent)
            heapq.heappush(events, (end_ms, END, contact_index, agent_index))

    while events:
        now_ms, kind, contact_index, agent_index = heapq.heappop(events)
        contact = trace[contact_index]
        if kind == ARRIVE:
            answer(router.arrive(contact, now_ms), now_ms)
            if contact.patience_ms is not None and wait_ms[contact_index] < 0:
                heapq.heappush(events, (now_ms + contact.patience_ms, HANG_UP, contact_index, -1))
        elif kind == HANG_UP:
            if wait_ms[contact_index] < 0:
                router.abandon(contact, now_ms)
        else:
            answer(router.release(agents[agent_index], contact, now_ms), now_ms)
    return Outcomes(wait_ms, resolved, satisfaction)
