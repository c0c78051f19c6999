"""The one table of legal moves of tasks and reservations. The lifecycle (`lifecycle.py`,
`offers.py`) consults it before every change of status; a move it does not list is refused with
FAILED_PRECONDITION, and `tests/unit/test_transitions.py` enumerates it.

A task's move is keyed by (from, to) and names the cause that makes it, so that a status reached
two ways (completed straight from assigned, or after wrap-up) still says which command may take
it there: `WrapUpTask` on an assigned task is refused although assigned -> completed exists."""

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
    """`CancelTask`, its time-to-live, or an exception rule."""
    REQUEUE = "requeue"
    """Its worker's stream was lost for the channel's `requeue_after_disconnect_s`: it is
    routed again (`presence.py`)."""


_T = TaskStatus
TASK_TRANSITIONS: Final[Mapping[tuple[TaskStatus, TaskStatus], TaskMove]] = {
    (_T.PENDING, _T.RESERVED): TaskMove.OFFER,
    (_T.RESERVED, _T.PENDING): TaskMove.OFFERS_ENDED,
    (_T.RESERVED, _T.ASSIGNED): TaskMove.ACCEPT,
    (_T.ASSIGNED, _T.WRAPPING): TaskMove.COMPLETE,
    (_T.ASSIGNED, _T.COMPLETED): TaskMove.COMPLETE,
    (_T.WRAPPING, _T.COMPLETED): TaskMove.WRAP_UP,
    (_T.PENDING, _T.CANCELED): TaskMove.CANCEL,
    (_T.RESERVED, _T.CANCELED): TaskMove.CANCEL,
    (_T.ASSIGNED, _T.PENDING): TaskMove.REQUEUE,
}
"""Every legal move of a task: (from, to) -> the cause that makes it."""
_MOVE_BY_VALUES: Final[Mapping[tuple[str, str], TaskMove]] = {
    (from_status.value, to_status.value): move
    for (from_status, to_status), move in TASK_TRANSITIONS.items()
}
"""The same table keyed by the statuses' values: checked on every move of every task, and a
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
    TaskMove.CANCEL: "only pending or reserved tasks can be canceled",
    TaskMove.REQUEUE: "only an assigned task can be re-queued",
}


def task_move_allowed(from_status: TaskStatus, to_status: TaskStatus, move: TaskMove) -> bool:
    return _MOVE_BY_VALUES.get((from_status._value_, to_status._value_)) is move


def check_task_move(
    task_id: str, from_status: TaskStatus, to_status: TaskStatus, move: TaskMove
) -> None:
    """Raises FailedPrecondition unless the table lets `move` take the task from -> to."""
    if _MOVE_BY_VALUES.get((from_status._value_, to_status._value_)) is not move:
        raise FailedPrecondition(f"task {task_id} is {from_status.value}; {_REFUSALS[move]}")


def check_reservation_move(
    reservation_id: str, from_status: ReservationStatus, to_status: ReservationStatus
) -> None:
    """Raises FailedPrecondition unless the table lets the offer go from -> to."""
    if (from_status, to_status) not in RESERVATION_TRANSITIONS:
        raise FailedPrecondition(
            f"offer {reservation_id} is no longer pending: it is {from_status.value}"
        )
