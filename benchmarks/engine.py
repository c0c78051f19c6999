"""Engine benchmark: routing decisions per second and the latency of one decision.

    python -m benchmarks.engine --quick            # 10k workers x 100k waiting tasks, plain
                                                   # and through a routing policy, < 60 s
    python -m benchmarks.engine                    # 1k/10k/100k workers x 10k/100k waiting,
                                                   # 100k workers x 1M waiting (memory), and
                                                   # the policy case at 10k x 100k
    python -m benchmarks.engine --json bench.json  # also write the results as JSON
    python -m benchmarks.engine --profile          # cProfile of the decisions (10k x 100k)
    python -m benchmarks.engine --profile policy   # the same, for the policy case

Each case builds a realistic steady state in a fresh subprocess (so that `rss_mb` is that
state's memory) and measures two events, each decision timed alone with `perf_counter_ns`:

- `task_arrives`: a chat task arrives (a `CreateTask`): the engine checks every worker, scores
  the eligible ones and offers the task to the best. The state has a voice backlog (every
  available worker holds a voice call, so the voice tasks wait) while the workers' chat capacity
  is free, so the arriving chat task has many eligible workers. The offered task is canceled
  afterwards, outside the timed region.
- `worker_frees`: a worker completes its voice call (`CompleteTask`, no wrap-up): the engine
  picks the best waiting task this worker is eligible for among the whole backlog and offers it.
  Outside the timed region the offer is accepted (the worker is busy again) and a new voice task
  joins the backlog, so that the backlog keeps its size.

Tasks come from a catalog of a few hundred task types (queue x channel x 1 to 3 required skills
with minimum levels x optional language x priority), drawn with skewed popularity as IVR menus
produce them. The same decisions are made by a naive pure-Python router (`benchmarks.naive`) on
the same state; the two must agree on the chosen worker or task (ties aside).

The policy case (`"policy": true` in the JSON; the plain cases have `"policy": false`) builds
the same steady state, at the same size, with every task, backlog and arriving alike, created
with `TaskSpec(policy_id=...)` and no queue: a routing policy (`routing_policy()`) of 10 filters
over 4 task attributes (`department`, `customer.tier`, `intent`, `region`) and a default route,
each route with 3 steps: 20 s with high minimum levels of the queue's general skill and a worker
expression over 4 worker attributes (`team`, `tier`, `site`, `senior`), then 40 s with lower
levels, then anyone in the queue (at a priority one higher). The backlog is created over
`POLICY_BACKLOG_SPAN_MS` of router clock (each task keeps its creation time), so that its tasks
are spread over the 3 steps, and every filter and the default route have traffic
(`backlog_by_route`). It then keeps flowing as the clock advances, outside the timed calls: a
voice task arrives (and the longest waiting one abandons) every millisecond at 100k waiting
(`backlog_flow_per_s`), so that the spread over the steps holds through the measurement
(`backlog_by_step`, at the start of each event's) and the steps' timeouts keep firing between
decisions, as they would in a service. The two events are measured exactly as in the plain
case. The naive baseline is not run on it (it would have to mirror each task's
current step: its raised levels, the worker expression, the step's priority, and the steps'
timeouts as the clock advances): its fields (`baseline_*`, `speedup_vs_baseline`, `agreement*`,
`eligible_workers_mean`) are null. Its target is relative: at 10k x 100k, at least half the
decisions per second of the plain case for the same event (`decisions_per_s_vs_plain`), and a
p99 of at most 2 ms.

`decisions_per_s` is the number of decisions over the time spent inside the timed calls (the
engine's single writer doing nothing but these decisions); `p50_ms` and `p99_ms` are over the
individual decisions. The timers that fell due since the previous decision (step timeouts, the
expiry of answered offers, ...) are fired by a `Tick` just before each timed call, outside the
timed region, as the service ticks when the next timer falls due: a decision's time is the
decision's alone. Python's garbage collector stays on, as in the service.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import itertools
import json
import math
import os
import platform
import pstats
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import naive
from router.core import commands as cmd
from router.core.engine import CreatedTask, Engine
from router.core.events import Event, OfferCreated
from router.core.model import (
    DEFAULT_ROUTE,
    NO_ROUTE,
    PolicyFilter,
    QueueConfig,
    Route,
    RoutingPolicy,
    RoutingStep,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    WorkerProfile,
)

# == the workload ==================================================================================

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

VOICE = "voice"
CHAT = "chat"
TYPES_PER_QUEUE_AND_CHANNEL = 20
"""IVR menu leaves per queue and channel: 8 queues x 2 channels x 20 = 320 task types."""
MIN_LEVELS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
MIN_LEVEL_SHARES = (0.20, 0.15, 0.25, 0.15, 0.15, 0.06, 0.04)
TASK_LANGUAGE_SHARES = {"": 0.50, "en": 0.25, "es": 0.15, "fr": 0.04, "de": 0.03, "pt": 0.03}
"""The language a task requires ("": any)."""
WORKER_LANGUAGE_SHARES = {"en": 0.95, "es": 0.30, "fr": 0.10, "de": 0.08, "pt": 0.08}
PRIORITY_SHARES = {0: 0.85, 1: 0.12, 2: 0.03}
CUSTOMER_TIERS = ("standard", "standard", "standard", "gold", "platinum")
SITES = ("lisbon", "manila", "austin", "krakow", "cape_town")
WORKER_TIER_SHARES = {"tier1": 0.55, "tier2": 0.33, "tier3": 0.12}
"""Support tier of an agent (front line, advanced, expert): the `tier` worker attribute."""
SENIOR_TENURE_MONTHS = 36
"""An agent with at least this tenure has the `senior` worker attribute true."""
WORKER_ON_BREAK_SHARE = 0.08
"""Workers logged in but on break: present in the columns, never eligible."""
WORKER_CAPACITY_BY_CHANNEL = {VOICE: 1, CHAT: 3, "email": 2}
WORKER_COST_BY_CHANNEL = {VOICE: 2.0, CHAT: 1.0, "email": 1.0}
WORKER_TOTAL_CAPACITY = 4.0
"""A blended agent: one call (cost 2) and two chats, or up to four chats or emails."""

DECISION_STEP_MS = 10
"""Router clock advance between two measured decisions."""
BACKLOG_STEP_MS = 1
"""Router clock advance between two tasks of the initial backlog."""
WARMUP_DECISIONS = 100
BASELINE_TIME_BUDGET_S = 20.0
"""The baseline stops early (after at least `BASELINE_DECISIONS_MIN`) past this much time."""
BASELINE_DECISIONS_MIN = 20
TIE_SCORE_TOLERANCE = 1e-5
"""Two scores closer than this are a tie (the engine scores in float32, the baseline in float64)."""

# -- the routing policy of the policy case ---------------------------------------------------------

POLICY_ID = "ivr_main"
GENERAL_QUEUE = "general"
"""The default route's queue, served by every agent."""
INTENT_SHARES = {
    "question": 0.35,
    "problem": 0.30,
    "change": 0.17,
    "cancel": 0.10,
    "purchase": 0.08,
}
REGION_SHARES = {"amer": 0.45, "emea": 0.35, "apac": 0.20}
REGION_SITES = {"amer": ("austin",), "emea": ("lisbon", "krakow", "cape_town"), "apac": ("manila",)}
HOME_SITE = {queue_id: SITES[index % len(SITES)] for index, queue_id in enumerate(DOMAIN_SKILLS)}
"""Where each queue's team leads sit: a route's first step takes its seniors, or anyone there."""
STEP_TIMEOUTS_S = (20.0, 40.0)
"""The first two steps' timeouts; the third lasts until the task is served."""
POLICY_BACKLOG_SPAN_MS = 120_000
"""The policy case creates its backlog over at least this much router clock, so that its tasks
are spread over the steps (a step ends 20 s and 60 s after routing)."""


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One filter of the benchmark's policy and what its route's first two steps ask for."""

    name: str
    expression: str
    queue_id: str
    premium: bool = False
    """Higher minimum levels, and agents of tier 2 or 3 in the first step (else tier 1 or 2)."""
    region: str = ""
    """The first step takes the region's sites (else the queue's seniors or its home site)."""


POLICY_RULES = (
    PolicyRule(
        "billing_premium_emea",
        "department == 'billing' AND customer.tier IN ['gold', 'platinum'] "
        "AND intent != 'cancel' AND region == 'emea'",
        "billing",
        premium=True,
        region="emea",
    ),
    PolicyRule("billing", "department == 'billing'", "billing"),
    PolicyRule(
        "tech_platinum",
        "department == 'tech_support' AND customer.tier == 'platinum'",
        "tech_support",
        premium=True,
    ),
    PolicyRule(
        "tech_support",
        "department == 'tech_support' AND intent IN ['question', 'problem', 'change']",
        "tech_support",
    ),
    PolicyRule("sales_amer", "department == 'sales' AND region == 'amer'", "sales", region="amer"),
    PolicyRule("sales", "department == 'sales' AND intent != 'cancel'", "sales"),
    PolicyRule("retention", "department == 'retention'", "retention", premium=True),
    PolicyRule("accounts", "department == 'accounts' AND region IN ['amer', 'emea']", "accounts"),
    PolicyRule("orders", "department == 'orders' AND intent != 'purchase'", "orders"),
    PolicyRule("business", "department == 'business' AND customer.tier != 'standard'", "business"),
)
"""The filters in order. Tasks none matches take the default route: tech support to cancel or
buy, sales cancellations outside the Americas, accounts in Asia-Pacific, orders to buy,
standard business customers, and every claim."""


@dataclass(frozen=True, slots=True)
class TaskType:
    """One leaf of an IVR menu or chat entry form: what the tasks of that kind require."""

    type_id: str
    queue_id: str
    channel: str
    required_skills: dict[str, float]
    preferred_skills: dict[str, float]
    language: str
    priority: int


def _choose(rng: random.Random, shares: dict[Any, float]) -> Any:
    return rng.choices(list(shares), weights=list(shares.values()))[0]


def _level(rng: random.Random, low: float, high: float) -> float:
    """A skill level between low and high in steps of 0.5."""
    return rng.randint(int(low * 2), int(high * 2)) / 2


def _weighted_sample(rng: random.Random, shares: dict[str, float], count: int) -> list[str]:
    """`count` distinct keys, each drawn with its share among those not drawn yet."""
    remaining = dict(shares)
    chosen: list[str] = []
    for _ in range(count):
        key = _choose(rng, remaining)
        chosen.append(key)
        del remaining[key]
    return chosen


def build_catalog(rng: random.Random) -> list[TaskType]:
    """The task types of the contact center, 20 per queue and channel. Type 0 of each is the
    menu's "anything else" leaf: it requires only the domain's general skill at level 1."""
    catalog: list[TaskType] = []
    for queue_id, skills in DOMAIN_SKILLS.items():
        general, specific = skills[0], list(skills[1:])
        for channel in (VOICE, CHAT):
            for index in range(TYPES_PER_QUEUE_AND_CHANNEL):
                if index == 0:
                    required, language, priority = {general: 1.0}, "", 0
                else:
                    count = _choose(rng, {1: 0.5, 2: 0.35, 3: 0.15})
                    required = {
                        skill: rng.choices(MIN_LEVELS, weights=MIN_LEVEL_SHARES)[0]
                        for skill in rng.sample(specific, count)
                    }
                    language = _choose(rng, TASK_LANGUAGE_SHARES)
                    priority = _choose(rng, PRIORITY_SHARES)
                others = [s for s in skills if s not in required]
                preferred = {skill: 0.5 for skill in rng.sample(others, rng.randint(0, 2))}
                catalog.append(
                    TaskType(
                        type_id=f"{queue_id}.{channel}.{index:02d}",
                        queue_id=queue_id,
                        channel=channel,
                        required_skills=required,
                        preferred_skills=preferred,
                        language=language,
                        priority=priority,
                    )
                )
    return catalog


def type_popularity(catalog: Sequence[TaskType]) -> list[float]:
    """How often each type occurs: the queue's share, then Zipf over the menu leaves."""
    weights = [
        QUEUE_SHARES[task_type.queue_id] / (int(task_type.type_id[-2:]) + 1)
        for task_type in catalog
    ]
    total = sum(weights)
    return [weight / total for weight in weights]


