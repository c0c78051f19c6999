"""The simulated contact center, seeded: one set of skills, channels, languages, sites and
customers' moods for the live demo (`router.demo`), its agent fleet (`workers.fleet`, which takes
the profiles drawn here) and the engine benchmark (`benchmarks.engine`, which draws its own
steady state at scale from the same values).

- `AgentProfileFactory` draws agents (as `Worker` messages for WorkerService.UpsertWorker).
- `Traffic` draws the tasks customers create (keyword arguments of `TaskClient.create_task`).
- `draw_sentiment` is the customers' mood, shared by both the demo's traffic and the engine's.

Every draw comes from a generator the caller seeds: one seed, one center."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, TypeVar

import numpy as np

from router._proto.switchboard.v1 import resources_pb2 as pb

K = TypeVar("K")

# == skills and queues ============================================================================

DOMAIN_SKILLS: dict[str, tuple[str, ...]] = {
    "billing": (
        "billing_general",
        "invoices",
        "refunds",
        "payment_methods",
        "disputes",
        "collections",
        "tax",
        "subscriptions",
    ),
    "tech_support": (
        "tech_general",
        "internet",
        "mobile_data",
        "tv_box",
        "router_setup",
        "email_setup",
        "outages",
        "devices",
    ),
    "sales": (
        "sales_general",
        "upgrades",
        "new_lines",
        "bundles",
        "business_plans",
        "promotions",
        "device_sales",
        "cross_sell",
    ),
    "retention": (
        "retention_general",
        "cancellations",
        "win_back",
        "contracts",
        "loyalty_offers",
        "complaints",
        "escalations",
        "porting_out",
    ),
    "accounts": (
        "accounts_general",
        "password_reset",
        "identity_check",
        "address_change",
        "ownership_transfer",
        "privacy_requests",
        "fraud",
        "account_closure",
    ),
    "orders": (
        "orders_general",
        "delivery",
        "returns",
        "exchanges",
        "order_status",
        "installations",
        "appointments",
        "warranty",
    ),
    "business": (
        "business_general",
        "sla_support",
        "enterprise_billing",
        "fleet_management",
        "cloud_services",
        "voip",
        "security_services",
        "account_management",
    ),
    "claims": (
        "claims_general",
        "device_insurance",
        "damage_claims",
        "theft_loss",
        "repairs",
        "claim_status",
        "appeals",
        "reimbursements",
    ),
}
"""One queue (and team) per domain; the first skill of each is the domain's general skill."""

SKILL_COUNT = sum(len(skills) for skills in DOMAIN_SKILLS.values())
QUEUE_SHARES = {
    "billing": 0.20,
    "tech_support": 0.20,
    "sales": 0.15,
    "retention": 0.10,
    "accounts": 0.10,
    "orders": 0.10,
    "business": 0.08,
    "claims": 0.07,
}
"""Share of the contacts (and of the agents) of each queue."""


def general_skill(domain: str) -> str:
    """The domain's general skill: every agent of its team has it."""
    return DOMAIN_SKILLS[domain][0]


# == channels =====================================================================================

VOICE: Final = "voice"
CHAT: Final = "chat"
WHATSAPP: Final = "whatsapp"
SMS: Final = "sms"
EMAIL: Final = "email"

CHANNEL_CAPACITY_MAX: Final[Mapping[str, int]] = {
    VOICE: 1,
    CHAT: 3,
    WHATSAPP: 3,
    SMS: 3,
    EMAIL: 2,
}
"""Most tasks of one channel an agent holds at once (one call, up to three chats...)."""
CHANNEL_COST: Final[Mapping[str, float]] = {
    VOICE: 2.0,
    CHAT: 1.0,
    WHATSAPP: 1.0,
    SMS: 0.5,
    EMAIL: 1.0,
}
"""What one task of each channel takes from TOTAL_CAPACITY."""
TOTAL_CAPACITY: Final = 4.0
"""A blended agent: one call (cost 2) and two chats, or up to four chats or emails."""
CHANNEL_SHARE: Final[Mapping[str, float]] = {
    VOICE: 0.75,
    CHAT: 0.70,
    WHATSAPP: 0.45,
    SMS: 0.40,
    EMAIL: 0.40,
}
"""The share of agents who work each channel (the engine benchmark's agents work voice, chat
and email, all of them)."""
CHANNEL_MIX: Final[Mapping[str, float]] = {
    VOICE: 0.35,
    CHAT: 0.30,
    WHATSAPP: 0.15,
    SMS: 0.10,
    EMAIL: 0.10,
}
"""The share of the arrivals on each channel."""
PATIENCE_S_BY_CHANNEL: Final[Mapping[str, float]] = {
    VOICE: 25.0,
    CHAT: 40.0,
    WHATSAPP: 120.0,
    SMS: 120.0,
    EMAIL: 300.0,
}
"""Median time a customer waits before giving up (the task's ttl_s): callers hang up sooner
than people who sent a message."""

# == people =======================================================================================

