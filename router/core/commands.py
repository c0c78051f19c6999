"""Commands: every change of state is one of these, applied in order by the single writer.

Commands are plain frozen dataclasses so that they can be journaled and replayed; they carry no
time: the batch they are applied in does. Each is a `Command[R]`, R being what applying it
returns (`Engine.apply(command: Command[R], now_ms) -> R`); the base has no fields, so the
journal's encoding of a command is its own fields alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from router.core.conversation_model import ParticipantRole, TransferMode, TransferTarget
from router.core.model import (
    PresenceSettings,
    QueueConfig,
    RoutingPolicy,
    TaskSpec,
    TimelineSettings,
    WorkerProfile,
)
from router.core.results import (
    ConversationResult,
    CreatedTask,
    ErasedCustomer,
    RecordedEntry,
    UpsertedPolicy,
    UpsertedProfile,
    UpsertedQueue,
    UpsertedWorker,
    WorkerCopy,
)
from router.core.task_table import TaskCopy

R = TypeVar("R", covariant=True)


class Command(Generic[R]):
    """A change of state whose application returns an R."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class UpsertChannel(Command[str]):
    channel_id: str
    display_name: str = ""
    requeue_after_disconnect_s: float | None = None
    """Re-queue a lost worker's assigned tasks of this channel after this long (0: never);
    None keeps the channel's setting (`presence.py`)."""


@dataclass(frozen=True, slots=True)
class UpsertActivity(Command[str]):
    activity_id: str
    available: bool


@dataclass(frozen=True, slots=True)
class UpsertQueue(Command[UpsertedQueue]):
    queue: QueueConfig


@dataclass(frozen=True, slots=True)
class DeleteQueue(Command[None]):
    queue_id: str


@dataclass(frozen=True, slots=True)
class UpsertRoutingPolicy(Command[UpsertedPolicy]):
    """Creates or replaces a policy; the waiting tasks it routed are routed again by it."""

    policy: RoutingPolicy


@dataclass(frozen=True, slots=True)
class DeleteRoutingPolicy(Command[None]):
    policy_id: str


@dataclass(frozen=True, slots=True)
class UpsertWorker(Command[UpsertedWorker]):
    profile: WorkerProfile


@dataclass(frozen=True, slots=True)
class RemoveWorker(Command[None]):
    worker_id: str


@dataclass(frozen=True, slots=True)
class SetActivity(Command[WorkerCopy]):
    worker_id: str
    activity: str


@dataclass(frozen=True, slots=True)
class CreateTask(Command[CreatedTask]):
    spec: TaskSpec
    client_request_id: str = ""
    customer_keyed: bool = False
    """`spec.customer_id` is a customer key (the keyed hash the API made of the id): the
    customer's routing context records the contact and routing sees `customer.*`
    (`customers.py`). False in journals written before customer keys."""


@dataclass(frozen=True, slots=True)
class UpdateTask(Command[TaskCopy]):
    task_id: str
    priority: int | None = None
    attributes: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class CancelTask(Command[TaskCopy]):
    task_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class AcceptOffer(Command[TaskCopy]):
    worker_id: str
    reservation_id: str


@dataclass(frozen=True, slots=True)
class RejectOffer(Command[None]):
    """The worker declines the offer; `reason` is carried into the `OfferClosed` event."""

    worker_id: str
    reservation_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CompleteTask(Command[TaskCopy]):
    task_id: str


@dataclass(frozen=True, slots=True)
class WrapUpTask(Command[TaskCopy]):
    task_id: str


@dataclass(frozen=True, slots=True)
class TransferTask(Command[ConversationResult]):
    """Transfers an assigned task to `target`. COLD: its agent is released (into wrap-up when
    `wrap_up` and its queue has one) and the task routed at the target, keeping its age and
    (unless `priority` is given) its priority, never offered back to that agent unless
    `allow_back`; a target's worker expression holds it until a worker accepts it (only
    workers matching it are offered it). WARM: the target is offered the task as a consult
    while the agent keeps it; on accept the task moves to the target, on reject, expiry or
    `CancelTransfer` the transfer fails and the task stays."""

    task_id: str
    mode: TransferMode
    target: TransferTarget
    priority: int | None = None
    wrap_up: bool = False
    allow_back: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class CancelTransfer(Command[ConversationResult]):
    """Cancels an initiated warm transfer: its consult offer is withdrawn."""

    task_id: str
    transfer_id: str


@dataclass(frozen=True, slots=True)
class PauseTask(Command[ConversationResult]):
    """Parks an assigned task: every participant's capacity is released."""

    task_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ResumeTask(Command[ConversationResult]):
    """Routes a paused task again, waiting up to `known_agent_wait_s` (None: the task's own)
    for the agent who paused it."""

    task_id: str
    known_agent_wait_s: float | None = None


@dataclass(frozen=True, slots=True)
class AddParticipant(Command[ConversationResult]):
    """Adds a consult (offered the task like an offer, holding capacity) or a monitor (joins
    at once, holding none) to an assigned task."""

    task_id: str
    role: ParticipantRole
    target: TransferTarget