class TaskSource:
    """Task specs drawn from the catalog, each with its own customer, attributes and mood."""

    def __init__(self, catalog: Sequence[TaskType], rng: random.Random) -> None:
        self._rng = rng
        self._customer_seq = 0
        self._types_by_channel: dict[str, list[TaskType]] = {}
        self._cumulative_by_channel: dict[str, list[float]] = {}
        for channel in (VOICE, CHAT):
            types = [t for t in catalog if t.channel == channel]
            self._types_by_channel[channel] = types
            cumulative = itertools.accumulate(type_popularity(types))
            self._cumulative_by_channel[channel] = list(cumulative)

    def _draw(self, channel: str) -> tuple[TaskType, float, str]:
        """A task type of that channel, and the new customer's sentiment and tier."""
        rng = self._rng
        task_type = rng.choices(
            self._types_by_channel[channel], cum_weights=self._cumulative_by_channel[channel]
        )[0]
        self._customer_seq += 1
        sentiment = 0.0 if rng.random() < 0.6 else round(rng.uniform(-1.0, 0.6), 2)
        tier = CUSTOMER_TIERS[self._customer_seq % len(CUSTOMER_TIERS)]
        return task_type, sentiment, tier

    def next_spec(self, channel: str) -> TaskSpec:
        """A new task of that channel. Customers never repeat, so no task has a repeat-contact
        bonus and the baseline needs no customer history."""
        task_type, sentiment, tier = self._draw(channel)
        return TaskSpec(
            channel=task_type.channel,
            queue_id=task_type.queue_id,
            attributes={"task_type": task_type.type_id, "tier": tier},
            required_skills=dict(task_type.required_skills),
            preferred_skills=dict(task_type.preferred_skills),
            language=task_type.language,
            priority=task_type.priority,
            customer_id=f"cust-{self._customer_seq}",
            sentiment=sentiment,
        )


