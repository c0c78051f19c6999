"""Events the engine emits while applying commands. The service releases them (offers to agent
streams, metrics) only after the batch that produced them is durable. Each carries snapshots, so
later commands in the same batch do not change what an event says."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from router.core.conversation_model import ParticipantRole, Transfer
from router.core.model import Reservation, TaskRecord, TimelineSettings

CANCEL_ORIGINS: Final = ("caller", "ttl", "exception", "after_hours", "pause")
"""Every `TaskCanceled.origin`: the `reason` label of `switchboard_tasks_canceled_total`, as the
README's Metrics table lists them (a test checks both)."""


@dataclass(frozen=True, slots=True)
class TaskCreated:
    task: TaskRecord
    customer_keyed: bool = False
    """Its `spec.customer_id` is a customer key (`CreateTask.customer_keyed`): the feed shows it
    as `customer_key`, with the task's sentiment."""


@dataclass(frozen=True, slots=True)
class OfferCreated:
    reservation: Reservation
    task: TaskRecord


@dataclass(frozen=True, slots=True)
class OfferClosed:
    """An offer ended without acceptance: rejected, timed out, rescinded or canceled."""

    reservation: Reservation
    task: TaskRecord
    reason: str = ""
    """Why the worker rejected it, as it said (`RejectOffer.reason`); empty otherwise."""


@dataclass(frozen=True, slots=True)
class TaskAssigned:
    reservation: Reservation
    task: TaskRecord
    wait_ms: int
    """From creation to assignment."""


@dataclass(frozen=True, slots=True)
class TaskCanceled:
    task: TaskRecord
    origin: str = "caller"
    """Who canceled it: "caller", "ttl" (its time-to-live ran out), "exception" (a queue's
    exception rule), "after_hours" (it arrived while its queue was closed) or "pause" (it
    stayed paused past its queue's `pause_max_s`)."""


@dataclass(frozen=True, slots=True)
class TaskCompleted:
    task: TaskRecord
    """Fully done: wrap-up over, capacity released."""


@dataclass(frozen=True, slots=True)
class WorkerActivityChanged:
    worker_id: str
    activity: str
    previous_activity: str


@dataclass(frozen=True, slots=True)
class TaskQueued:
    """A task waits in a queue for a worker (on arrival, after its offers ended, after a
    move): no eligible worker was free. Scalars, not a record: it is emitted often."""

    task_id: str
    queue_id: str
    channel: str
    priority: int


@dataclass(frozen=True, slots=True)
class TaskUpdated:
    task_id: str
    queue_id: str
    channel: str
    priority: int


@dataclass(frozen=True, slots=True)
class TaskMoved:
    """A routing step timed out, an exception rule acted on a waiting task (moved it to another
    queue or raised its priority), or a policy routed it again to another queue."""

    task_id: str
    queue_id: str
    channel: str
    priority: int
    from_queue_id: str
    reason: str
    """"step", "exception" or "policy"."""
    step_index: int


@dataclass(frozen=True, slots=True)
class TaskWrapping:
    """The conversation ended; the worker wraps up (its capacity held until wrap-up ends)."""

    task_id: str
    queue_id: str
    channel: str
    worker_id: str


@dataclass(frozen=True, slots=True)
class WorkerUpserted:
    worker_id: str
    activity: str
    created: bool


@dataclass(frozen=True, slots=True)
class WorkerRemoved:
    worker_id: str
    activity: str


@dataclass(frozen=True, slots=True)
class QueueChanged:
    queue_id: str
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class PolicyChanged:
    policy_id: str
    deleted: bool = False


@dataclass(frozen=True, slots=True)
class ConsultOffered:
    """A consult offer (a participant invited, or a warm transfer's target): the worker is
    offered a task someone else holds, and answers it like an offer."""

    reservation: Reservation
    task: TaskRecord
    role: ParticipantRole
    transfer_id: str