TASK_LANGUAGE_SHARES: Final[Mapping[str, float]] = {
    "": 0.50,
    "en": 0.25,
    "es": 0.15,
    "fr": 0.04,
    "de": 0.03,
    "pt": 0.03,
}
"""The language a task requires ("": any)."""
WORKER_LANGUAGE_SHARES: Final[Mapping[str, float]] = {
    "en": 0.95,
    "es": 0.30,
    "fr": 0.10,
    "de": 0.08,
    "pt": 0.08,
}
"""The share of agents who speak each language."""
PRIORITY_SHARES: Final[Mapping[int, float]] = {0: 0.85, 1: 0.12, 2: 0.03}
CUSTOMER_TIERS: Final = ("standard", "standard", "standard", "gold", "platinum")
SITES: Final = ("lisbon", "manila", "austin", "krakow", "cape_town")
WORKER_TIER_SHARES: Final[Mapping[str, float]] = {"tier1": 0.55, "tier2": 0.33, "tier3": 0.12}
"""Support tier of an agent (front line, advanced, expert): the `tier` worker attribute."""
SENIOR_TENURE_MONTHS: Final = 36
"""An agent with at least this tenure has the `senior` worker attribute true."""
TENURE_MONTHS_MAX: Final = 119
TEAMS_PER_AGENT_SHARES: Final[Mapping[int, float]] = {1: 0.5, 2: 0.4, 3: 0.1}
"""How many teams (domains) an agent works for."""

NEUTRAL_SENTIMENT_SHARE: Final = 0.6
"""Customers with no particular mood (sentiment 0)."""
SENTIMENT_RANGE: Final = (-1.0, 0.6)
"""The others' sentiment, drawn uniformly: about a third of them upset (at or below -0.5)."""
REPEAT_CUSTOMERS: Final = 40
"""Customers of the demo who contact the center again and again (a third of the arrivals)."""


class _Draws(Protocol):
    """What both `random.Random` and `numpy.random.Generator` offer."""

    def random(self) -> float: ...

    def uniform(self, low: float, high: float) -> Any: ...


def draw_sentiment(rng: _Draws) -> float:
    """A customer's sentiment, -1 (furious) to 1 (delighted), with NEUTRAL_SENTIMENT_SHARE at 0."""
    if rng.random() < NEUTRAL_SENTIMENT_SHARE:
        return 0.0
    return round(float(rng.uniform(*SENTIMENT_RANGE)), 2)


def choose(rng: random.Random, shares: Mapping[K, float]) -> K:
    """One key, drawn with its share."""
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def level(rng: random.Random, low: float, high: float) -> float:
    """A skill level between low and high in steps of 0.5."""
    return rng.randint(int(low * 2), int(high * 2)) / 2


# == agents =======================================================================================


class AgentProfileFactory:
    """Draws varied agent profiles (as `Worker` messages for WorkerService.UpsertWorker) from a
    seeded numpy Generator, so that one seed always gives the same fleet.

    Each agent works for one to three teams (domains, drawn by QUEUE_SHARES): it has each
    team's general skill and a few of its specific ones, in half steps. Seniors (`senior`
    true, at least SENIOR_TENURE_MONTHS) have higher levels. Every agent speaks at least one
    language and works at least one channel."""

    def __init__(
        self,
        rng: np.random.Generator | int | None = None,
        *,
        domains: Sequence[str] | None = None,
    ) -> None:
        """`domains` limits the teams agents are drawn for (default: every domain, by
        QUEUE_SHARES): a center that serves a few queues staffs only their teams."""
        self._rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        chosen = QUEUE_SHARES if domains is None else {d: QUEUE_SHARES[d] for d in domains}
        self._team_shares: Mapping[str, float] = chosen

    def profiles(self, count: int, *, prefix: str = "agent") -> list[pb.Worker]:
        """`count` agents named `{prefix}-001`, `{prefix}-002`, ..."""
        width = max(3, len(str(count)))
        return [self.profile(f"{prefix}-{i:0{width}d}") for i in range(1, count + 1)]

    def profile(self, worker_id: str) -> pb.Worker:
        """One agent."""
        rng = self._rng
        tenure_months = int(rng.integers(1, TENURE_MONTHS_MAX + 1))
        senior = tenure_months >= SENIOR_TENURE_MONTHS
        teams = self._teams()
        channels = self._channels()
        worker = pb.Worker(
            worker_id=worker_id,
            display_name=worker_id.replace("-", " ").title(),
            skills=self._skills(teams, senior),
            languages=self._languages(),
            empathy=round(float(rng.beta(2.0, 2.0)), 2),
            capacity_by_channel=channels,
            total_capacity=TOTAL_CAPACITY,
            cost_by_channel={channel: CHANNEL_COST[channel] for channel in channels},
        )
        worker.attributes.update(
            {
                "team": teams[0],
                "teams": teams,
                "site": str(rng.choice(SITES)),
                "tenure_months": tenure_months,
                "senior": senior,
                "tier": self._pick(WORKER_TIER_SHARES),
            }
        )
        return worker

    def _pick(self, shares: Mapping[str, float]) -> str:
        weights = np.asarray(list(shares.values()), dtype=float)
        return str(self._rng.choice(list(shares), p=weights / weights.sum()))

    def _teams(self) -> list[str]:
        count = int(self._pick({str(k): v for k, v in TEAMS_PER_AGENT_SHARES.items()}))
        shares = self._team_shares
        weights = np.asarray(list(shares.values()), dtype=float)
        chosen = self._rng.choice(
            list(shares), size=min(count, len(shares)), replace=False, p=weights / weights.sum()
        )
        return [str(team) for team in chosen]

    def _skills(self, teams: Sequence[str], senior: bool) -> dict[str, float]:
        rng = self._rng
        low, high = (3.0, 5.0) if senior else (1.5, 4.0)
        skills: dict[str, float] = {}
        for team in teams:
            general, specific = DOMAIN_SKILLS[team][0], DOMAIN_SKILLS[team][1:]
            picked = rng.choice(specific, size=int(rng.integers(1, 4)), replace=False)
            for skill in (general, *picked):
                # Levels in half steps, as supervisors grade them.
                skills[str(skill)] = float(np.round(rng.uniform(low, high) * 2) / 2)
        return skills

    def _languages(self) -> list[str]:
        shares = WORKER_LANGUAGE_SHARES
        spoken = [lang for lang, share in shares.items() if self._rng.random() < share]
        return spoken or ["en"]

    def _channels(self) -> dict[str, int]:
        rng = self._rng
        channels = {
            channel: int(rng.integers(1, CHANNEL_CAPACITY_MAX[channel] + 1))
            for channel, share in CHANNEL_SHARE.items()
            if rng.random() < share
        }
        return channels or {VOICE: 1}