class PolicyTaskSource(TaskSource):
    """The same tasks, created through the routing policy: no queue, and the attributes its
    filters read (the department is the task type's queue)."""

    def next_spec(self, channel: str) -> TaskSpec:
        task_type, sentiment, tier = self._draw(channel)
        intent = _choose(self._rng, INTENT_SHARES)
        region = _choose(self._rng, REGION_SHARES)
        return TaskSpec(
            channel=task_type.channel,
            policy_id=POLICY_ID,
            attributes={
                "task_type": task_type.type_id,
                "department": task_type.queue_id,
                "customer": {"tier": tier},
                "intent": intent,
                "region": region,
            },
            required_skills=dict(task_type.required_skills),
            preferred_skills=dict(task_type.preferred_skills),
            language=task_type.language,
            priority=task_type.priority,
            customer_id=f"cust-{self._customer_seq}",
            sentiment=sentiment,
        )


def general_spec(queue_id: str, channel: str) -> TaskSpec:
    """The "anything else" task of a queue, which every member of the queue's team may take."""
    return TaskSpec(
        channel=channel,
        queue_id=queue_id,
        attributes={"task_type": f"{queue_id}.{channel}.00"},
        required_skills={DOMAIN_SKILLS[queue_id][0]: 1.0},
    )


def queue_configs() -> list[QueueConfig]:
    """One FIFO queue per domain, served by the workers of that team."""
    return [
        QueueConfig(
            queue_id=queue_id,
            display_name=queue_id.replace("_", " ").title(),
            target_expression=f"teams HAS '{queue_id}'",
            reservation_timeout_s=30.0,
            wrapup_s=0.0,
        )
        for queue_id in DOMAIN_SKILLS
    ]


def routing_policy() -> RoutingPolicy:
    """The policy of the policy case: `POLICY_RULES`, then a default route to the general
    queue. Each route has 3 steps (see `route_steps`)."""
    return RoutingPolicy(
        policy_id=POLICY_ID,
        display_name="IVR main menu",
        filters=tuple(
            PolicyFilter(rule.name, rule.expression, Route(rule.queue_id, route_steps(rule)))
            for rule in POLICY_RULES
        ),
        default_route=Route(GENERAL_QUEUE, route_steps(None)),
    )


def route_steps(rule: PolicyRule | None) -> tuple[RoutingStep, RoutingStep, RoutingStep]:
    """20 s for the queue's experienced agents that the first step's expression names (the
    general skill at 3.5, 4 for a premium route), then 40 s for anyone in the queue with the
    general skill at 2.5 (3 for a premium route), then anyone in the queue at a priority one
    higher. The default route (`rule` None) serves every domain, so its steps raise no levels."""
    if rule is None:
        first = RoutingStep(
            timeout_s=STEP_TIMEOUTS_S[0],
            worker_expression="tier IN ['tier2', 'tier3'] AND senior",
        )
        second = RoutingStep(timeout_s=STEP_TIMEOUTS_S[1])
    else:
        general = DOMAIN_SKILLS[rule.queue_id][0]
        tiers = "['tier2', 'tier3']" if rule.premium else "['tier1', 'tier2']"
        if rule.region:
            sites = ", ".join(f"'{site}'" for site in REGION_SITES[rule.region])
            where = f"site IN [{sites}] AND senior"
        else:
            where = f"(senior OR site == '{HOME_SITE[rule.queue_id]}')"
        first = RoutingStep(
            timeout_s=STEP_TIMEOUTS_S[0],
            required_skills={general: 4.0 if rule.premium else 3.5},
            worker_expression=f"team == '{rule.queue_id}' AND tier IN {tiers} AND {where}",
        )
        second = RoutingStep(
            timeout_s=STEP_TIMEOUTS_S[1], required_skills={general: 3.0 if rule.premium else 2.5}
        )
    return first, second, RoutingStep(priority_delta=1)


def policy_route_names() -> list[str]:
    """The routes of `routing_policy()` by index: the filters', then "default"."""
    return [rule.name for rule in POLICY_RULES] + ["default"]


def worker_profiles(
    rng: random.Random, count: int, traits: random.Random | None = None
) -> list[WorkerProfile]:
    """Agents in one to three teams, skilled in their teams' domains, mostly available. Their
    attributes: `teams`, `team` (the first, their home team), `site`, `tenure_months`, `senior`
    (tenure of 3 years or more) and `tier` (support tier, drawn from `traits`, its own random
    stream, so that it does not change what `rng` draws)."""
    traits = traits or random.Random(count)
    profiles: list[WorkerProfile] = []
    for index in range(count):
        teams = _weighted_sample(rng, QUEUE_SHARES, _choose(rng, {1: 0.5, 2: 0.4, 3: 0.1}))
        skills: dict[str, float] = {}
        for team in teams:
            general, specific = DOMAIN_SKILLS[team][0], DOMAIN_SKILLS[team][1:]
            skills[general] = _level(rng, 1.0, 5.0)
            for skill in rng.sample(specific, rng.randint(3, 6)):
                skills[skill] = _level(rng, 1.0, 5.0)
        languages = tuple(
            language for language, share in WORKER_LANGUAGE_SHARES.items() if rng.random() < share
        ) or ("en",)
        activity = "break" if rng.random() < WORKER_ON_BREAK_SHARE else "available"
        tenure_months = rng.randint(1, 119)
        profiles.append(
            WorkerProfile(
                worker_id=f"agent-{index:06d}",
                display_name=f"Agent {index}",
                attributes={
                    "teams": teams,
                    "team": teams[0],
                    "site": SITES[index % len(SITES)],
                    "tenure_months": tenure_months,
                    "senior": tenure_months >= SENIOR_TENURE_MONTHS,
                    "tier": _choose(traits, WORKER_TIER_SHARES),
                },
                skills=skills,
                languages=languages,
                empathy=round(rng.betavariate(2.0, 2.0), 3),
                capacity_by_channel=dict(WORKER_CAPACITY_BY_CHANNEL),
                total_capacity=WORKER_TOTAL_CAPACITY,
                cost_by_channel=dict(WORKER_COST_BY_CHANNEL),
                activity=activity,
            )
        )
    return profiles


# == the steady state ==============================================================================


@dataclass
class SetupTimes:
    backlog_s: float = 0.0
    workers_s: float = 0.0
    total_s: float = 0.0
    fixup_tasks: int = 0
    """General tasks created for workers who found nothing to take in the backlog."""


