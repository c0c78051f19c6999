"""The records of a task's conversation (`conversations.py`): who takes part in it and in what
role, the transfers it has been through, and its paused time. Mutable records owned by the
engine alone, like `model.py`'s; the enum values are the snapshot's and the journal's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum


class ParticipantRole(Enum):
    PRIMARY = "primary"
    """The agent who holds the task (`TaskRecord.worker_id`)."""
    CONSULT = "consult"
    """An agent consulted on the task (or the target of a warm transfer): holds capacity."""
    MONITOR = "monitor"
    """A supervisor listening in: holds no capacity."""


class TransferMode(Enum):
    COLD = "cold"
    """The agent is released at once and the task routed at the target."""
    WARM = "warm"
    """The target is offered the task as a consult while the agent keeps it; on accept the
    task moves to the target."""


class TransferStatus(Enum):
    INITIATED = "initiated"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"


@dataclass(frozen=True, slots=True)
class TransferTarget:
    """Where a transfer (or a new participant) goes: a queue, a named worker, or a
    requirement (skills with minimum levels and/or a worker expression) within a queue."""

    queue_id: str = ""
    """The queue whose members may be chosen (empty: the task's queue). A cold transfer moves
    the task into it."""
    worker_id: str = ""
    """A named worker (who must be eligible now); not with a requirement."""
    required_skills: Mapping[str, float] = field(default_factory=dict)
    """Minimum levels the chosen worker must have, on top of the task's own."""
    worker_expression: str = ""
    """Which workers may be chosen, over worker attributes (warm transfers and consults)."""


@dataclass(slots=True)
class Participant:
    """A participant other than the primary, invited (its consult offer pending) or joined."""

    worker_id: str
    role: ParticipantRole
    invited_ms: int
    joined_ms: int = 0
    """0 while invited."""
    reservation_id: str = ""
    """The pending consult offer's id while invited; empty once joined."""
    expires_ms: int = 0
    """When the consult offer times out (while invited)."""
    transfer_id: str = ""
    """The warm transfer this participant's acceptance completes, if any."""

    @property
    def holds_capacity(self) -> bool:
        return self.role is not ParticipantRole.MONITOR


@dataclass(slots=True)
class Transfer:
    transfer_id: str
    mode: TransferMode
    target: TransferTarget
    from_worker_id: str
    from_queue_id: str
    created_ms: int
    status: TransferStatus = TransferStatus.INITIATED
    to_worker_id: str = ""
    """The worker offered (warm, or cold to a named worker) or who took the task (cold to a
    worker expression: set when a worker accepts it, which ends the task's hold to it)."""
    reason: str = ""
    """Why the caller transferred it, as given."""
    outcome: str = ""
    """Why it ended: "routed", "accepted", "rejected", "timed_out", "canceled", "paused",
    "completed", "task_closed", "participant_removed", "worker_unavailable" (its consult offer
    was withdrawn: the worker went unavailable, drained or lost its stream), "worker_lost" (the
    agent it was from lost its stream and the task went back to routing)."""
    ended_ms: int = 0
    wrap_up: bool = False
    """Whether the agent it is from wraps up once it hands the task on."""

    def snapshot(self) -> Transfer:
        return Transfer(
            self.transfer_id, self.mode, self.target, self.from_worker_id, self.from_queue_id,
            self.created_ms, self.status, self.to_worker_id, self.reason, self.outcome,
            self.ended_ms, self.wrap_up,
        )  # fmt: skip


@dataclass(slots=True)
class Conversation:
    """A task's conversation state, kept once the task is first paused, transferred or joined."""

    task_id: str
    participants: list[Participant] = field(default_factory=list)
    """Consults and monitors, invited or joined, in the order they were invited."""
    transfers: list[Transfer] = field(default_factory=list)
    paused_ms: int = 0
    """When the task was paused (0: not paused)."""
    pause_due_ms: int = 0
    """When the current pause runs out (0: not paused)."""
    paused_total_ms: int = 0
    """Time spent paused, over every pause that ended."""
    handled_ms: int = 0
    """Handle time before the task's latest assignment (assignments ended by a pause or a cold
    transfer), which the final handle time adds to its last stretch."""
    wrapups: list[tuple[str, int]] = field(default_factory=list)
    """(worker id, due ms): agents who transferred the task away into wrap-up, still holding
    capacity for it until then."""


@dataclass(frozen=True, slots=True)
class ConversationView:
    """A conversation as it was when copied, which later commands do not change."""

    primary_worker_id: str
    participants: tuple[Participant, ...]
    transfers: tuple[Transfer, ...]
    paused_ms: int
    paused_total_ms: int


NO_CONVERSATION = ConversationView("", (), (), 0, 0)
