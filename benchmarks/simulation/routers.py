"""The router under test, as the simulation sees a router: three calls, each returning the
assignments it made (contact index, agent index). Every offer is accepted at once, so an
assignment is final.

`EngineRouter` is Switchboard's real core (`router.core.engine.Engine`), driven command by command
in virtual time exactly as the service drives it; the baselines are in `baselines.py`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from benchmarks.simulation.center import Agent, Contact
from router.core import commands as cmd
from router.core.engine import CreatedTask, Engine
from router.core.events import OfferCreated, TaskAssigned
from router.core.model import (
    PolicyFilter,
    QueueConfig,
    Route,
    RoutingPolicy,
    RoutingStep,
    ScoringWeights,
    TaskSpec,
    WorkerProfile,
)

Assignment = tuple[int, int]
"""(contact index, agent index)."""

QUEUE_ID = "center"
POLICY_ID = "experts-first"


def experts_first_policy(needs: Sequence[str], level_min: int, wait_s: float) -> RoutingPolicy:
    """A bullseye workflow: for its first `wait_s` a contact waits for an agent at `level_min` or
    more in its need, then anyone with the skill may take it."""

    def route(need: str) -> Route:
        experts = RoutingStep(timeout_s=wait_s, required_skills={need: level_min})
        return Route(QUEUE_ID, (experts, RoutingStep()))

    filters = tuple(PolicyFilter(need, f'need == "{need}"', route(need)) for need in needs)
    return RoutingPolicy(POLICY_ID, filters=filters)


class Router(Protocol):
    def arrive(self, contact: Contact, now_ms: int) -> list[Assignment]:
        """A contact arrives: it is assigned at once or waits."""
        ...

    def abandon(self, contact: Contact, now_ms: int) -> None:
        """A waiting contact hangs up."""
        ...

    def release(self, agent: Agent, contact: Contact, now_ms: int) -> list[Assignment]:
        """The agent finished the contact and is free (at once: no after-call work)."""
        ...


class EngineRouter:
    """Switchboard's core: one queue over the whole center; each contact requires its need
    (level 1 or more) and carries its sentiment, so the queue's scoring weighs skill fit and
    empathy fit (see router/core/scoring.py)."""

    def __init__(
        self,
        agents: Sequence[Agent],
        weights: ScoringWeights,
        start_ms: int,
        policy: RoutingPolicy | None = None,
    ) -> None:
        self._engine = Engine()
        self._engine.apply(cmd.UpsertQueue(QueueConfig(QUEUE_ID, weights=weights)), start_ms)
        if policy is not None:
            self._engine.apply(cmd.UpsertRoutingPolicy(policy), start_ms)
        self._policy_id = policy.policy_id if policy is not None else ""
        for agent in agents:
            profile = WorkerProfile(
                f"a{agent.index}",
                skills={need: float(level) for need, level in agent.levels.items()},
                empathy=agent.empathy,
                capacity_by_channel={"voice": 1},
                activity="available",
            )
            self._engine.apply(cmd.UpsertWorker(profile), start_ms)
        self._engine.take_events()
        self._agent_of_worker = {f"a{agent.index}": agent.index for agent in agents}
        self._task_of_contact: dict[int, str] = {}
        self._contact_of_task: dict[str, int] = {}

    def arrive(self, contact: Contact, now_ms: int) -> list[Assignment]:
        spec = TaskSpec(
            channel="voice",
            queue_id="" if self._policy_id else QUEUE_ID,
            policy_id=self._policy_id,
            attributes={"need": contact.need},
            required_skills={contact.need: 1.0},
            sentiment=contact.sentiment,
        )
        created: CreatedTask = self._engine.apply(cmd.CreateTask(spec), now_ms)
        task_id = created.task.task_id
        self._task_of_contact[contact.index] = task_id
        self._contact_of_task[task_id] = contact.index
        return self._assignments(now_ms)

    def abandon(self, contact: Contact, now_ms: int) -> None:
        task_id = self._task_of_contact.pop(contact.index)
        del self._contact_of_task[task_id]
        self._engine.apply(cmd.CancelTask(task_id, "abandoned"), now_ms)
        self._engine.take_events()

    def release(self, agent: Agent, contact: Contact, now_ms: int) -> list[Assignment]:
        task_id = self._task_of_contact.pop(contact.index)
        del self._contact_of_task[task_id]
        self._engine.apply(cmd.CompleteTask(task_id), now_ms)
        return self._assignments(now_ms)

    def _assignments(self, now_ms: int) -> list[Assignment]:
        """Accepts every offer the last command made, and returns the assignments."""
        made: list[Assignment] = []
        while events := self._engine.take_events():
            for event in events:
                if isinstance(event, OfferCreated):
                    reservation = event.reservation
                    accept = cmd.AcceptOffer(reservation.worker_id, reservation.reservation_id)
                    self._engine.apply(accept, now_ms)
                elif isinstance(event, TaskAssigned):
                    contact_index = self._contact_of_task[event.task.task_id]
                    made.append((contact_index, self._agent_of_worker[event.task.worker_id]))
        return made
