"""The domain model: configuration values (frozen) and the records the engine keeps (mutable,
owned by the engine alone). Times are integer milliseconds of the router's clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from router.core.limits import (
    ENTRIES_PER_CUSTOMER_DEFAULT,
    IDENTITY_VERIFICATION_WINDOW_S_DEFAULT,
    PAUSE_MAX_S_DEFAULT,
    PRESENCE_GRACE_S_DEFAULT,
    PRESENCE_TIMEOUT_S_DEFAULT,
    RESERVATION_TIMEOUT_S_DEFAULT,
    RETENTION_DAYS_DEFAULT,
)

JsonObject = Mapping[str, Any]

DEFAULT_CHANNELS: tuple[str, ...] = (
    "voice",
    "chat",
    "sms",
    "whatsapp",
    "email",
    "messenger",
    "video",
)
DEFAULT_ACTIVITIES: Mapping[str, bool] = {"available": True, "break": False, "offline": False}
NEW_WORKER_ACTIVITY = "offline"


@dataclass(frozen=True, slots=True)
class PresenceSettings:
    """The workspace's presence settings (`presence.py`). The defaults act on nothing until a
    worker connects, so that journals written before presence replay as they did."""

    presence_timeout_s: float = PRESENCE_TIMEOUT_S_DEFAULT
    """A Connect stream silent this long (no heartbeat or other message) is ended by the
    router and the worker's presence is lost."""
    presence_grace_s: float = PRESENCE_GRACE_S_DEFAULT
    """After its stream is lost, how long a worker keeps its offers and activity (receiving
    nothing new) for a reconnect; then it moves to `lost_activity`."""
    lost_activity: str = "offline"
    """Where a worker goes when its grace runs out (an unavailable activity)."""
    missed_offers_max: int = 0
    """Offers in a row a worker may let time out before it moves to `away_activity` (0: off)."""
    away_activity: str = "away"
    """Where a worker who missed `missed_offers_max` offers in a row goes (unavailable)."""


@dataclass(frozen=True, slots=True)
class TimelineSettings:
    """The workspace's customer timeline settings (`customers.py`)."""

    personal_attribute_keys: tuple[str, ...] = ()
    """Top-level task attribute keys that hold personal data: sealed by the API, never seen by
    routing expressions."""
    retention_days: int = RETENTION_DAYS_DEFAULT
    """Timeline entries older than this are purged."""
    entries_per_customer_max: int = ENTRIES_PER_CUSTOMER_DEFAULT
    """Timeline entries kept per customer, oldest dropped first."""
    identity_verification_window_s: float = IDENTITY_VERIFICATION_WINDOW_S_DEFAULT
    """How long an `identity_verified` entry makes `customer.verified` true."""


class TaskStatus(Enum):
    PENDING = "pending"
    RESERVED = "reserved"
    ASSIGNED = "assigned"
    WRAPPING = "wrapping"
    COMPLETED = "completed"
    CANCELED = "canceled"
    PAUSED = "paused"
    """Parked (the customer stepped away): no worker holds it; `ResumeTask` routes it again."""

    @property
    def is_open(self) -> bool:
        return self not in (TaskStatus.COMPLETED, TaskStatus.CANCELED)


