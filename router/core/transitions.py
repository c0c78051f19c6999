"""The one table of legal moves of tasks and reservations. The lifecycle (`lifecycle.py`,
`offers.py`) consults it before every change of status; a move it does not list is refused with
FAILED_PRECONDITION, and `tests/unit/test_transitions.py` enumerates it.

A task's move is a (from, to, cause) row, so that a status reached two ways (completed straight
from assigned, or after wrap-up) still says which command may take it there: `WrapUpTask` on an
assigned task is refused although assigned -> completed exists; and one pair may have several
causes (assigned -> pending: a cold transfer, or a re-queue after a lost stream)."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Final

from router.core.errors import FailedPrecondition
from router.core.model import ReservationStatus, TaskStatus


class TaskMove(Enum):
    """What moves a task from one status to another."""

    OFFER = "offer"
    """The router offers it to a worker."""
    OFFERS_ENDED = "offers_ended"
    """Its last pending offer ended without acceptance: it waits again."""
    ACCEPT = "accept"
    """A worker accepts its offer."""
    COMPLETE = "complete"
    """`CompleteTask`: into wrap-up when its queue has one, else done."""
    WRAP_UP = "wrap_up"
    """`WrapUpTask`, or the queue's wrap-up time running out."""
    CANCEL = "cancel"
    """`CancelTask`, its time-to-live, an exception rule, or a pause that ran out."""
    PAUSE = "pause"
    """`PauseTask`: the agent's capacity is released, the task parked."""
    RESUME = "resume"
    """`ResumeTask`, or a pause that ran out: it is routed again."""
    TRANSFER = "transfer"
    """A cold `TransferTask`: the agent is released and the task routed at the target."""
    REQUEUE = "requeue"
    """Its worker's stream was lost for the channel's `requeue_after_disconnect_s`: it is
    routed again (`presence.py`)."""


_T = TaskStatus
_M = TaskMove
TASK_TRANSITIONS: Final[frozenset[tuple[TaskStatus, TaskStatus, TaskMove]]] = frozenset(
    {
        (_T.PENDING, _T.RESERVED, _M.OFFER),
        (_T.RESERVED, _T.PENDING, _M.OFFERS_ENDED),
        (_T.RESERVED, _T.ASSIGNED, _M.ACCEPT),
        (_T.ASSIGNED, _T.WRAPPING, _M.COMPLETE),
        (_T.ASSIGNED, _T.COMPLETED, _M.COMPLETE),
        (_T.WRAPPING, _T.COMPLETED, _M.WRAP_UP),
        (_T.PENDING, _T.CANCELED, _M.CANCEL),
        (_T.RESERVED, _T.CANCELED, _M.CANCEL),
        (_T.PAUSED, _T.CANCELED, _M.CANCEL),
        (_T.ASSIGNED, _T.PAUSED, _M.PAUSE),
        (_T.PAUSED, _T.PENDING, _M.RESUME),
        (_T.ASSIGNED, _T.PENDING, _M.TRANSFER),
        (_T.ASSIGNED, _T.PENDING, _M.REQUEUE),
    }
)
"""Every legal move of a task: (from, to, the cause that makes it)."""
_MOVES_BY_VALUES: Final[frozenset[tuple[str, str, str]]] = frozenset(
    (from_status.value, to_status.value, move.value)
    for from_status, to_status, move in TASK_TRANSITIONS
)
"""The same rows in the statuses' and causes' values: checked on every move of every task, and a
tuple of str hashes in C, where one of enum members calls Enum.__hash__ (Python) for each."""

_R = ReservationStatus
RESERVATION_TRANSITIONS: Final[frozenset[tuple[ReservationStatus, ReservationStatus]]] = frozenset(
    {
        (_R.PENDING, _R.ACCEPTED),
        (_R.PENDING, _R.REJECTED),
        (_R.PENDING, _R.TIMED_OUT),
        (_R.PENDING, _R.RESCINDED),
        (_R.PENDING, _R.CANCELED),
    }
)
"""Every legal move of a reservation (an offer): once answered or ended, it never moves again."""

_REFUSALS: Final[Mapping[TaskMove, str]] = {
    TaskMove.OFFER: "only a pending task can be offered",
    TaskMove.OFFERS_ENDED: "only a reserved task can wait again",
    TaskMove.ACCEPT: "only a reserved task can be accepted",
    TaskMove.COMPLETE: "only an assigned task can be completed",
    TaskMove.WRAP_UP: "only a wrapping task can be wrapped up",
    TaskMove.CANCEL: "only pending, reserved or paused tasks can be canceled",
    TaskMove.PAUSE: "only an assigned task can be paused",
    TaskMove.RESUME: "only a paused task can be resumed",
    TaskMove.TRANSFER: "only an assigned task can be transferred",
    TaskMove.REQUEUE: "only an assigned task can be re-queued",
}


def task_move_allowed(from_status: TaskStatus, to_status: TaskStatus, move: TaskMove) -> bool:
    return (from_status._value_, to_status._value_, move._value_) in _MOVES_BY_VALUES


def check_task_move(
    task_id: str, from_status: TaskStatus, to_status: TaskStatus, move: TaskMove
) -> None:
    """Raises FailedPrecondition unless the table lets `move` take the task from -> to."""
    if (from_status._value_, to_status._value_, move._value_) not in _MOVES_BY_VALUES:
        raise FailedPrecondition(f"task {task_id} is {from_status.value}; {_REFUSALS[move]}")


def check_reservation_move(
    reservation_id: str, from_status: ReservationStatus, to_status: ReservationStatus
) -> None:
    """Raises FailedPrecondition unless the table lets the offer go from -> to."""
    if (from_status, to_status) not in RESERVATION_TRANSITIONS:
        raise FailedPrecondition(
            f"offer {reservation_id} is no longer pending: it is {from_status.value}"
        )