@dataclass(frozen=True, slots=True)
class RemoveParticipant(Command[ConversationResult]):
    """Removes a consult or monitor (or withdraws its pending consult offer)."""

    task_id: str
    worker_id: str


@dataclass(frozen=True, slots=True)
class HandOverTask(Command[ConversationResult]):
    """The primary hands the task to a joined consult, who becomes the primary; the former
    primary leaves (into wrap-up when `wrap_up` and the queue has one)."""

    task_id: str
    worker_id: str
    wrap_up: bool = False


@dataclass(frozen=True, slots=True)
class WorkerAttached(Command[WorkerCopy]):
    """A hello arrived on a Connect stream: the worker is connected (a reconnect within its
    grace keeps everything); `activity`, when given, is set too."""

    worker_id: str
    activity: str = ""


@dataclass(frozen=True, slots=True)
class PresenceLost(Command[None]):
    """The worker's stream ended without a goodbye, or fell silent: its grace starts."""

    worker_id: str


@dataclass(frozen=True, slots=True)
class AllPresenceLost(Command[int]):
    """A new leader holds no streams: every worker the state says is connected loses its
    presence (a reconnect within grace keeps everything). Returns how many did."""


@dataclass(frozen=True, slots=True)
class WorkerDetached(Command[WorkerCopy]):
    """The agent said goodbye: the worker is disconnected at once (no grace) and moves to
    `activity`, or to the workspace's lost activity when empty (an unavailable one)."""

    worker_id: str
    activity: str = ""


@dataclass(frozen=True, slots=True)
class SetDraining(Command[WorkerCopy]):
    """A draining worker finishes what it holds and is offered nothing new."""

    worker_id: str
    draining: bool


@dataclass(frozen=True, slots=True)
class UpsertPresenceSettings(Command[PresenceSettings]):
    settings: PresenceSettings


@dataclass(frozen=True, slots=True)
class RecordOutcome(Command[RecordedEntry]):
    """What a task came to: a disposition, resolved or not (`resolution`: the API's
    `Resolution` value), a note sealed by the API, and tags. The task's customer's routing
    context takes its resolution and tags."""

    task_id: str
    worker_id: str = ""
    """Who recorded it (empty: a supervisor or system)."""
    disposition: str = ""
    resolution: int = 0
    sealed_note: bytes = b""
    note_private: bool = False
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RecordAgentAction(Command[RecordedEntry]):
    """Something an agent did on a task, and why (sealed by the API)."""

    task_id: str
    worker_id: str
    action: str
    sealed_reason: bytes = b""


@dataclass(frozen=True, slots=True)
class AppendTimelineEntry(Command[RecordedEntry]):
    """An entry another system appends to a customer's timeline; `identity_verified` makes
    `customer.verified` true for the settings' identity verification window."""

    customer_key: str
    kind: str
    at_ms: int = 0
    """When it happened (0: now); not after now, not before the retention."""
    source: str = ""
    sealed_body: bytes = b""
    """The entry's summary and data, sealed by the API."""
    tags: tuple[str, ...] = ()
    identity_verified: bool = False


@dataclass(frozen=True, slots=True)
class UpsertCustomerProfile(Command[UpsertedProfile]):
    """The profile a CRM keeps: the routing fields in the clear, the whole profile (with its
    personal fields and the customer id) sealed by the API."""

    customer_key: str
    tier: str = ""
    language: str = ""
    verified: bool = False
    sealed_profile: bytes = b""


@dataclass(frozen=True, slots=True)
class EraseCustomer(Command[ErasedCustomer]):
    """Forgets a customer's routing context (refused while one of its tasks is open)."""

    customer_key: str


@dataclass(frozen=True, slots=True)
class UpsertTimelineSettings(Command[TimelineSettings]):
    settings: TimelineSettings


@dataclass(frozen=True, slots=True)
class SeedIds(Command[None]):
    """Sets the key that task and reservation ids are derived with (`identifiers.py`): drawn at
    random by the writer, once per workspace, before any other command it journals."""

    key: bytes


@dataclass(frozen=True, slots=True)
class Tick(Command[None]):
    """Fires the timers that fell due (offer expiry, wrap-up end, time-to-live, step timeouts,
    exception wait times, assignment rounds)."""


AnyCommand = (
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
    | SeedIds
    | Tick
    | TransferTask
    | CancelTransfer
    | PauseTask
    | ResumeTask
    | AddParticipant
    | RemoveParticipant
    | HandOverTask
    | WorkerAttached
    | PresenceLost
    | AllPresenceLost
    | WorkerDetached
    | SetDraining
    | UpsertPresenceSettings
    | RecordOutcome
    | RecordAgentAction
    | AppendTimelineEntry
    | UpsertCustomerProfile
    | EraseCustomer
    | UpsertTimelineSettings
)
"""Every command type: what a journal holds (`codec.COMMAND_TYPES` names each)."""
