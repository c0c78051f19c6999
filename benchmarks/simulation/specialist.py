"""The specialist case: some contacts need a skill that first-contact agents lack. Is it better
to route them to the right agent at once, or to route anywhere and transfer?

The center: `SPECIALIST_AGENT_SHARE` of the agents also handle disputes (level 3-5) on top of
general work (level 2-5, as everyone). The traffic: `DISPUTE_SHARE` of the contacts are
disputes. The model (documented in benchmarks/README.md):

- A general contact, or a dispute handled by a specialist: handle time and resolution as in
  `outcomes.py`, with the agent's level in that skill.
- A dispute handled by an agent without the skill: the agent spends `DIAGNOSE_SHARE` of the
  contact's work finding out, and resolves it with chance `GENERALIST_RESOLVE` (a workaround);
  otherwise it transfers the contact to a specialist, who then handles it in full.

Policies, on identical traces (common random numbers):
- `right_agent_first`: the front end says what the contact is about (an IVR menu, a chat
  intent), so a dispute requires the disputes skill and goes to a specialist at once.
- `anywhere_then_transfer`: every contact is routed as general work; an agent who cannot resolve
  a dispute transfers it cold (`TransferTask`) to the disputes skill: it keeps its age.
- `anywhere_then_recreate`: the same, done as TaskRouter documents it (complete the task and
  create a new one): the dispute starts again at the back of the line.

Every policy drives Switchboard's real core (`router.core.engine.Engine`) command by command in
virtual time; every offer is accepted at once and agents take no after-call work."""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Final

import numpy as np
import numpy.typing as npt

from benchmarks.simulation.center import Contact, make_trace
from benchmarks.simulation.metrics import WARM_UP_SHARE, mean_ci95
from router.core import commands as cmd
from router.core.conversation_model import TransferMode, TransferTarget
from router.core.engine import Engine
from router.core.events import OfferCreated, TaskAssigned
from router.core.model import QueueConfig, TaskSpec, WorkerProfile

GENERAL: Final = "general"
DISPUTES: Final = "disputes"
DISPUTE_SHARE: Final = 0.25
"""Share of contacts that are disputes (a chargeback, a contested bill)."""
SPECIALIST_AGENT_SHARE: Final = 0.3
"""Share of agents who also handle disputes."""
DIAGNOSE_SHARE: Final = 0.4
"""How much of a dispute's work an agent without the skill spends before giving up on it."""
GENERALIST_RESOLVE: Final = 0.2
"""The chance that an agent without the skill resolves a dispute anyway."""
RESOLVE_BASE: Final = 0.5
RESOLVE_PER_LEVEL: Final = 0.09
MEAN_WORK_S: Final = 240.0
OFFERED_LOAD_PER_AGENT: Final = 0.9
"""Erlangs per agent at an average agent's speed, before any transfer adds work."""
QUEUE_ID: Final = "center"
START_MS: Final = 1_800_000_000_000


class Policy(Enum):
    RIGHT_AGENT_FIRST = "right_agent_first"
    ANYWHERE_THEN_TRANSFER = "anywhere_then_transfer"
    ANYWHERE_THEN_RECREATE = "anywhere_then_recreate"


@dataclass(frozen=True, slots=True)
class Staff:
    index: int
    levels: dict[str, int]
    """Skill -> level 1 to 5; DISPUTES only for specialists."""


def make_staff(count: int, seed: int) -> list[Staff]:
    """`count` agents; the first `SPECIALIST_AGENT_SHARE` of them (rounded up) handle disputes."""
    rng = np.random.default_rng(seed)
    specialists = max(1, round(count * SPECIALIST_AGENT_SHARE))
    staff = []
    for index in range(count):
        levels = {GENERAL: int(rng.integers(2, 6))}
        if index < specialists:
            levels[DISPUTES] = int(rng.integers(3, 6))
        staff.append(Staff(index, levels))
    return staff


def make_specialist_trace(count: int, agents: int, seed: int) -> list[Contact]:
    """Poisson arrivals at OFFERED_LOAD_PER_AGENT x agents Erlangs; nobody hangs up, so that
    every policy serves every customer and the times compare like for like."""
    return make_trace(
        count,
        OFFERED_LOAD_PER_AGENT * agents / MEAN_WORK_S,
        seed,
        mean_work_s=MEAN_WORK_S,
        mean_patience_s=None,
        need_share={GENERAL: 1 - DISPUTE_SHARE, DISPUTES: DISPUTE_SHARE},
        start_ms=START_MS,
    )


