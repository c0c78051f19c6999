"""The engine benchmark's workload: the contact center (queues, skills, task types drawn with
skewed popularity, agents), the routing policy of the policy case, and the steady states the
events are measured on."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.workload import (
    CHANNEL_CAPACITY_MAX,
    CHANNEL_COST,
    CHAT,
    CUSTOMER_TIERS,
    DOMAIN_SKILLS,
    EMAIL,
    PRIORITY_SHARES,
    QUEUE_SHARES,
    SENIOR_TENURE_MONTHS,
    SITES,
    TASK_LANGUAGE_SHARES,
    TOTAL_CAPACITY,
    VOICE,
    WORKER_LANGUAGE_SHARES,
    WORKER_TIER_SHARES,
    choose,
    draw_sentiment,
    level,
)
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
# The center itself (skills, channels, languages, sites, the customers' mood) is the one of
# `benchmarks.workload`, shared with the demo and its agent fleet.


TYPES_PER_QUEUE_AND_CHANNEL = 20
"""IVR menu leaves per queue and channel: 8 queues x 2 channels x 20 = 320 task types."""
MIN_LEVELS = (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0)
MIN_LEVEL_SHARES = (0.20, 0.15, 0.25, 0.15, 0.15, 0.06, 0.04)
WORKER_ON_BREAK_SHARE = 0.08
"""Workers logged in but on break: present in the columns, never eligible."""
ENGINE_CHANNELS = (VOICE, CHAT, EMAIL)
"""The channels every agent of the engine benchmark works, each at the center's most."""
WORKER_CAPACITY_BY_CHANNEL = {channel: CHANNEL_CAPACITY_MAX[channel] for channel in ENGINE_CHANNELS}
WORKER_COST_BY_CHANNEL = {channel: CHANNEL_COST[channel] for channel in ENGINE_CHANNELS}
WORKER_TOTAL_CAPACITY = TOTAL_CAPACITY

BACKLOG_STEP_MS = 1
"""Router clock advance between two tasks of the initial backlog."""

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


def _weighted_sample(rng: random.Random, shares: dict[str, float], count: int) -> list[str]:
    """`count` distinct keys, each drawn with its share among those not drawn yet."""
    remaining = dict(shares)
    chosen: list[str] = []
    for _ in range(count):
        key = choose(rng, remaining)
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
                    count = choose(rng, {1: 0.5, 2: 0.35, 3: 0.15})
                    required = {
                        skill: rng.choices(MIN_LEVELS, weights=MIN_LEVEL_SHARES)[0]
                        for skill in rng.sample(specific, count)
                    }
                    language = choose(rng, TASK_LANGUAGE_SHARES)
                    priority = choose(rng, PRIORITY_SHARES)
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
        sentiment = draw_sentiment(rng)
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
        intent = choose(self._rng, INTENT_SHARES)
        region = choose(self._rng, REGION_SHARES)
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
        teams = _weighted_sample(rng, QUEUE_SHARES, choose(rng, {1: 0.5, 2: 0.4, 3: 0.1}))
        skills: dict[str, float] = {}
        for team in teams:
            general, specific = DOMAIN_SKILLS[team][0], DOMAIN_SKILLS[team][1:]
            skills[general] = level(rng, 1.0, 5.0)
            for skill in rng.sample(specific, rng.randint(3, 6)):
                skills[skill] = level(rng, 1.0, 5.0)
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
                    "tier": choose(traits, WORKER_TIER_SHARES),
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
