"""The simulated contact center: its agents and its traffic, drawn from seeded generators.

The center is the same for every seed of a comparison (it is who works there); the traffic (a
trace of contacts) is drawn per seed and replayed unchanged under every policy, down to each
contact's random draws, so that policies differ only by their choices (common random numbers)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np

NEED_SHARE: Final[Mapping[str, float]] = {
    "billing": 0.40,
    "tech_support": 0.30,
    "sales": 0.20,
    "claims": 0.10,
}
"""What customers call about, and how often."""

SKILL_LEVEL_TOP: Final = 5
SECOND_SKILL_CHANCE: Final = 0.35
"""The chance an agent also handles each need other than their main one."""

UPSET_SHARE: Final = 0.3
"""Customers who arrive upset (sentiment -1 to -0.5); the rest are -0.3 to 0.8."""

WORK_SIGMA: Final = 0.6
"""Spread (log scale) of a contact's work: handle times are lognormal, as measured in call
centers (Brown et al., "Statistical analysis of a telephone call center", JASA 2005)."""


@dataclass(frozen=True, slots=True)
class Agent:
    index: int
    levels: Mapping[str, int]
    """Need -> skill level, 1 (novice) to 5 (expert); needs missing here are not handled."""
    empathy: float
    """0 to 1: how well the agent calms an upset customer."""


@dataclass(frozen=True, slots=True)
class Contact:
    index: int
    """Arrival order: a lower index arrived earlier."""
    arrival_ms: int
    need: str
    sentiment: float
    """-1 (furious) to 1 (delighted), as the front end measured it."""
    patience_ms: int | None
    """How long the customer waits before hanging up (None: forever)."""
    work_s: float
    """The contact's amount of work: its handle time with an average (level 3) agent."""
    resolve_draw: float
    """Uniform in [0, 1): resolved when below the chance of resolving (the same draw under
    every policy)."""

    @property
    def upset(self) -> float:
        """0 (calm) to 1 (furious)."""
        return max(0.0, -self.sentiment)


def make_agents(count: int, seed: int) -> list[Agent]:
    """`count` agents, each with a main need (drawn by NEED_SHARE) at level 2-5, other needs at
    level 1-3 with SECOND_SKILL_CHANCE each, and an empathy independent of their skills."""
    rng = np.random.default_rng(seed)
    needs = list(NEED_SHARE)
    shares = np.array(list(NEED_SHARE.values()))
    agents = []
    for index in range(count):
        main = needs[int(rng.choice(len(needs), p=shares))]
        levels = {main: int(rng.integers(2, SKILL_LEVEL_TOP + 1))}
        for need in needs:
            if need != main and rng.random() < SECOND_SKILL_CHANCE:
                levels[need] = int(rng.integers(1, 4))
        agents.append(Agent(index, levels, empathy=round(float(rng.uniform(0.1, 1.0)), 3)))
    return agents


def make_trace(
    count: int,
    arrival_rate_per_s: float,
    seed: int,
    *,
    mean_work_s: float,
    mean_patience_s: float | None,
    need_share: Mapping[str, float] = NEED_SHARE,
    exponential_work: bool = False,
    start_ms: int = 0,
) -> list[Contact]:
    """`count` contacts arriving as a Poisson process. Work is lognormal with mean
    `mean_work_s` (exponential with `exponential_work`, for the M/M/c checks); patience is
    exponential (None: nobody abandons)."""
    rng = np.random.default_rng(seed)
    gaps_ms = rng.exponential(1000 / arrival_rate_per_s, count)
    arrivals_ms = start_ms + np.cumsum(np.maximum(1, np.rint(gaps_ms))).astype(np.int64)
    needs = list(need_share)
    need_rows = rng.choice(len(needs), size=count, p=np.array(list(need_share.values())))
    upset = rng.random(count) < UPSET_SHARE
    sentiments = np.where(upset, rng.uniform(-1.0, -0.5, count), rng.uniform(-0.3, 0.8, count))
    if exponential_work:
        work_s = rng.exponential(mean_work_s, count)
    else:
        # Lognormal with the given mean: mu = ln(mean) - sigma^2 / 2.
        mu = np.log(mean_work_s) - WORK_SIGMA**2 / 2
        work_s = rng.lognormal(mu, WORK_SIGMA, count)
    patience_ms = (
        np.maximum(1, np.rint(rng.exponential(mean_patience_s * 1000, count))).astype(np.int64)
        if mean_patience_s is not None
        else None
    )
    resolve_draws = rng.random(count)
    return [
        Contact(
            index=i,
            arrival_ms=int(arrivals_ms[i]),
            need=needs[int(need_rows[i])],
            sentiment=round(float(sentiments[i]), 3),
            patience_ms=int(patience_ms[i]) if patience_ms is not None else None,
            work_s=float(work_s[i]),
            resolve_draw=float(resolve_draws[i]),
        )
        for i in range(count)
    ]