def _speed(level: int) -> float:
    return 1.3 - 0.1 * level


def _resolve_chance(level: int) -> float:
    return RESOLVE_BASE + RESOLVE_PER_LEVEL * level


@dataclass(frozen=True, slots=True)
class SpecialistOutcomes:
    """Per contact, in arrival order."""

    first_wait_ms: npt.NDArray[np.int64]
    specialist_wait_ms: npt.NDArray[np.int64]
    """From the transfer to the specialist's answer; -1 for a contact not transferred."""
    total_ms: npt.NDArray[np.int64]
    """Arrival to the end of the last agent's handling: what the customer lives through."""
    transferred: npt.NDArray[np.bool_]
    first_contact_resolved: npt.NDArray[np.bool_]
    resolved: npt.NDArray[np.bool_]


class _Center:
    """The real core with one queue over the center, and the contacts' tasks."""

    def __init__(self, staff: Sequence[Staff]) -> None:
        self.engine = Engine()
        self.engine.apply(cmd.UpsertQueue(QueueConfig(QUEUE_ID)), START_MS)
        for agent in staff:
            profile = WorkerProfile(
                f"a{agent.index}",
                skills={skill: float(level) for skill, level in agent.levels.items()},
                capacity_by_channel={"voice": 1},
                activity="available",
            )
            self.engine.apply(cmd.UpsertWorker(profile), START_MS)
        self.engine.take_events()
        self.contact_of_task: dict[str, int] = {}

    def create(self, contact: Contact, skill: str, now_ms: int) -> None:
        spec = TaskSpec(channel="voice", queue_id=QUEUE_ID, required_skills={skill: 1.0})
        created = self.engine.apply(cmd.CreateTask(spec), now_ms)
        self.contact_of_task[created.task.task_id] = contact.index

    def assignments(self, now_ms: int) -> list[tuple[int, int, str]]:
        """Accepts every offer made; returns (contact index, agent index, task id) assigned."""
        made = []
        while events := self.engine.take_events():
            for event in events:
                if isinstance(event, OfferCreated):
                    reservation = event.reservation
                    accept = cmd.AcceptOffer(reservation.worker_id, reservation.reservation_id)
                    self.engine.apply(accept, now_ms)
                elif isinstance(event, TaskAssigned):
                    task = event.task
                    made.append((self.contact_of_task[task.task_id], int(task.worker_id[1:]),
                                 task.task_id))  # fmt: skip
        return made


def run(trace: Sequence[Contact], staff: Sequence[Staff], policy: Policy) -> SpecialistOutcomes:
    """Replays the trace under `policy` and returns what each customer lived through."""
    count = len(trace)
    first_wait_ms = np.full(count, -1, dtype=np.int64)
    specialist_wait_ms = np.full(count, -1, dtype=np.int64)
    handed_ms = np.zeros(count, dtype=np.int64)
    total_ms = np.zeros(count, dtype=np.int64)
    transferred = np.zeros(count, dtype=np.bool_)
    first_resolved = np.zeros(count, dtype=np.bool_)
    resolved = np.zeros(count, dtype=np.bool_)
    center = _Center(staff)
    # (time ms, order, contact index, agent index, task id): arrivals (order 0) before ends.
    events: list[tuple[int, int, int, int, str]] = [
        (c.arrival_ms, 0, c.index, -1, "") for c in trace
    ]
    heapq.heapify(events)

    def start(now_ms: int) -> None:
        for contact_index, agent_index, task_id in center.assignments(now_ms):
            contact, agent = trace[contact_index], staff[agent_index]
            if first_wait_ms[contact_index] < 0:
                first_wait_ms[contact_index] = now_ms - contact.arrival_ms
            elif transferred[contact_index]:
                specialist_wait_ms[contact_index] = now_ms - handed_ms[contact_index]
            level = agent.levels.get(contact.need)
            if level is None:  # a dispute on a generalist: it tries, then gives up or not
                work_s = contact.work_s * DIAGNOSE_SHARE * _speed(agent.levels[GENERAL])
            else:
                work_s = contact.work_s * _speed(level)
            end_ms = now_ms + max(1, round(work_s * 1000))
            heapq.heappush(events, (end_ms, 1, contact_index, agent_index, task_id))

    while events:
        now_ms, order, contact_index, agent_index, task_id = heapq.heappop(events)
        contact = trace[contact_index]
        if order == 0:
            routed_as = contact.need if policy is Policy.RIGHT_AGENT_FIRST else GENERAL
            center.create(contact, routed_as, now_ms)
            start(now_ms)
            continue
        agent = staff[agent_index]
        level = agent.levels.get(contact.need)
        first = not transferred[contact_index]
        if level is None:
            if contact.resolve_draw < GENERALIST_RESOLVE:
                solved = True
            else:  # hand it to a specialist
                transferred[contact_index] = True
                handed_ms[contact_index] = now_ms
                _hand_to_specialist(center, policy, contact, task_id, now_ms)
                start(now_ms)
                continue
        else:
            solved = contact.resolve_draw < _resolve_chance(level)
        center.engine.apply(cmd.CompleteTask(task_id), now_ms)
        del center.contact_of_task[task_id]
        resolved[contact_index] = solved
        first_resolved[contact_index] = solved and first
        total_ms[contact_index] = now_ms - contact.arrival_ms
        start(now_ms)
    return SpecialistOutcomes(
        first_wait_ms, specialist_wait_ms, total_ms, transferred, first_resolved, resolved
    )