class ReservationStatus(Enum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    TIMED_OUT = "timed_out"
    RESCINDED = "rescinded"
    CANCELED = "canceled"


class PauseExpiryAction(Enum):
    """What happens to a task paused for longer than its queue's `pause_max_s`."""

    RESUME = "resume"
    """It is resumed: routed again, preferring the agent who paused it."""
    CANCEL = "cancel"
    """It is canceled (reason "pause_expired")."""


class QueueOrder(Enum):
    FIFO = "fifo"
    LIFO = "lifo"


class Weekday(Enum):
    MONDAY = "monday"
    TUESDAY = "tuesday"
    WEDNESDAY = "wednesday"
    THURSDAY = "thursday"
    FRIDAY = "friday"
    SATURDAY = "saturday"
    SUNDAY = "sunday"


@dataclass(frozen=True, slots=True)
class OpenHours:
    """One opening interval of a weekday, in the calendar's local time."""

    day: Weekday
    opens: str
    """"HH:MM", 00:00 to 23:59."""
    closes: str
    """"HH:MM", after `opens`; "24:00" is the end of the day."""


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """When a queue is open: weekly hours in a time zone, minus holidays."""

    time_zone: str
    """An IANA time zone name, e.g. "Europe/Paris" (daylight saving time follows it)."""
    weekly: tuple[OpenHours, ...]
    holidays: tuple[str, ...] = ()
    """Local dates ("YYYY-MM-DD") on which the queue is closed all day."""


class ActionKind(Enum):
    MOVE_TO_QUEUE = "move_to_queue"
    """The task leaves for `queue_id` (an overflow queue), keeping its age."""
    RAISE_PRIORITY = "raise_priority"
    """The task's priority rises by `priority_delta`."""
    CANCEL = "cancel"
    """The task is canceled with `reason`."""


@dataclass(frozen=True, slots=True)
class QueueAction:
    kind: ActionKind
    queue_id: str = ""
    priority_delta: int = 0
    reason: str = ""


class TriggerKind(Enum):
    WAIT_TIME = "wait_time"
    """The task has waited `wait_s` seconds in the queue."""
    QUEUE_LENGTH = "queue_length"
    """The task would wait behind `queue_length` or more waiting tasks (checked on arrival)."""
    STEPS_EXHAUSTED = "steps_exhausted"
    """The last step of the task's routing policy timed out."""


@dataclass(frozen=True, slots=True)
class ExceptionRule:
    """What happens to a task when a trigger fires (each rule fires at most once per task and
    queue; rules are checked in the order given)."""

    trigger: TriggerKind
    action: QueueAction
    wait_s: float = 0.0
    queue_length: int = 0


@dataclass(frozen=True, slots=True)
class ScoringWeights:
    """Weights of the score terms (see `scoring.py`). The defaults make skill fit and empathy fit
    decide, and let idle time, affinity and load break near-ties."""

    skill: float = 1.0
    """Weight of skill_fit in [0, 1]: how well the worker's levels cover the task's skills."""
    empathy: float = 1.0
    """Weight of empathy_fit = need x empathy, need rising with the customer's upset."""
    idle: float = 0.1
    """Weight of idle_fit: 1 for the longest-idle candidate (fairness between equals)."""
    affinity: float = 0.3
    """Weight of affinity: 1 for the task's preferred worker or the customer's last agent."""
    load: float = 0.1
    """Weight of (1 - load): prefer the worker with the smaller share of capacity in use."""


@dataclass(frozen=True, slots=True)
class QueueConfig:
    queue_id: str
    display_name: str = ""
    target_expression: str = ""
    """Which workers may serve the queue (expression over worker attributes; empty: all)."""
    weights: ScoringWeights = ScoringWeights()
    reservation_timeout_s: float = RESERVATION_TIMEOUT_S_DEFAULT
    wrapup_s: float = 0.0
    order: QueueOrder = QueueOrder.FIFO
    depth_max: int = 0
    """Most waiting tasks (0: the workspace limit `QUEUE_DEPTH_MAX`)."""
    priority_aging_per_min: float = 0.0
    """Priority points a waiting task gains per minute waited (0: no aging)."""
    exception_rules: tuple[ExceptionRule, ...] = ()
    business_hours: BusinessHours | None = None
    """None: always open."""
    after_hours_action: QueueAction | None = None
    """What a task arriving while the queue is closed meets (None: it waits as usual)."""
    offer_workers_max: int = 1
    """Offer each task to up to this many workers at once; the first to accept wins."""
    assignment_window_s: float = 0.0
    """0: offer at once (greedy). Above 0: collect the queue's tasks and free workers and assign
    them together every window, as an assignment problem."""
    pause_max_s: float = PAUSE_MAX_S_DEFAULT
    """Longest a task of this queue may stay paused before `pause_expiry_action` applies."""
    pause_expiry_action: PauseExpiryAction = PauseExpiryAction.RESUME


@dataclass(frozen=True, slots=True)
class RoutingStep:
    """One stage of a task's wait: who may take it, and for how long."""

    timeout_s: float = 0.0
    """After this long in the step the next step applies (0: only for the last step, which then
    lasts until the task is served)."""
    required_skills: Mapping[str, float] = field(default_factory=dict)
    """Minimum levels on top of the task's own (the higher of the two applies)."""
    worker_expression: str = ""
    """Which workers may take the task in this step, over worker attributes (empty: any)."""
    known_agent: bool = False
    """Only the task's known agent (its preferred worker, else the customer's last agent)."""
    priority_delta: int = 0
    """Added to the task's priority while in this step."""
    skip_if_no_workers: bool = False
    """Go straight to the next step when no worker this step allows is available."""


@dataclass(frozen=True, slots=True)
class Route:
    queue_id: str
    steps: tuple[RoutingStep, ...] = ()
    """Empty: one step with no extra constraints."""


@dataclass(frozen=True, slots=True)
class PolicyFilter:
    name: str
    expression: str
    """Over the task's attributes and its reserved keys (channel, priority, ...)."""
    route: Route


@dataclass(frozen=True, slots=True)
class RoutingPolicy:
    """A workflow: the first filter whose expression matches a task routes it."""

    policy_id: str
    display_name: str = ""
    filters: tuple[PolicyFilter, ...] = ()
    default_route: Route | None = None
    """For a task no filter matches (None: such a task is refused)."""


@dataclass(frozen=True, slots=True)
class WorkerProfile:
    """What an operator sets about a worker. Activity is kept across upserts when None."""

    worker_id: str
    display_name: str = ""
    attributes: JsonObject = field(default_factory=dict)
    skills: Mapping[str, float] = field(default_factory=dict)
    languages: tuple[str, ...] = ()
    empathy: float = 0.0
    capacity_by_channel: Mapping[str, int] = field(default_factory=dict)
    total_capacity: float | None = None
    cost_by_channel: Mapping[str, float] = field(default_factory=dict)
    activity: str | None = None


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What a front end says about a task when creating it."""

    channel: str
    queue_id: str = ""
    """The queue to wait in; give this or `policy_id`."""
    attributes: JsonObject = field(default_factory=dict)
    required_skills: Mapping[str, float] = field(default_factory=dict)
    """Skill -> minimum level (0 to 5) the worker must have."""
    preferred_skills: Mapping[str, float] = field(default_factory=dict)
    """Skill -> weight (> 0) of that skill in skill_fit."""
    language: str = ""
    priority: int = 0
    customer_id: str = ""
    sentiment: float = 0.0
    ttl_s: float = 0.0
    """Seconds a task may stay open before it is canceled (0: `TASK_TTL_S_DEFAULT`)."""
    preferred_worker_id: str = ""
    policy_id: str = ""
    """The routing policy that chooses the queue and the steps; give this or `queue_id`."""
    known_agent_wait_s: float = 0.0
    """Wait this long for the known agent (the preferred worker, else the customer's last
    agent) before anyone else may take the task."""


NO_ROUTE = -2
"""`TaskRecord.route_index` of a task routed by its queue alone (no policy, or moved)."""
DEFAULT_ROUTE = -1
"""`TaskRecord.route_index` of a task on its policy's default route."""


@dataclass(slots=True)
class TaskRecord:
    task_id: str
    seq: int
    """Creation order; the stable tie-breaker between tasks created in the same millisecond."""
    spec: TaskSpec
    client_request_id: str
    created_ms: int
    updated_ms: int
    status: TaskStatus = TaskStatus.PENDING
    worker_id: str = ""
    reservation_id: str = ""
    cancel_reason: str = ""
    excluded_worker_ids: frozenset[str] = frozenset()
    """Workers who rejected this task or let its offer expire: never offered it again."""
    ttl_due_ms: int = 0
    wrapup_due_ms: int = 0
    assigned_ms: int = 0
    repeat_contacts: int = 0
    """Earlier contacts of the same customer within `REPEAT_CONTACT_WINDOW_MS`."""
    queue_id: str = ""
    """The queue the task is in now (a policy chooses it; an overflow moves it)."""
    queued_ms: int = 0
    """When the task entered its current queue (exception wait times count from here)."""
    route_index: int = NO_ROUTE
    """Its policy's filter that routed it, DEFAULT_ROUTE, or NO_ROUTE."""
    route_started_ms: int = 0
    step_index: int = 0
    step_due_ms: int = 0
    """When the current step times out (0: never)."""
    priority: int = 0
    """Effective priority: the task's own, plus exception raises and its step's delta (aging
    comes on top, computed from the wait)."""
    priority_raised: int = 0
    """What exception rules have added to the priority."""
    wait_rules_fired: int = 0
    """How many of the queue's wait-time rules (in threshold order) have fired."""
    known_agent_id: str = ""
    offer_ids: tuple[str, ...] = ()
    """The task's pending offers (several when its queue offers to several workers at once)."""

    def snapshot(self) -> TaskRecord:
        """A copy that later changes to this record do not reach (nested values are replaced,
        never mutated, so a shallow copy suffices). Spelled out: several times faster than
        `dataclasses.replace`, and it runs for every event."""
        return TaskRecord(
            self.task_id, self.seq, self.spec, self.client_request_id, self.created_ms,
            self.updated_ms, self.status, self.worker_id, self.reservation_id, self.cancel_reason,
            self.excluded_worker_ids, self.ttl_due_ms, self.wrapup_due_ms, self.assigned_ms,
            self.repeat_contacts, self.queue_id, self.queued_ms, self.route_index,
            self.route_started_ms, self.step_index, self.step_due_ms, self.priority,
            self.priority_raised, self.wait_rules_fired, self.known_agent_id, self.offer_ids,
        )  # fmt: skip


@dataclass(slots=True)
class Reservation:
    reservation_id: str
    task_id: str
    worker_id: str
    created_ms: int
    expires_ms: int
    status: ReservationStatus = ReservationStatus.PENDING

    def snapshot(self) -> Reservation:
        return Reservation(
            self.reservation_id,
            self.task_id,
            self.worker_id,
            self.created_ms,
            self.expires_ms,
            self.status,
        )


@dataclass(slots=True)
class WorkerRecord:
    profile: WorkerProfile
    row: int
    """The worker's row in the numpy columns."""
    activity: str
    idle_since_ms: int
    load_by_channel: dict[str, int] = field(default_factory=dict)
    task_ids: dict[str, None] = field(default_factory=dict)
    """Tasks the worker holds (reserved, assigned or wrapping), in the order it got them."""

    @property
    def worker_id(self) -> str:
        return self.profile.worker_id

    def snapshot(self) -> WorkerRecord:
        """A copy that later changes to this record do not reach."""
        return WorkerRecord(
            self.profile,
            self.row,
            self.activity,
            self.idle_since_ms,
            dict(self.load_by_channel),
            dict(self.task_ids),
        )
