"""The domain model: configuration values (frozen) and the records the engine keeps (mutable,
owned by the engine alone). Times are integer milliseconds of the router's clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from router.core.limits import RESERVATION_TIMEOUT_S_DEFAULT

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


class TaskStatus(Enum):
    PENDING = "pending"
    RESERVED = "reserved"
    ASSIGNED = "assigned"
    WRAPPING = "wrapping"
    COMPLETED = "completed"
    CANCELED = "canceled"

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


class QueueOrder(Enum):
    FIFO = "fifo"
    LIFO = "lifo"


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
    queue_id: str
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

    def snapshot(self) -> TaskRecord:
        """A copy that later changes to this record do not reach (nested values are replaced,
        never mutated, so a shallow copy suffices). Spelled out: several times faster than
        `dataclasses.replace`, and it runs for every event."""
        return TaskRecord(
            self.task_id, self.seq, self.spec, self.client_request_id, self.created_ms,
            self.updated_ms, self.status, self.worker_id, self.reservation_id, self.cancel_reason,
            self.excluded_worker_ids, self.ttl_due_ms, self.wrapup_due_ms, self.assigned_ms,
            self.repeat_contacts,
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