# == tasks ========================================================================================


@dataclass(frozen=True, slots=True)
class CenterQueue:
    """A queue of the simulated center and its traffic."""

    queue_id: str
    display_name: str
    domains: tuple[str, ...]
    """The teams whose general skill its tasks require (one of them each)."""
    share: float
    """Its share of the arrivals."""
    target_expression: str = ""
    priority: int = 0
    wrapup_s: float = 3.0
    reservation_timeout_s: float = 10.0

    def to_pb(self) -> pb.Queue:
        return pb.Queue(
            queue_id=self.queue_id,
            display_name=self.display_name,
            target_expression=self.target_expression,
            reservation_timeout_s=self.reservation_timeout_s,
            wrapup_s=self.wrapup_s,
        )


class Traffic:
    """Draws the tasks of the simulated customers: which queue and channel, the skill and level
    they need, their language, their mood (some very upset), priority and who they are."""

    def __init__(self, rng: np.random.Generator, queues: Sequence[CenterQueue]) -> None:
        self._rng = rng
        self._queues = list(queues)
        self._customers = 0

    def next_task(self) -> dict[str, Any]:
        """Keyword arguments for `TaskClient.create_task`."""
        rng = self._rng
        queue = self._queues[self._pick([q.share for q in self._queues])]
        channel = self._choice(CHANNEL_MIX)
        domain = str(rng.choice(queue.domains))
        skill = general_skill(domain)
        sentiment = draw_sentiment(rng)
        spec: dict[str, Any] = {
            "queue_id": queue.queue_id,
            "channel": channel,
            "required_skills": {skill: float(rng.choice([1.0, 2.0, 3.0], p=[0.4, 0.4, 0.2]))},
            "language": self._choice(TASK_LANGUAGE_SHARES),
            "sentiment": sentiment,
            # Furious customers jump the line a little; a queue's own priority comes first.
            "priority": queue.priority + (2 if sentiment <= -0.8 else 0),
            "customer_id": self._customer(),
            "ttl_s": round(float(rng.lognormal(np.log(PATIENCE_S_BY_CHANNEL[channel]), 0.4)), 1),
            "attributes": {"source": "demo", "channel_entry": f"{channel}-gateway"},
        }
        if rng.random() < 0.3:
            preferred = "retention" if domain != "retention" else "sales"
            spec["preferred_skills"] = {general_skill(preferred): 0.5}
        return spec

    def _customer(self) -> str:
        if self._rng.random() < 1 / 3:
            return f"cust-r{int(self._rng.integers(1, REPEAT_CUSTOMERS + 1)):03d}"
        self._customers += 1
        return f"cust-{self._customers:05d}"

    def _pick(self, shares: Sequence[float]) -> int:
        weights = np.asarray(shares, dtype=float)
        return int(self._rng.choice(len(weights), p=weights / weights.sum()))

    def _choice(self, mix: Mapping[str, float]) -> str:
        return list(mix)[self._pick(list(mix.values()))]


QUEUES: Final = (
    CenterQueue("billing", "Billing", ("billing",), 0.35),
    CenterQueue("tech", "Technical support", ("tech_support",), 0.30),
    CenterQueue("sales", "Sales", ("sales",), 0.20, wrapup_s=2.0),
    CenterQueue(
        "vip",
        "VIP (seniors only)",
        ("claims", "retention", "billing"),
        0.15,
        target_expression="senior",
        priority=10,
        wrapup_s=4.0,
    ),
)
"""The demo's four queues."""