class SteadyState:
    """An engine with a voice backlog, every available worker on a call, and chat capacity free.

    `build()` creates the backlog first, while no worker exists (so that creating a task costs
    no scan of the workers), then brings the workers in: each available one takes the best
    voice task it is eligible for and accepts it."""

    policy = False
    """Whether the tasks are created through the routing policy (see `PolicySteadyState`)."""

    def __init__(self, *, workers: int, waiting_tasks: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.catalog = build_catalog(self.rng)
        self.source: TaskSource = TaskSource(self.catalog, self.rng)
        self.profiles = worker_profiles(self.rng, workers, random.Random(seed + 1))
        self.profile_by_id = {profile.worker_id: profile for profile in self.profiles}
        self.waiting_tasks_target = waiting_tasks
        self.engine = Engine()
        self.now_ms = 1_000_000
        self.voice_task_by_worker_id: dict[str, str] = {}
        """The voice call each busy worker holds."""
        self.created_task_ids: list[str] = []
        """Every task created through `apply`, in order (measured arrivals aside)."""
        self.times = SetupTimes()

    # -- driving the engine -------------------------------------------------------------------

    def apply(self, command: cmd.Command) -> Any:
        result = self.engine.apply(command, self.now_ms)
        if isinstance(result, CreatedTask) and not result.deduplicated:
            self.created_task_ids.append(result.task.task_id)
        return result

    def advance(self, step_ms: int) -> None:
        self.now_ms += step_ms

    def tick(self) -> None:
        """Fires the timers due by now (accepting any offer they make), as the service does
        when the next timer falls due: the timed decisions then do nothing else."""
        if (due_ms := self.engine.next_timer_ms()) is not None and due_ms <= self.now_ms:
            self.apply(cmd.Tick())
            self.accept_offers(self.engine.take_events())

    def accept_offers(self, events: Sequence[Event]) -> list[TaskRecord]:
        """Accepts every pending offer among the events; returns the accepted tasks."""
        accepted = []
        for event in events:
            if not isinstance(event, OfferCreated):
                continue
            reservation = event.reservation
            task = self.engine.tasks[reservation.task_id]
            if task.status is not TaskStatus.RESERVED or task.reservation_id != (
                reservation.reservation_id
            ):
                continue
            self.apply(cmd.AcceptOffer(reservation.worker_id, reservation.reservation_id))
            if task.spec.channel == VOICE:
                self.voice_task_by_worker_id[reservation.worker_id] = task.task_id
            accepted.append(task)
        return accepted

    # -- building -----------------------------------------------------------------------------

    def build(self, progress: Callable[[str], None] = lambda _: None) -> None:
        """Brings the engine to the steady state, by applying commands as the service would."""
        started = time.perf_counter()
        self.configure()
        available = sum(1 for p in self.profiles if p.activity == "available")
        backlog = self.waiting_tasks_target + available
        step_ms = self.backlog_step_ms(backlog)
        progress(f"creating {backlog:,} voice tasks, {step_ms} ms apart")
        for index in range(backlog):
            self.advance(step_ms)
            self.apply(cmd.CreateTask(self.source.next_spec(VOICE)))
            if index % 1024 == 0:
                self.engine.take_events()
        self.engine.take_events()
        self.times.backlog_s = time.perf_counter() - started

        progress(f"adding {len(self.profiles):,} workers")
        workers_started = time.perf_counter()
        for profile in self.profiles:
            self.advance(BACKLOG_STEP_MS)
            self.apply(cmd.UpsertWorker(profile))
            self.accept_offers(self.engine.take_events())
        self.times.fixup_tasks = self._occupy_free_voice_workers()
        self._trim_backlog()
        self.times.workers_s = time.perf_counter() - workers_started
        self.times.total_s = time.perf_counter() - started

    def configure(self) -> None:
        """The queues (and, in the policy case, the policy)."""
        for queue in queue_configs():
            self.apply(cmd.UpsertQueue(queue))

    def backlog_step_ms(self, backlog: int) -> int:
        """Router clock between two tasks of the initial backlog."""
        return BACKLOG_STEP_MS

    def _voice_ready_worker_ids(self) -> list[str]:
        columns = self.engine.columns
        voice_col = columns.channel_index.get(VOICE)
        ready_rows = set(np.flatnonzero(columns.ready[: columns.row_count, voice_col]).tolist())
        return [w.worker_id for w in self.engine.workers.values() if w.row in ready_rows]

    def _occupy_free_voice_workers(self) -> int:
        """Gives a general voice task to each available worker still free on voice (one who
        found nothing it may take in the backlog); returns how many it took."""
        created = 0
        for worker_id in self._voice_ready_worker_ids():
            if worker_id not in self.voice_task_by_worker_id:
                self.occupy_with_general_task(worker_id)
                created += 1
        return created

    def occupy_with_general_task(self, worker_id: str) -> None:
        """Creates a general voice task of the worker's first team: as the worker is the only
        one free on voice, it is offered the task, and accepts it. (Straight to the queue, in
        the policy case too: a policy's first step might not allow this worker.)"""
        team = self.profile_by_id[worker_id].attributes["teams"][0]
        self.advance(1)
        self.apply(cmd.CreateTask(general_spec(team, VOICE)))
        self.accept_offers(self.engine.take_events())

    def _trim_backlog(self) -> None:
        """Cancels the newest waiting tasks beyond the target backlog."""
        waiting_ids = [
            task_id
            for queue_id in self.engine.queues
            for task_id in self.engine.waiting.task_ids(queue_id)
        ]
        surplus = len(waiting_ids) - self.waiting_tasks_target
        if surplus <= 0:
            return
        newest_first = sorted(waiting_ids, key=lambda t: self.engine.tasks[t].seq, reverse=True)
        for task_id in newest_first[:surplus]:
            self.apply(cmd.CancelTask(task_id, "benchmark_trim"))
        self.engine.take_events()

    def waiting_count(self) -> int:
        return len(self.engine.waiting)

    def busy_worker_ids(self) -> list[str]:
        return sorted(self.voice_task_by_worker_id)

    # -- restoring after a decision -----------------------------------------------------------

    def restore_after_arrival(self, created: CreatedTask) -> str | None:
        """Cancels the arrived task (offered or waiting); returns the worker it was offered to."""
        worker_id = created.task.worker_id or None
        self.engine.take_events()
        self.apply(cmd.CancelTask(created.task.task_id, "benchmark_restore"))
        self.engine.take_events()
        return worker_id

    def restore_after_free(self, worker_id: str, events: Sequence[Event]) -> str | None:
        """Accepts the offer the freed worker got and refills the backlog; returns the task id
        the worker was offered, or None (then it gets a general task, to be busy again)."""
        self.voice_task_by_worker_id.pop(worker_id, None)
        offered = next(
            (
                e.task.task_id
                for e in events
                if isinstance(e, OfferCreated) and e.reservation.worker_id == worker_id
            ),
            None,
        )
        self.accept_offers(events)
        if offered is None:
            self.occupy_with_general_task(worker_id)
        else:
            self.apply(cmd.CreateTask(self.source.next_spec(VOICE)))
            self.accept_offers(self.engine.take_events())
        return offered


class PolicySteadyState(SteadyState):
    """The same steady state, with every task (backlog, arrivals, refills) created through
    `routing_policy()`, and the backlog created over `POLICY_BACKLOG_SPAN_MS` of router clock
    so that its tasks are spread over the 3 steps. Same catalog, same workers (the same random
    draws up to the tasks).

    Once built, the backlog keeps flowing as the clock advances (outside the timed calls): a
    voice task arrives every `flow_step_ms` (the pace the backlog was built at) and the longest
    waiting one abandons. Without that, a 20 s step would be empty 20 s into the measurement (a
    decision advances the clock 10 ms) and the spread over the steps would be gone."""

    policy = True

    def __init__(self, *, workers: int, waiting_tasks: int, seed: int) -> None:
        super().__init__(workers=workers, waiting_tasks=waiting_tasks, seed=seed)
        self.source = PolicyTaskSource(self.catalog, self.rng)
        self.flow_step_ms = 0
        """Router clock between two arrivals (and abandons) of the flowing backlog; 0: not
        flowing (while building)."""
        self._flow_due_ms = 0
        self._oldest_index = 0
        """Where the search for the longest waiting task starts in `created_task_ids`."""
        self.abandoned = 0

    def build(self, progress: Callable[[str], None] = lambda _: None) -> None:
        super().build(progress)
        self.flow_step_ms = self.backlog_step_ms(self.waiting_tasks_target)
        self._flow_due_ms = self.now_ms + self.flow_step_ms

    def advance(self, step_ms: int) -> None:
        super().advance(step_ms)
        while self.flow_step_ms and self._flow_due_ms <= self.now_ms:
            self._flow_due_ms += self.flow_step_ms
            self.apply(cmd.CreateTask(self.source.next_spec(VOICE)))
            self.accept_offers(self.engine.take_events())
            self._abandon_longest_waiting()

    def _abandon_longest_waiting(self) -> None:
        ids, tasks = self.created_task_ids, self.engine.tasks
        while self._oldest_index < len(ids):
            task = tasks.get(ids[self._oldest_index])
            self._oldest_index += 1
            if task is not None and task.status is TaskStatus.PENDING:
                self.apply(cmd.CancelTask(task.task_id, "abandoned"))
                self.engine.take_events()
                self.abandoned += 1
                return

    def configure(self) -> None:
        super().configure()
        self.apply(
            cmd.UpsertQueue(
                QueueConfig(
                    queue_id=GENERAL_QUEUE,
                    display_name="General",
                    reservation_timeout_s=30.0,
                    wrapup_s=0.0,
                )
            )
        )
        self.apply(cmd.UpsertRoutingPolicy(routing_policy()))

    def backlog_step_ms(self, backlog: int) -> int:
        return max(BACKLOG_STEP_MS, POLICY_BACKLOG_SPAN_MS // max(backlog, 1))

    def backlog_by_step(self) -> list[int]:
        """Waiting tasks on each of the routes' 3 steps."""
        counts = [0, 0, 0]
        for task in self._waiting_records():
            counts[task.step_index] += 1
        return counts

    def backlog_by_route(self) -> dict[str, int]:
        """Waiting tasks per route of the policy (every route listed, in order)."""
        names = policy_route_names()
        counts = dict.fromkeys(names, 0)
        for task in self._waiting_records():
            if task.route_index == NO_ROUTE:
                continue  # not routed by the policy (none wait: see occupy_with_general_task)
            counts[names[-1] if task.route_index == DEFAULT_ROUTE else names[task.route_index]] += 1
        return counts

    def _waiting_records(self) -> list[TaskRecord]:
        engine = self.engine
        return [
            engine.tasks[task_id]
            for queue_id in engine.queues
            for task_id in engine.waiting.task_ids(queue_id)
        ]


def build_state(
    size: CaseSize, seed: int, progress: Callable[[str], None] = lambda _: None
) -> SteadyState:
    """The steady state of a case, built."""
    kind = PolicySteadyState if size.policy else SteadyState
    state = kind(workers=size.workers, waiting_tasks=size.waiting_tasks, seed=seed)
    state.build(progress)
    return state


# == measuring =====================================================================================


@dataclass
class Run:
    """Latencies of one series of decisions and what they decided."""

    latencies_ns: list[int] = field(default_factory=list)
    offered: int = 0
    compared: int = 0
    agreed: int = 0
    agreed_exactly: int = 0
    candidates_total: int = 0

    def record(self, elapsed_ns: int) -> None:
        self.latencies_ns.append(elapsed_ns)

    @property
    def decisions(self) -> int:
        return len(self.latencies_ns)

    def percentile_ms(self, percent: float) -> float:
        return float(np.percentile(np.array(self.latencies_ns), percent)) / 1e6

    def mean_ms(self) -> float:
        return float(np.mean(self.latencies_ns)) / 1e6

    def decisions_per_s(self) -> float:
        total_ns = sum(self.latencies_ns)
        return self.decisions * 1e9 / total_ns if total_ns else math.nan


Profiler = cProfile.Profile | None


def _timed(profiler: Profiler, call: Callable[[], Any]) -> tuple[Any, int]:
    if profiler is not None:
        profiler.enable()
    started = time.perf_counter_ns()
    result = call()
    elapsed = time.perf_counter_ns() - started
    if profiler is not None:
        profiler.disable()
    return result, elapsed


def measure_task_arrives(
    state: SteadyState,
    decisions: int,
    *,
    warmup: int = WARMUP_DECISIONS,
    profiler: Profiler = None,
) -> Run:
    """The engine routing arriving chat tasks, one `CreateTask` at a time."""
    run = Run()
    for index in range(warmup + decisions):
        spec = state.source.next_spec(CHAT)
        state.advance(DECISION_STEP_MS)
        state.tick()
        command, now_ms = cmd.CreateTask(spec), state.now_ms
        created, elapsed_ns = _timed(
            profiler if index >= warmup else None,
            lambda: state.engine.apply(command, now_ms),  # noqa: B023 (called at once)
        )
        if index >= warmup:
            run.record(elapsed_ns)
            run.offered += created.task.status is TaskStatus.RESERVED
        state.restore_after_arrival(created)
    return run


def measure_worker_frees(
    state: SteadyState,
    decisions: int,
    *,
    warmup: int = WARMUP_DECISIONS,
    profiler: Profiler = None,
) -> Run:
    """The engine serving workers who complete their call, one `CompleteTask` at a time."""
    run = Run()
    busy = state.busy_worker_ids()
    picks = [state.rng.randrange(len(busy)) for _ in range(warmup + decisions)]
    for index, pick in enumerate(picks):
        worker_id = busy[pick]
        state.advance(DECISION_STEP_MS)
        state.tick()
        task_id = state.voice_task_by_worker_id[worker_id]
        command, now_ms = cmd.CompleteTask(task_id), state.now_ms
        _, elapsed_ns = _timed(
            profiler if index >= warmup else None,
            lambda: state.engine.apply(command, now_ms),  # noqa: B023 (called at once)
        )
        offered = state.restore_after_free(worker_id, state.engine.take_events())
        if index >= warmup:
            run.record(elapsed_ns)
            run.offered += offered is not None
    return run


# -- the baseline on the same state ----------------------------------------------------------------


class NaiveMirror:
    """The baseline's plain-Python copy of the engine's state, kept in step after each
    decision (outside the timed region) by re-reading what the decision changed."""

    def __init__(self, state: SteadyState) -> None:
        self.state = state
        engine = state.engine
        profiles = state.profile_by_id
        self.workers: list[naive.NaiveWorker] = []
        for record in sorted(engine.workers.values(), key=lambda w: w.row):
            profile = profiles[record.worker_id]
            teams = frozenset(profile.attributes["teams"])
            self.workers.append(
                naive.NaiveWorker(
                    worker_id=record.worker_id,
                    row=record.row,
                    available=engine.activities[record.activity],
                    skills=dict(profile.skills),
                    languages=frozenset(profile.languages),
                    empathy=profile.empathy,
                    capacity_by_channel=dict(profile.capacity_by_channel),
                    cost_by_channel=dict(profile.cost_by_channel),
                    total_capacity=profile.total_capacity,
                    queue_ids=frozenset(q for q in engine.queues if q in teams),
                    idle_since_ms=record.idle_since_ms,
                    load_by_channel=dict(record.load_by_channel),
                )
            )
        self.worker_by_id = {w.worker_id: w for w in self.workers}
        self.waiting = naive.WaitingList(
            self.naive_task(engine.tasks[task_id])
            for queue_id in engine.queues
            for task_id in engine.waiting.task_ids(queue_id)
        )

    @staticmethod
    def naive_task(record: TaskRecord, task_id: str = "") -> naive.NaiveTask:
        spec = record.spec
        return naive.NaiveTask(
            task_id=task_id or record.task_id,
            seq=record.seq,
            queue_id=spec.queue_id,
            channel=spec.channel,
            required_skills=spec.required_skills,
            preferred_skills=spec.preferred_skills,
            language=spec.language,
            priority=spec.priority,
            created_ms=record.created_ms,
            sentiment=spec.sentiment,
            repeat_contacts=record.repeat_contacts,
            excluded_worker_ids=record.excluded_worker_ids,
        )

    def sync_worker(self, worker_id: str) -> None:
        record = self.state.engine.workers[worker_id]
        mirrored = self.worker_by_id[worker_id]
        mirrored.load_by_channel = dict(record.load_by_channel)
        mirrored.idle_since_ms = record.idle_since_ms

    def sync_new_tasks(self, created_before: int) -> None:
        """Mirrors the tasks created through the state since it had created `created_before`:
        adds those that wait, and syncs the workers of those that were offered."""
        engine = self.state.engine
        for task_id in self.state.created_task_ids[created_before:]:
            record = engine.tasks.get(task_id)
            if record is None:
                continue
            if task_id in engine.waiting:
                self.waiting.add(self.naive_task(record))
            elif record.worker_id:
                self.sync_worker(record.worker_id)


def compare_task_arrives(state: SteadyState, decisions: int) -> Run:
    """The baseline routing arriving chat tasks on the same state, checked against the engine."""
    mirror = NaiveMirror(state)
    run = Run()
    weights_by_queue = {q: c.weights for q, c in state.engine.queues.items()}
    started = time.perf_counter()
    while run.decisions < decisions and not _over_budget(run, started):
        spec = state.source.next_spec(CHAT)
        state.advance(DECISION_STEP_MS)
        arriving = naive.NaiveTask(
            task_id="arriving",
            seq=0,
            queue_id=spec.queue_id,
            channel=spec.channel,
            required_skills=spec.required_skills,
            preferred_skills=spec.preferred_skills,
            language=spec.language,
            priority=spec.priority,
            created_ms=state.now_ms,
            sentiment=spec.sentiment,
        )
        weights, now_ms = weights_by_queue[spec.queue_id], state.now_ms
        choice, elapsed_ns = _timed(
            None,
            lambda: naive.best_worker_for(mirror.workers, arriving, weights, now_ms),  # noqa: B023
        )
        run.record(elapsed_ns)
        run.candidates_total += len(choice.score_by_worker_id)
        created = state.apply(cmd.CreateTask(spec))
        engine_worker_id = state.restore_after_arrival(created)
        naive_worker_id = choice.worker.worker_id if choice.worker else None
        run.offered += naive_worker_id is not None
        run.compared += 1
        if engine_worker_id == naive_worker_id:
            run.agreed += 1
            run.agreed_exactly += 1
        elif engine_worker_id is not None and naive_worker_id is not None:
            best = choice.score_by_worker_id[naive_worker_id]
            engine_score = choice.score_by_worker_id.get(engine_worker_id, -math.inf)
            run.agreed += abs(best - engine_score) <= TIE_SCORE_TOLERANCE
        if engine_worker_id is not None:
            mirror.sync_worker(engine_worker_id)
    return run


def compare_worker_frees(state: SteadyState, decisions: int) -> Run:
    """The baseline serving freed workers on the same state, checked against the engine."""
    mirror = NaiveMirror(state)
    run = Run()
    busy = state.busy_worker_ids()
    started = time.perf_counter()
    while run.decisions < decisions and not _over_budget(run, started):
        worker_id = busy[state.rng.randrange(len(busy))]
        engine = state.engine
        task_id = state.voice_task_by_worker_id[worker_id]
        state.advance(DECISION_STEP_MS)
        # The baseline sees the worker as the engine will right after the completion.
        freed = mirror.worker_by_id[worker_id]
        freed.load_by_channel[VOICE] -= 1
        if not freed.load_by_channel[VOICE]:
            del freed.load_by_channel[VOICE]
        if len(engine.workers[worker_id].task_ids) == 1:
            freed.idle_since_ms = state.now_ms
        choice, elapsed_ns = _timed(None, lambda: mirror.waiting.best_task_for(freed))  # noqa: B023
        run.record(elapsed_ns)
        created_before = len(state.created_task_ids)
        state.apply(cmd.CompleteTask(task_id))
        offered = state.restore_after_free(worker_id, engine.take_events())
        run.offered += choice is not None
        run.compared += 1
        naive_task_id = choice.task_id if choice is not None else None
        run.agreed += offered == naive_task_id
        run.agreed_exactly += offered == naive_task_id
        if offered is not None:
            record = engine.tasks[offered]
            mirror.waiting.remove(offered, mirror.naive_task(record).order_key)
        mirror.sync_new_tasks(created_before)
        mirror.sync_worker(worker_id)
    return run


def _over_budget(run: Run, started: float) -> bool:
    return (
        run.decisions >= BASELINE_DECISIONS_MIN
        and time.perf_counter() - started > BASELINE_TIME_BUDGET_S
    )


# == one case ======================================================================================


@dataclass(frozen=True, slots=True)
class CaseSize:
    workers: int
    waiting_tasks: int
    decisions: int
    baseline_decisions: int
    """Ignored in the policy case, which has no baseline."""
    policy: bool = False

    def label(self) -> str:
        policy = ", through the routing policy" if self.policy else ""
        return f"{self.workers:,} workers x {self.waiting_tasks:,} waiting{policy}"


def rss_mb() -> float:
    """The process's resident memory now."""
    with open("/proc/self/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    return resident_pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def full_collection_ms() -> float:
    """How long one full garbage collection takes with this state in memory: the pause the
    single writer takes whenever Python decides to collect the oldest generation."""
    started = time.perf_counter_ns()
    gc.collect()
    return (time.perf_counter_ns() - started) / 1e6


def run_case(
    size: CaseSize, *, seed: int = 7, progress: Callable[[str], None] = lambda _: None
) -> list[dict[str, Any]]:
    """Builds the steady state of one size and measures both events, engine and baseline (no
    baseline in the policy case: its fields are None). Returns one result per event, in the
    shape of the JSON `cases`."""
    state = build_state(size, seed, progress)
    memory_mb = rss_mb()
    gc_full_ms = full_collection_ms()  # before the baseline's copy of the state exists
    waiting = state.waiting_count()
    policy_fields: dict[str, dict[str, Any]] = {}
    progress(f"built in {state.times.total_s:.1f} s, {memory_mb:,.0f} MB; measuring")
    engine_runs: dict[str, Run] = {}
    for event, measure in (
        ("task_arrives", measure_task_arrives),
        ("worker_frees", measure_worker_frees),
    ):
        policy_fields[event] = {"policy": state.policy}
        if isinstance(state, PolicySteadyState):
            policy_fields[event] |= {
                "policy_filters": len(POLICY_RULES),
                "policy_steps": 3,
                "backlog_by_step": state.backlog_by_step(),
                "backlog_by_route": state.backlog_by_route(),
                "backlog_flow_per_s": round(1000 / state.flow_step_ms, 1),
            }
        engine_runs[event] = measure(state, size.decisions)
    baseline_runs: dict[str, Run] = {}
    if not state.policy:
        progress("measuring the baseline")
        baseline_runs = {
            "task_arrives": compare_task_arrives(state, size.baseline_decisions),
            "worker_frees": compare_worker_frees(state, size.baseline_decisions),
        }
    results = []
    for event, run in engine_runs.items():
        engine_rate = run.decisions_per_s()
        results.append(
            {
                "workers": size.workers,
                "skills": SKILL_COUNT,
                "waiting_tasks": waiting,
                "event": event,
                **policy_fields[event],
                "decisions": run.decisions,
                "decisions_per_s": round(engine_rate, 1),
                "p50_ms": round(run.percentile_ms(50), 4),
                "p99_ms": round(run.percentile_ms(99), 4),
                "mean_ms": round(run.mean_ms(), 4),
                "max_ms": round(max(run.latencies_ns) / 1e6, 4),
                "offered_share": round(run.offered / run.decisions, 4),
                **baseline_fields(event, engine_rate, baseline_runs.get(event)),
                "task_types": len(state.catalog),
                "rss_mb": round(memory_mb, 1),
                "peak_rss_mb": round(peak_rss_mb(), 1),
                "setup_s": round(state.times.total_s, 2),
                "setup_backlog_s": round(state.times.backlog_s, 2),
                "setup_workers_s": round(state.times.workers_s, 2),
                "setup_fixup_tasks": state.times.fixup_tasks,
                "gc_full_ms": round(gc_full_ms, 1),
            }
        )
    return results


BASELINE_FIELDS = (
    "baseline_decisions",
    "baseline_decisions_per_s",
    "baseline_p50_ms",
    "baseline_p99_ms",
    "speedup_vs_baseline",
    "agreement",
    "agreement_exact",
    "eligible_workers_mean",
)
"""The result fields that come from the baseline (all None when it did not run)."""


def baseline_fields(event: str, engine_rate: float, baseline: Run | None) -> dict[str, Any]:
    if baseline is None:
        return dict.fromkeys(BASELINE_FIELDS)
    baseline_rate = baseline.decisions_per_s()
    return {
        "baseline_decisions": baseline.decisions,
        "baseline_decisions_per_s": round(baseline_rate, 1),
        "baseline_p50_ms": round(baseline.percentile_ms(50), 4),
        "baseline_p99_ms": round(baseline.percentile_ms(99), 4),
        "speedup_vs_baseline": round(engine_rate / baseline_rate, 2),
        "agreement": round(baseline.agreed / baseline.compared, 4),
        "agreement_exact": round(baseline.agreed_exactly / baseline.compared, 4),
        "eligible_workers_mean": (
            round(baseline.candidates_total / baseline.decisions, 1)
            if event == "task_arrives"
            else None
        ),
    }


# == the runs ======================================================================================

QUICK_CASES = (
    CaseSize(10_000, 100_000, decisions=2_000, baseline_decisions=200),
    CaseSize(10_000, 100_000, decisions=2_000, baseline_decisions=0, policy=True),
)
FULL_CASES = (
    *(
        CaseSize(workers, waiting, decisions=3_000, baseline_decisions=200)
        for workers in (1_000, 10_000, 100_000)
        for waiting in (10_000, 100_000)
    ),
    CaseSize(100_000, 1_000_000, decisions=1_000, baseline_decisions=50),
    CaseSize(10_000, 100_000, decisions=3_000, baseline_decisions=0, policy=True),
)
"""Every size of the full run; the 1M one is the memory check, the last the policy case."""

TARGET_WORKERS = 10_000
TARGET_WAITING = 100_000
TARGET_P99_MS = 1.0
TARGET_DECISIONS_PER_S = 20_000
TARGET_SPEEDUP = 10.0
TARGET_RSS_MB = 4096
"""100k workers with 1M waiting tasks must fit in 4 GB."""
TARGET_POLICY_SHARE = 0.5
"""The policy case's decisions per second, as a share of the plain case's (same size, event)."""
TARGET_POLICY_P99_MS = 2.0


def plain_counterpart(cases: Sequence[dict[str, Any]], case: dict[str, Any]) -> dict[str, Any]:
    """The plain case of the same size and event as a policy case, if the run has it."""
    for other in cases:
        if not other.get("policy") and all(
            other[key] == case[key] for key in ("workers", "waiting_tasks", "event")
        ):
            return other
    return {}


def vs_plain(cases: Sequence[dict[str, Any]], case: dict[str, Any]) -> float | None:
    """A policy case's decisions per second over its plain counterpart's (None: not a policy
    case, or no counterpart in the run)."""
    plain = plain_counterpart(cases, case) if case.get("policy") else {}
    if not plain:
        return None
    return round(case["decisions_per_s"] / plain["decisions_per_s"], 3)


def targets(cases: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target against its case: PASS or MISS (the run never fails on a miss)."""
    checks = []
    for case in cases:
        label = f"{case['workers']:,} x {case['waiting_tasks']:,} {case['event']}"
        at_target_size = (
            case["workers"] == TARGET_WORKERS and case["waiting_tasks"] == TARGET_WAITING
        )
        if case.get("policy"):
            if at_target_size:
                label += " policy"
                checks.append(
                    _check(label, "p99_ms", case["p99_ms"], TARGET_POLICY_P99_MS, at_most=True)
                )
                share = vs_plain(cases, case)
                if share is not None:
                    checks.append(
                        _check(label, "decisions_per_s / plain", share, TARGET_POLICY_SHARE)
                    )
            continue
        if at_target_size:
            checks += [
                _check(label, "p99_ms", case["p99_ms"], TARGET_P99_MS, at_most=True),
                _check(label, "decisions_per_s", case["decisions_per_s"], TARGET_DECISIONS_PER_S),
                _check(label, "speedup_vs_baseline", case["speedup_vs_baseline"], TARGET_SPEEDUP),
            ]
        if case["waiting_tasks"] >= 1_000_000 and case["event"] == "task_arrives":
            checks.append(_check(label, "rss_mb", case["rss_mb"], TARGET_RSS_MB, at_most=True))
    return checks


def _check(
    case: str, metric: str, value: float, target: float, *, at_most: bool = False
) -> dict[str, Any]:
    passed = value <= target if at_most else value >= target
    return {
        "case": case,
        "metric": metric,
        "value": value,
        "target": f"{'<=' if at_most else '>='} {target:g}",
        "result": "PASS" if passed else "MISS",
    }


def run_case_in_subprocess(size: CaseSize, seed: int) -> list[dict[str, Any]]:
    """Runs one case in a fresh interpreter, so that its memory figure is its own."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "case.json"
        command = [
            sys.executable,
            "-m",
            "benchmarks.engine",
            "--one-case",
            f"{size.workers},{size.waiting_tasks},{size.decisions},{size.baseline_decisions},"
            f"{int(size.policy)}",
            "--seed",
            str(seed),
            "--one-case-out",
            str(out),
        ]
        subprocess.run(command, check=True, cwd=Path(__file__).resolve().parent.parent)
        results: list[dict[str, Any]] = json.loads(out.read_text())
        return results


def print_table(cases: Sequence[dict[str, Any]], checks: Sequence[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Switchboard engine: one routing decision at a time")
    columns = [
        ("workers", "workers", "{:,}"),
        ("waiting", "waiting_tasks", "{:,}"),
        ("event", "event", "{}"),
        ("policy", "policy", "{}"),
        ("decisions/s", "decisions_per_s", "{:,.0f}"),
        ("vs plain", "vs_plain", "{:.0%}"),
        ("p50 ms", "p50_ms", "{:.3f}"),
        ("p99 ms", "p99_ms", "{:.3f}"),
        ("naive/s", "baseline_decisions_per_s", "{:,.0f}"),
        ("naive p50 ms", "baseline_p50_ms", "{:.3f}"),
        ("speedup", "speedup_vs_baseline", "{:.1f}x"),
        ("agree", "agreement", "{:.1%}"),
        ("offered", "offered_share", "{:.0%}"),
        ("RSS MB", "rss_mb", "{:,.0f}"),
        ("full GC ms", "gc_full_ms", "{:,.0f}"),
        ("setup s", "setup_s", "{:.1f}"),
    ]
    for header, _, _ in columns:
        table.add_column(header, justify="left" if header in ("event", "policy") else "right")
    for case in cases:
        row = {
            **case,
            "policy": "yes" if case.get("policy") else "no",
            "vs_plain": vs_plain(cases, case),
        }
        table.add_row(
            *("-" if row.get(key) is None else fmt.format(row[key]) for _, key, fmt in columns)
        )
    console = Console(width=200)
    console.print(table)
    if checks:
        targets_table = Table(title="Targets")
        for header in ("case", "metric", "value", "target", "result"):
            targets_table.add_column(header)
        for check in checks:
            style = "green" if check["result"] == "PASS" else "red"
            targets_table.add_row(
                check["case"],
                check["metric"],
                f"{check['value']:,}",
                check["target"],
                f"[{style}]{check['result']}[/{style}]",
            )
        console.print(targets_table)


def profile(size: CaseSize, seed: int, top: int) -> None:
    """cProfile of the timed calls only (the restores between decisions are not profiled)."""
    state = build_state(size, seed, _progress)
    for event, measure in (
        ("task_arrives", measure_task_arrives),
        ("worker_frees", measure_worker_frees),
    ):
        profiler = cProfile.Profile()
        run = measure(state, size.decisions, profiler=profiler)
        stats = pstats.Stats(profiler)
        rows = []
        for (filename, line, function), (_, calls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
            where = f"{_short(filename)}:{line}({function})"
            rows.append((tottime, cumtime, calls, where))
        rows.sort(reverse=True)
        total_s = sum(row[0] for row in rows)
        print(
            f"\n== {event}: {size.label()}, {run.decisions} decisions, "
            f"{total_s / run.decisions * 1e6:.1f} us/decision under cProfile "
            f"({run.mean_ms() * 1e3:.1f} us mean with profiler on) =="
        )
        print(f"{'self us/dec':>11} {'cum us/dec':>10} {'calls/dec':>9}  function")
        for tottime, cumtime, calls, where in rows[:top]:
            print(
                f"{tottime / run.decisions * 1e6:11.2f} {cumtime / run.decisions * 1e6:10.2f} "
                f"{calls / run.decisions:9.2f}  {where}"
            )


def _short(filename: str) -> str:
    for marker in ("/router/", "/benchmarks/", "/site-packages/"):
        if marker in filename:
            return filename[filename.index(marker) + 1 :]
    return filename


def _progress(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="only 10k workers x 100k waiting tasks (under a minute)",
    )
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--profile",
        nargs="?",
        const="plain",
        choices=("plain", "policy"),
        help="profile the decisions at 10k workers x 100k waiting tasks, of the plain case "
        "(the default) or of the policy case",
    )
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument("--one-case", help=argparse.SUPPRESS)
    parser.add_argument("--one-case-out", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one_case:
        workers, waiting, decisions, baseline, policy = (int(x) for x in args.one_case.split(","))
        size = CaseSize(workers, waiting, decisions, baseline, policy=bool(policy))
        results = run_case(size, seed=args.seed, progress=_progress)
        args.one_case_out.write_text(json.dumps(results))
        return 0
    if args.profile:
        policy = args.profile == "policy"
        profile(next(c for c in QUICK_CASES if c.policy == policy), args.seed, args.profile_top)
        return 0

    started = time.perf_counter()
    cases: list[dict[str, Any]] = []
    for size in QUICK_CASES if args.quick else FULL_CASES:
        _progress(f"case {size.label()}")
        cases += run_case_in_subprocess(size, args.seed)
    for case in cases:
        if case["policy"]:
            case["decisions_per_s_vs_plain"] = vs_plain(cases, case)
    checks = targets(cases)
    print_table(cases, checks)
    elapsed_s = time.perf_counter() - started
    print(f"{len(cases)} results in {elapsed_s:.1f} s")
    if args.json:
        report = {
            "benchmark": "engine",
            "command": "python -m benchmarks.engine" + (" --quick" if args.quick else ""),
            "seed": args.seed,
            "machine": {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
            },
            "elapsed_s": round(elapsed_s, 1),
            "cases": cases,
            "targets": checks,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
