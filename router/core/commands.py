"""Commands: every change of state is one of these, applied in order by the single writer.

Commands are plain frozen dataclasses so that they can be journaled and replayed; they carry no
time: the batch they are applied in does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from router.core.model import QueueConfig, RoutingPolicy, TaskSpec, WorkerProfile


@dataclass(frozen=True, slots=True)
class UpsertChannel:
    channel_id: str
    display_name: str = ""


@dataclass(frozen=True, slots=True)
class UpsertActivity:
    activity_id: str
    available: bool


@dataclass(frozen=True, slots=True)
class UpsertQueue:
    queue: QueueConfig


@dataclass(frozen=True, slots=True)
class DeleteQueue:
    queue_id: str


@dataclass(frozen=True, slots=True)
class UpsertRoutingPolicy:
    """Creates or replaces a policy; the waiting tasks it routed are routed again by it."""

    policy: RoutingPolicy


@dataclass(frozen=True, slots=True)
class DeleteRoutingPolicy:
    policy_id: str


@dataclass(frozen=True, slots=True)
class UpsertWorker:
    profile: WorkerProfile


@dataclass(frozen=True, slots=True)
class RemoveWorker:
    worker_id: str


@dataclass(frozen=True, slots=True)
class SetActivity:
    worker_id: str
    activity: str


@dataclass(frozen=True, slots=True)
class CreateTask:
    spec: TaskSpec
    client_request_id: str = ""


@dataclass(frozen=True, slots=True)
class UpdateTask:
    task_id: str
    priority: int | None = None
    attributes: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CancelTask:
    task_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AcceptOffer:
    worker_id: str
    reservation_id: str


@dataclass(frozen=True, slots=True)
class RejectOffer:
    worker_id: str
    reservation_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CompleteTask:
    task_id: str


@dataclass(frozen=True, slots=True)
class WrapUpTask:
    task_id: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Fires the timers that fell due (offer expiry, wrap-up end, time-to-live, step timeouts,
    exception wait times, assignment rounds)."""


Command = (
    UpsertChannel
    | UpsertActivity
    | UpsertQueue
    | DeleteQueue
    | UpsertRoutingPolicy
    | DeleteRoutingPolicy
    | UpsertWorker
    | RemoveWorker
    | SetActivity
    | CreateTask
    | UpdateTask
    | CancelTask
    | AcceptOffer
    | RejectOffer
    | CompleteTask
    | WrapUpTask
    | Tick
)