@dataclass(frozen=True, slots=True)
class ConsultClosed:
    """A consult offer ended without acceptance (status says how)."""

    reservation: Reservation
    task: TaskRecord
    role: ParticipantRole
    transfer_id: str
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TransferChanged:
    """A transfer was initiated or ended (its status says which). `workers` are the agents it
    concerns: the one it is from and the one it went to, if any."""

    transfer: Transfer
    task: TaskRecord
    workers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ParticipantChanged:
    """A participant joined (`added`) or left a task; `workers` are every agent on the task
    then (the primary and the other participants) and the one who left."""

    task_id: str
    queue_id: str
    channel: str
    worker_id: str
    role: ParticipantRole
    added: bool
    workers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TaskPaused:
    task: TaskRecord
    worker_id: str
    """The agent who held it (its known agent on resume)."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TaskResumed:
    task: TaskRecord
    worker_id: str
    """The agent it waits for first (empty: none)."""
    paused_ms: int
    """How long this pause lasted."""
    origin: str = "caller"
    """"caller", or "pause" when its pause ran out."""


@dataclass(frozen=True, slots=True)
class WorkerPresenceChanged:
    """A worker's presence changed (`presence.py`): `change` is a PresenceChange's value."""

    worker_id: str
    change: str
    activity: str
    """The worker's activity after the change."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class TaskRequeued:
    """An assigned task went back to routing: its worker's stream was lost for longer than its
    channel's `requeue_after_disconnect_s`."""

    task_id: str
    queue_id: str
    channel: str
    worker_id: str
    """The worker who held it (now its known agent)."""


@dataclass(frozen=True, slots=True)
class PresenceSettingsChanged:
    """The workspace's presence settings, or a channel's re-queue delay, changed."""

    channel: str = ""
    """The channel whose `requeue_after_disconnect_s` changed; empty for the settings."""


@dataclass(frozen=True, slots=True)
class OutcomeRecorded:
    """A wrap-up outcome was recorded for a task (`RecordOutcome`)."""

    entry_id: str
    customer_key: str
    task_id: str
    queue_id: str
    channel: str
    worker_id: str
    disposition: str
    resolution: int
    tags: tuple[str, ...]
    sealed_note: bytes
    note_private: bool


@dataclass(frozen=True, slots=True)
class AgentActionRecorded:
    """An agent's action on a task was recorded (`RecordAgentAction`)."""

    entry_id: str
    customer_key: str
    task_id: str
    queue_id: str
    channel: str
    worker_id: str
    action: str
    sealed_reason: bytes


@dataclass(frozen=True, slots=True)
class TimelineEntryAppended:
    """Another system appended an entry to a customer's timeline (`AppendTimelineEntry`)."""

    entry_id: str
    customer_key: str
    occurred_ms: int
    """When it happened (at or before the time it was appended)."""
    kind: str
    source: str
    tags: tuple[str, ...]
    sealed_body: bytes
    identity_verified: bool


@dataclass(frozen=True, slots=True)
class CustomerProfileChanged:
    customer_key: str
    tier: str
    language: str
    verified: bool
    sealed_profile: bytes


@dataclass(frozen=True, slots=True)
class CustomerErased:
    """A customer's routing context was forgotten (`EraseCustomer`)."""

    customer_key: str
    contacts_forgotten: int


@dataclass(frozen=True, slots=True)
class TimelineSettingsChanged:
    settings: TimelineSettings


Event = (
    TaskCreated
    | OfferCreated
    | OfferClosed
    | TaskAssigned
    | TaskCanceled
    | TaskCompleted
    | WorkerActivityChanged
    | TaskQueued
    | TaskUpdated
    | TaskMoved
    | TaskWrapping
    | WorkerUpserted
    | WorkerRemoved
    | QueueChanged
    | PolicyChanged
    | ConsultOffered
    | ConsultClosed
    | TransferChanged
    | ParticipantChanged
    | TaskPaused
    | TaskResumed
    | WorkerPresenceChanged
    | TaskRequeued
    | PresenceSettingsChanged
    | OutcomeRecorded
    | AgentActionRecorded
    | TimelineEntryAppended
    | CustomerProfileChanged
    | CustomerErased
    | TimelineSettingsChanged
)