def _hand_to_specialist(
    center: _Center, policy: Policy, contact: Contact, task_id: str, now_ms: int
) -> None:
    if policy is Policy.ANYWHERE_THEN_RECREATE:
        center.engine.apply(cmd.CompleteTask(task_id), now_ms)
        del center.contact_of_task[task_id]
        center.create(contact, DISPUTES, now_ms)
    else:
        target = TransferTarget(required_skills={DISPUTES: 1.0})
        center.engine.apply(
            cmd.TransferTask(task_id, TransferMode.COLD, target, reason="needs disputes"),
            now_ms,
        )


def summarise_specialist(outcomes: SpecialistOutcomes) -> dict[str, float]:
    """The figures of one run, after the warm-up: transfer_rate, first_contact_resolution,
    resolution_rate, first_wait_s (mean), total_s (mean) and total_p90_s over every contact,
    and specialist_wait_s: the mean wait from a transfer to the specialist's answer (0 when
    nothing was transferred)."""
    start = int(len(outcomes.total_ms) * WARM_UP_SHARE)
    total_s = outcomes.total_ms[start:] / 1000
    second_waits_ms = outcomes.specialist_wait_ms[start:][outcomes.transferred[start:]]
    return {
        "specialist_wait_s": float(second_waits_ms.mean() / 1000) if len(second_waits_ms) else 0.0,
        "transfer_rate": float(outcomes.transferred[start:].mean()),
        "first_contact_resolution": float(outcomes.first_contact_resolved[start:].mean()),
        "resolution_rate": float(outcomes.resolved[start:].mean()),
        "first_wait_s": float(outcomes.first_wait_ms[start:].mean() / 1000),
        "total_s": float(total_s.mean()),
        "total_p90_s": float(np.percentile(total_s, 90)),
    }


def dispute_total_s(trace: Sequence[Contact], outcomes: SpecialistOutcomes) -> float:
    """The mean total time of the disputes after the warm-up."""
    start = int(len(trace) * WARM_UP_SHARE)
    disputes = [c.index for c in trace[start:] if c.need == DISPUTES]
    return float(outcomes.total_ms[disputes].mean() / 1000)


def compare(agents: int, contacts: int, seeds: int) -> list[dict[str, float | str]]:
    """Every policy on the same `seeds` traces; each figure's mean and 95% CI half-width."""
    staff = make_staff(agents, seed=2026)
    runs: dict[Policy, list[dict[str, float]]] = {policy: [] for policy in Policy}
    for seed in range(1, seeds + 1):
        trace = make_specialist_trace(contacts, agents, seed)
        for policy in Policy:
            outcomes = run(trace, staff, policy)
            figures = summarise_specialist(outcomes)
            figures["dispute_total_s"] = dispute_total_s(trace, outcomes)
            runs[policy].append(figures)
    rows: list[dict[str, float | str]] = []
    for policy, policy_runs in runs.items():
        row: dict[str, float | str] = {"policy": policy.value, "seeds": float(seeds)}
        for key in policy_runs[0]:
            mean, half_width = mean_ci95([r[key] for r in policy_runs])
            row[key] = round(mean, 4)
            row[f"{key}_ci95"] = round(half_width, 4)
        rows.append(row)
    return rows
