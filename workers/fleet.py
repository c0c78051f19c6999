"""A simulated fleet of agents, driven through the real SDK: used by the demo and the benchmarks.

The agents' profiles come from the caller (the demo and the benchmarks draw them, seeded, with
`benchmarks.workload.AgentProfileFactory`); `SimulatedAgent` is an
`AgentSession` that answers its offers like a person would (a think time, a handle time that
depends on the channel and the agent's skill fit, after-call work, the odd rejection and
break); `Fleet` registers N agents with the router and runs them concurrently, counting what
they did in `FleetStats`."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Final

import numpy as np

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router._proto.switchboard.v1 import worker_service_pb2_grpc as wgrpc
from workers._backoff import DEFAULT_BACKOFF_S
from workers._channel import open_channel, unary
from workers._errors import FailedPrecondition, SwitchboardError
from workers._session import AgentSession

__all__ = [
    "CALM_SENTIMENT_MIN",
    "UPSET_SENTIMENT_MAX",
    "AgentBehaviour",
    "Fleet",
    "FleetStats",
    "SimulatedAgent",
    "skill_fit",
]

UPSET_SENTIMENT_MAX: Final = -0.5
"""Customers at or below this sentiment count as upset in the empathy evidence."""
CALM_SENTIMENT_MIN: Final = 0.0
"""Customers at or above this sentiment count as calm."""


@dataclass(frozen=True, slots=True)
class AgentBehaviour:
    """How simulated agents behave. Durations are medians of lognormal draws, in seconds, and
    are all multiplied by `time_scale` (benchmarks speed agents up or slow them down)."""

    think_s: float = 0.3
    """Time to answer an offer."""
    handle_s_by_channel: Mapping[str, float] = field(
        default_factory=lambda: {
            "voice": 6.0,
            "chat": 8.0,
            "whatsapp": 7.0,
            "sms": 4.0,
            "email": 5.0,
        }
    )
    """Handle time of a task by channel, for an agent of average skill fit."""
    handle_s_default: float = 6.0
    """Handle time on a channel missing from handle_s_by_channel."""
    duration_sigma: float = 0.5
    """Shape of the lognormal draws: 0.5 gives a long but not extreme tail."""
    skill_speedup: float = 0.5
    """A perfect skill fit handles this much faster than the average, a nil fit this much
    slower (0.5: from 0.75 to 1.25 times the channel's handle time)."""
    after_work_s: float = 1.0
    """After-call work before the agent ends the wrap-up (the queue's wrap-up time caps it)."""
    reject_share: float = 0.03
    """Share of offers rejected."""
    break_share: float = 0.03
    """Chance, when an agent ends a task with nothing else in hand, that it takes a break."""
    break_s: float = 4.0
    time_scale: float = 1.0


@dataclass(slots=True)
class FleetStats:
    """What the fleet's agents did, for the demo's screens and the benchmarks' reports."""

    offers: int = 0
    accepts: int = 0
    rejects: int = 0
    lost_offers: int = 0
    """Offers that closed (timed out, rescinded, canceled) before the agent's answer."""
    completed: int = 0
    errors: int = 0
    """Calls that failed for another reason (e.g. the router was unavailable)."""
    waits_ms_by_queue: dict[str, list[int]] = field(default_factory=dict)
    """Per queue, each assigned task's wait from creation to assignment (router clock)."""
    empathy_upset: list[float] = field(default_factory=list)
    """The empathy of the agent assigned to each upset customer."""
    empathy_calm: list[float] = field(default_factory=list)
    """The empathy of the agent assigned to each calm customer."""

    def record_assignment(self, task: pb.Task, empathy: float) -> None:
        self.accepts += 1
        wait_ms = max(0, task.updated_at_ms - task.created_at_ms)
        self.waits_ms_by_queue.setdefault(task.queue_id, []).append(wait_ms)
        if task.sentiment <= UPSET_SENTIMENT_MAX:
            self.empathy_upset.append(empathy)
        elif task.sentiment >= CALM_SENTIMENT_MIN:
            self.empathy_calm.append(empathy)


class SimulatedAgent(AgentSession):
    """An `AgentSession` that works its offers by itself: after a think time it accepts (or,
    now and then, rejects), handles the task for a lognormal time that depends on the channel
    and on how well its skills fit, completes it, ends the wrap-up after some after-call work,
    and sometimes takes a short break when it has nothing in hand. Run it with `work()`."""

    def __init__(
        self,
        address: str | Sequence[str],
        profile: pb.Worker,
        *,
        rng: np.random.Generator,
        stats: FleetStats,
        behaviour: AgentBehaviour | None = None,
        reconnect_backoff_s: tuple[float, float] = DEFAULT_BACKOFF_S,
    ) -> None:
        super().__init__(address, profile.worker_id, reconnect_backoff_s=reconnect_backoff_s)
        self.profile = profile
        self._rng = rng
        self._stats = stats
        self._behaviour = behaviour or AgentBehaviour()
        self._handlers: set[asyncio.Task[None]] = set()
        self._break = asyncio.Lock()

    async def work(self) -> None:
        """Handles offers until the session closes (each offer in its own task, since an
        agent may hold several chats at once). Canceling it cancels the tasks in hand."""
        try:
            async for offer in self.offers():
                self._stats.offers += 1
                handler = asyncio.create_task(self._handle(offer))
                self._handlers.add(handler)
                handler.add_done_callback(self._handlers.discard)
        finally:
            for handler in list(self._handlers):
                handler.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _handle(self, offer: pb.Offer) -> None:
        behaviour = self._behaviour
        try:
            await asyncio.sleep(self._draw(behaviour.think_s))
            if self._rng.random() < behaviour.reject_share:
                await self.reject(offer, reason="simulated: not now")
                self._stats.rejects += 1
                return
            task = await self.accept(offer)
            self._stats.record_assignment(task, self.profile.empathy)
            await asyncio.sleep(self._handle_time_s(task))
            if (await self.complete(task.task_id)).status == pb.TASK_STATUS_WRAPPING:
                await asyncio.sleep(self._draw(behaviour.after_work_s))
                # The queue's wrap-up timer may have ended it first: nothing left to do then.
                with contextlib.suppress(FailedPrecondition):
                    await self.wrap_up(task.task_id)
            self._stats.completed += 1
            await self._maybe_take_a_break()
        except FailedPrecondition:
            self._stats.lost_offers += 1
        except SwitchboardError:
            self._stats.errors += 1

    async def _maybe_take_a_break(self) -> None:
        # Only with nothing else in hand: going on a break rescinds pending offers.
        if len(self._handlers) > 1 or self._break.locked():
            return
        if self._rng.random() >= self._behaviour.break_share:
            return
        async with self._break:
            await self.set_activity("break")
            await asyncio.sleep(self._draw(self._behaviour.break_s))
            await self.set_activity("available")

    def _handle_time_s(self, task: pb.Task) -> float:
        behaviour = self._behaviour
        base_s = behaviour.handle_s_by_channel.get(task.channel, behaviour.handle_s_default)
        fit = skill_fit(self.profile, task)
        return self._draw(base_s * (1 + behaviour.skill_speedup * (0.5 - fit)))

    def _draw(self, median_s: float) -> float:
        scaled_s = median_s * self._behaviour.time_scale
        return float(self._rng.lognormal(math.log(scaled_s), self._behaviour.duration_sigma))


def skill_fit(worker: pb.Worker, task: pb.Task) -> float:
    """How well a worker's skills cover a task's, 0 to 1 (the router's skill_fit: the weighted
    mean of level / 5 over required skills, weight 1, and preferred skills, their weight).
    A task that names no skill fits everyone at 0.5."""
    weights = {skill: 1.0 for skill in task.required_skills}
    weights.update(task.preferred_skills)
    if not weights:
        return 0.5
    total = sum(weights.values())
    return sum(w * min(worker.skills.get(s, 0.0) / 5, 1.0) for s, w in weights.items()) / total


class Fleet:
    """N simulated agents working against one router::

        profiles = AgentProfileFactory(seed).profiles(40)   # benchmarks.workload
        async with Fleet(address, profiles, seed=seed) as fleet:
            ...                 # create tasks; read fleet.stats

    Entering registers every agent with WorkerService.UpsertWorker, connects them all (each
    says hello as available) and sets them to work; leaving stops them and closes their
    streams. Tasks they hold stay assigned in the router."""

    def __init__(
        self,
        address: str | Sequence[str],
        profiles: Sequence[pb.Worker],
        *,
        behaviour: AgentBehaviour | None = None,
        seed: int | None = None,
    ) -> None:
        self._addresses = (address,) if isinstance(address, str) else tuple(address)
        self.profiles = list(profiles)
        self.stats = FleetStats()
        rngs = np.random.default_rng(seed).spawn(len(self.profiles))
        self.agents = [
            SimulatedAgent(address, profile, rng=rng, stats=self.stats, behaviour=behaviour)
            for profile, rng in zip(self.profiles, rngs, strict=True)
        ]
        self._workers: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Fleet:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Registers and connects every agent, then sets them to work."""
        await self._register()
        try:
            await asyncio.gather(*(agent.__aenter__() for agent in self.agents))
        except BaseException:
            await self.stop()
            raise
        self._workers = [
            asyncio.create_task(agent.work(), name=f"agent-{agent.worker_id}")
            for agent in self.agents
        ]

    async def stop(self) -> None:
        """Stops every agent and closes its stream."""
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        await asyncio.gather(*(agent.close() for agent in self.agents))

    async def _register(self) -> None:
        channel = open_channel(self._addresses[0], reconnect_backoff_s=DEFAULT_BACKOFF_S)
        try:
            stub = wgrpc.WorkerServiceStub(channel)
            await asyncio.gather(
                *(
                    unary(stub.UpsertWorker(wpb.UpsertWorkerRequest(worker=profile), timeout=10))
                    for profile in self.profiles
                )
            )
        finally:
            await channel.close(grace=None)
