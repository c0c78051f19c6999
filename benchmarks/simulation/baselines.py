"""Re-implementations of the default routing rules of the systems Switchboard is measured
against, each as its documentation states it.

They share the queueing (`QueueingRouter`): one queue per need, the agents with that skill as its
members; a waiting contact is taken oldest first (no priorities here); a freed agent takes the
oldest contact waiting in any of its queues. They differ only in which free member takes a new
contact (`choose`):

- `longest_idle`, Twilio TaskRouter's default. "Without an order_by expression, the Worker who has
  waited the longest without a Task will be the first reserved"; tasks go by priority, then age
  (twilio.com/docs/taskrouter/order-workers, /docs/taskrouter/api/task-queue).
- `acs_best_worker`, Azure Communication Services Job Router, BestWorker mode with its default
  scoring (learn.microsoft.com/azure/communication-services/concepts/router/distribution-concepts):
  each worker selector scores 1 / (1 + e^-x), x = (label value - selector value) / selector
  value for GreaterThanEqual; the score is their mean; ties go to the longest available. Here the
  one selector is `need >= 1` on the agent's skill level label.
- `round_robin`, Asterisk's `rrmemory` ("round robin with memory, remember where we left off last
  ring pass", configs/samples/queues.conf.sample): members in the order they were added; a call
  goes to the first free member after the one who took the previous call, wrapping around.
- `fewest_calls`, Asterisk's `fewestcalls` ("ring the one with fewest completed calls from this
  queue"); ties go to the earlier member.
- `top_down_tiers`, FreeSWITCH mod_callcenter's `top-down` over tiers (developer.signalwire.com,
  mod_callcenter: agents are tried by tier level, then position, starting from the first every
  time). The tiers are what a careful administrator would set: an agent's tier level is 6 - their
  skill level (experts in tier 1), position by roster order; tier rules off (the default), so
  every tier may take calls at once.
"""

from __future__ import annotations

import functools
import math
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Mapping, Sequence

from benchmarks.simulation.center import NEED_SHARE, SKILL_LEVEL_TOP, Agent, Contact
from benchmarks.simulation.routers import Assignment


class QueueingRouter(ABC):
    """The shared mechanics; subclasses implement `choose`."""

    def __init__(
        self, agents: Sequence[Agent], start_ms: int, needs: Sequence[str] = tuple(NEED_SHARE)
    ) -> None:
        self.agents = agents
        self.members: dict[str, list[Agent]] = {
            need: [a for a in agents if need in a.levels] for need in needs
        }
        self.free = [True] * len(agents)
        self.free_since_ms = [start_ms] * len(agents)
        self._waiting: dict[str, deque[Contact]] = {need: deque() for need in needs}
        self._gone: set[int] = set()

    def arrive(self, contact: Contact, now_ms: int) -> list[Assignment]:
        candidates = [a for a in self.members[contact.need] if self.free[a.index]]
        if not candidates:
            self._waiting[contact.need].append(contact)
            return []
        agent = self.choose(contact, candidates, now_ms)
        self.free[agent.index] = False
        return [(contact.index, agent.index)]

    def abandon(self, contact: Contact, now_ms: int) -> None:
        self._gone.add(contact.index)  # dropped when it reaches the head of its queue

    def release(self, agent: Agent, contact: Contact, now_ms: int) -> list[Assignment]:
        self.completed(agent, contact)
        oldest: Contact | None = None
        for need in agent.levels:
            waiting = self._waiting[need]
            while waiting and waiting[0].index in self._gone:
                self._gone.discard(waiting.popleft().index)
            if waiting and (oldest is None or waiting[0].index < oldest.index):
                oldest = waiting[0]
        if oldest is None:
            self.free[agent.index] = True
            self.free_since_ms[agent.index] = now_ms
            return []
        self._waiting[oldest.need].popleft()
        return [(oldest.index, agent.index)]

    @abstractmethod
    def choose(self, contact: Contact, candidates: list[Agent], now_ms: int) -> Agent:
        """Which of the free members (in member order) takes the contact."""

    def completed(self, agent: Agent, contact: Contact) -> None:  # noqa: B027 (optional hook)
        """Hook: the agent finished a contact (nothing to do unless a rule counts calls)."""


class LongestIdle(QueueingRouter):
    def choose(self, contact: Contact, candidates: list[Agent], now_ms: int) -> Agent:
        return min(candidates, key=lambda a: self.free_since_ms[a.index])


class AcsBestWorker(QueueingRouter):
    SELECTOR_LEVEL = 1

    def choose(self, contact: Contact, candidates: list[Agent], now_ms: int) -> Agent:
        def score(agent: Agent) -> float:
            x = (agent.levels[contact.need] - self.SELECTOR_LEVEL) / self.SELECTOR_LEVEL
            return 1 / (1 + math.exp(-x))

        return max(candidates, key=lambda a: (score(a), -self.free_since_ms[a.index]))


class RoundRobinMemory(QueueingRouter):
    def __init__(self, agents: Sequence[Agent], start_ms: int) -> None:
        super().__init__(agents, start_ms)
        self._position = {need: {a.index: i for i, a in enumerate(m)}
                          for need, m in self.members.items()}  # fmt: skip
        self._last = dict.fromkeys(self.members, -1)

    def choose(self, contact: Contact, candidates: list[Agent], now_ms: int) -> Agent:
        positions = self._position[contact.need]
        last = self._last[contact.need]
        # The first free member after the last one rung, wrapping around.
        agent = min(candidates, key=lambda a: (positions[a.index] <= last, positions[a.index]))
        self._last[contact.need] = positions[agent.index]
        return agent


class FewestCalls(QueueingRouter):
    def __init__(self, agents: Sequence[Agent], start_ms: int) -> None:
        super().__init__(agents, start_ms)
        self._calls = {need: [0] * len(agents) for need in self.members}

    def choose(self, contact: Contact, candidates: list[Agent], now_ms: int) -> Agent:
        calls = self._calls[contact.need]
        return min(candidates, key=lambda a: calls[a.index])  # min keeps the first of ties

    def completed(self, agent: Agent, contact: Contact) -> None:
        self._calls[contact.need][agent.index] += 1


class TopDownTiers(QueueingRouter):
    def __init__(self, agents: Sequence[Agent], start_ms: int) -> None:
        super().__init__(agents, start_ms)
        for need, members in self.members.items():
            members.sort(key=functools.partial(_tier_and_position, need))

    def choose(self, contact: Contact, candidates: list[Agent], now_ms: int) -> Agent:
        return candidates[0]  # candidates keep the members' (tier level, position) order


def _tier_and_position(need: str, agent: Agent) -> tuple[int, int]:
    """FreeSWITCH tries lower tier levels first, then lower positions."""
    return SKILL_LEVEL_TOP + 1 - agent.levels[need], agent.index


BASELINES: Mapping[str, Callable[[Sequence[Agent], int], QueueingRouter]] = {
    "longest_idle": LongestIdle,
    "acs_best_worker": AcsBestWorker,
    "round_robin": RoundRobinMemory,
    "fewest_calls": FewestCalls,
    "top_down_tiers": TopDownTiers,
}
