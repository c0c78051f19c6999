"""What commands return and what the reads give: frozen values, never the engine's live
records, so that a reply sent after its batch is durable says what the command did, whatever
the later batches changed meanwhile."""

from __future__ import annotations

from dataclasses import dataclass

from router.core.conversation_model import ConversationView
from router.core.model import QueueConfig, RoutingPolicy, TaskRecord, WorkerRecord
from router.core.task_table import TaskCopy


@dataclass(frozen=True, slots=True)
class CreatedTask:
    task: TaskRecord
    """A copy of the task as the command left it."""
    deduplicated: bool
    """An idempotent retry: the task the client request id created before."""
    queue_position: int
    """Tasks ahead of it in its queue when it was created (0 when not waiting)."""
    estimated_wait_ms: int | None
    """The wait estimate made in the same command (see `Statistics.estimated_wait_ms`)."""


@dataclass(frozen=True, slots=True)
class WorkerCopy:
    """A worker as it was when copied (later commands do not change it)."""

    worker: WorkerRecord
    available: bool
    """Whether its activity was an available one."""


@dataclass(frozen=True, slots=True)
class WorkerPage:
    copies: list[WorkerCopy]
    more: bool
    """Whether workers follow the page's last."""


@dataclass(frozen=True, slots=True)
class UpsertedWorker:
    worker: WorkerCopy
    created: bool


@dataclass(frozen=True, slots=True)
class UpsertedQueue:
    queue: QueueConfig
    created: bool


@dataclass(frozen=True, slots=True)
class UpsertedPolicy:
    policy: RoutingPolicy
    created: bool


@dataclass(frozen=True, slots=True)
class QueueStats:
    queue_id: str
    waiting: int
    longest_wait_ms: int
    reserved: int
    assigned: int
    wrapping: int
    created_total: int
    offered_total: int
    assigned_total: int
    completed_total: int
    canceled_total: int
    eligible_workers: int


@dataclass(frozen=True, slots=True)
class ConversationResult:
    """What a conversation command (transfer, pause, participants) left: the task and its
    conversation as copies."""

    task: TaskCopy
    conversation: ConversationView
    transfer_id: str = ""
    """The transfer the command initiated or ended, if any."""


@dataclass(frozen=True, slots=True)
class RecordedEntry:
    """A timeline entry a command recorded: its id, its customer and when it happened."""

    entry_id: str
    customer_key: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class UpsertedProfile:
    customer_key: str
    updated_ms: int


@dataclass(frozen=True, slots=True)
class ErasedCustomer:
    """What `EraseCustomer` forgot of the customer's routing context."""

    customer_key: str
    contacts_forgotten: int
    known: bool
    """The routing context held the customer."""
