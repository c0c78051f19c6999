"""Offers (reservations): a task offered to a worker holds a share of the worker's capacity
until the worker accepts, rejects or lets it time out, or the offer is rescinded or canceled.
Every change of an offer's status, and of its task's, is checked against the transition table
(`transitions.py`)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from router.core import commands as cmd
from router.core.errors import NotFound, PermissionDenied
from router.core.events import Event, OfferClosed, OfferCreated, TaskAssigned
from router.core.model import Reservation, ReservationStatus, TaskRecord, TaskStatus, WorkerRecord
from router.core.task_table import TaskCopy
from router.core.timers import TimerKind
from router.core.transitions import TaskMove, check_reservation_move
from router.core.validation import check_id

if TYPE_CHECKING:
    from router.core.catalog import Catalog
    from router.core.conversations import Conversations
    from router.core.histories import Histories
    from router.core.identifiers import Identifiers
    from router.core.lifecycle import TaskLifecycle
    from router.core.matching import Matching
    from router.core.presence import Presence
    from router.core.roster import Roster
    from router.core.routing import Routing
    from router.core.statistics import Statistics
    from router.core.timers import Clock, TimerQueue

CLOSED_RESERVATIONS_KEPT_MAX = 100_000
"""Closed offers remembered, so that a late answer to one gets a clear error."""


@dataclass(frozen=True, slots=True)
class OffersShare:
    """The offers' share of a snapshot."""

    reservation_seq: int
    reservations: list[Reservation]
    closed_reservation_ids: list[str]
    """In the order they closed."""


class Offers:
    """The reservations, and the moves they make of their tasks."""

    def __init__(self) -> None:
        self.reservations: dict[str, Reservation] = {}
        self._closed: OrderedDict[str, None] = OrderedDict()
        self.reservation_seq = 0

    def connect(
        self,
        *,
        clock: Clock,
        events: list[Event],
        timers: TimerQueue,
        catalog: Catalog,
        roster: Roster,
        lifecycle: TaskLifecycle,
        routing: Routing,
        matching: Matching,
        statistics: Statistics,
        histories: Histories,
        identifiers: Identifiers,
    ) -> None:
        self._clock = clock
        self._events = events
        self._timers = timers
        self._catalog = catalog
        self._roster = roster
        self._lifecycle = lifecycle
        self._open = lifecycle.tasks.open
        self._routing = routing
        self._matching = matching
        self._stats = statistics
        self._histories = histories
        self._ids = identifiers

    def connect_presence(self, presence: Presence) -> None:
        self._presence = presence

    def connect_conversations(self, conversations: Conversations) -> None:
        self._conversations = conversations

    # -- making and ending offers -----------------------------------------------------------

    def offer(self, task: TaskRecord, worker: WorkerRecord) -> None:
        """Offers a task (pending, or reserved by other offers) to a worker."""
        now_ms = self._clock.now_ms
        queue = self._catalog.queues[task.queue_id]
        self.reservation_seq += 1
        reservation = Reservation(
            reservation_id=self._ids.reservation_id(self.reservation_seq),
            task_id=task.task_id,
            worker_id=worker.worker_id,
            created_ms=now_ms,
            expires_ms=now_ms + round(queue.reservation_timeout_s * 1000),
        )
        self.reservations[reservation.reservation_id] = reservation
        task.offer_ids = (*task.offer_ids, reservation.reservation_id)
        if len(task.offer_ids) == 1:
            task.worker_id = worker.worker_id
            task.reservation_id = reservation.reservation_id
        else:  # offered to several: nobody holds it until one accepts
            task.worker_id = ""
            task.reservation_id = ""
        if task.status is not TaskStatus.RESERVED:
            self._lifecycle.transition(task, TaskStatus.RESERVED, TaskMove.OFFER)
        else:
            self._lifecycle.tasks.changed(task)  # its worker
        self._roster.hold(worker, task)
        self._timers.add(reservation.expires_ms, TimerKind.OFFER, reservation.reservation_id)
        self._stats.counters[queue.queue_id].offered_total += 1
        self._events.append(OfferCreated(reservation.snapshot(), task.snapshot()))

    def accept_offer(self, command: cmd.AcceptOffer) -> TaskCopy:
        """The worker takes the task; its other offers (a multi-offer) are rescinded at once."""
        reservation = self._reservation_of(
            command.worker_id, command.reservation_id, ReservationStatus.ACCEPTED
        )
        now_ms = self._clock.now_ms
        task = self._open[reservation.task_id]
        reservation.status = ReservationStatus.ACCEPTED
        self._retire(reservation)
        others = [self.reservations[r] for r in task.offer_ids if r != reservation.reservation_id]
        task.offer_ids = ()
        for other in others:
            self._close(other, ReservationStatus.RESCINDED, exclude=False)
        task.worker_id = reservation.worker_id
        task.reservation_id = reservation.reservation_id
        task.assigned_ms = now_ms
        self._lifecycle.transition(task, TaskStatus.ASSIGNED, TaskMove.ACCEPT)
        self._conversations.task_assigned(task)
        counters = self._stats.counters[task.queue_id]
        counters.assigned_total += 1
        counters.assigned_ms.append(now_ms)
        if task.spec.customer_id:
            self._histories.customer(task.spec.customer_id).last_worker_id = reservation.worker_id
        self._events.append(
            TaskAssigned(reservation.snapshot(), task.snapshot(), now_ms - task.created_ms)
        )
        workers = self._roster.workers
        for other in others:
            worker = workers.get(other.worker_id)
            if worker is not None:
                self._matching.serve_worker(worker)
        self._presence.offer_answered(reservation.worker_id)
        return self._stats.copy(task)

    def reject_offer(self, command: cmd.RejectOffer) -> None:
        reservation = self._reservation_of(
            command.worker_id, command.reservation_id, ReservationStatus.REJECTED
        )
        self.end_offer(reservation, ReservationStatus.REJECTED, exclude=True, reason=command.reason)
        self._presence.offer_answered(reservation.worker_id)

    def _reservation_of(
        self, worker_id: str, reservation_id: str, status: ReservationStatus
    ) -> Reservation:
        """The worker's offer, which the table lets move to `status`."""
        check_id("reservation_id", reservation_id)
        reservation = self.reservations.get(reservation_id)
        if reservation is None:
            raise NotFound(f"no offer {reservation_id!r}")
        if reservation.worker_id != worker_id:  # (naming nobody: the caller may be probing)
            raise PermissionDenied(f"offer {reservation_id} was not made to {worker_id!r}")
        check_reservation_move(reservation_id, reservation.status, status)
        return reservation

    def offer_to(self, task: TaskRecord, worker_id: str) -> Reservation | None:
        """The task's pending offer to this worker, if any."""
        for reservation_id in task.offer_ids:
            reservation = self.reservations[reservation_id]
            if reservation.worker_id == worker_id:
                return reservation
        return None

    def expire(self, reservation_id: str) -> None:
        """The offer timed out."""
        reservation = self.reservations[reservation_id]
        self.end_offer(reservation, ReservationStatus.TIMED_OUT, exclude=True)
        self._presence.offer_timed_out(reservation.worker_id)

    def end_offer(
        self,
        reservation: Reservation,
        status: ReservationStatus,
        *,
        exclude: bool,
        reason: str = "",
    ) -> None:
        """Ends a pending offer without acceptance. When it was the task's last, the task is
        routed again; the worker, if still available, takes other work."""
        task = self._open[reservation.task_id]
        self._close(reservation, status, exclude=exclude, reason=reason)
        if not task.offer_ids:
            self._lifecycle.transition(task, TaskStatus.PENDING, TaskMove.OFFERS_ENDED)
            # Its queue may have changed while it was offered (a reconfiguration re-derives
            # only the waiting tasks): route it as the queue is now, as a restored engine would.
            self._routing.derive(task)
            self._routing.fire_wait_rules(task)  # those that fell due during the offer
            if task.status is TaskStatus.PENDING and task.task_id not in self._matching.waiting:
                self._matching.route_task(task)
        worker = self._roster.workers.get(reservation.worker_id)
        if worker is not None:
            self._matching.serve_worker(worker)

    def cancel_offers(self, task: TaskRecord) -> list[WorkerRecord]:
        """Cancels every offer of a task being canceled; returns the workers they freed."""
        freed = []
        workers = self._roster.workers
        for reservation_id in task.offer_ids:
            reservation = self.reservations[reservation_id]
            self._close(reservation, ReservationStatus.CANCELED, exclude=False)
            worker = workers.get(reservation.worker_id)
            if worker is not None:
                freed.append(worker)
        return freed

    def _close(
        self,
        reservation: Reservation,
        status: ReservationStatus,
        *,
        exclude: bool,
        reason: str = "",
    ) -> None:
        check_reservation_move(reservation.reservation_id, reservation.status, status)
        task = self._open[reservation.task_id]
        reservation.status = status
        self._retire(reservation)
        worker = self._roster.workers.get(reservation.worker_id)
        if worker is not None:
            self._roster.release(worker, task)
        task.offer_ids = tuple(r for r in task.offer_ids if r != reservation.reservation_id)
        if len(task.offer_ids) == 1:
            task.reservation_id = task.offer_ids[0]
            task.worker_id = self.reservations[task.reservation_id].worker_id
        else:
            task.worker_id = ""
            task.reservation_id = ""
        if exclude:
            task.excluded_worker_ids = task.excluded_worker_ids | {reservation.worker_id}
        task.updated_ms = self._clock.now_ms
        self._lifecycle.tasks.changed(task)  # its worker
        self._events.append(OfferClosed(reservation.snapshot(), task.snapshot(), reason))

    def _retire(self, reservation: Reservation) -> None:
        """Keeps a closed reservation for a while, so a late answer gets a clear error."""
        self._timers.ended()  # its expiry
        closed = self._closed
        closed[reservation.reservation_id] = None
        while len(closed) > CLOSED_RESERVATIONS_KEPT_MAX:
            old_id, _ = closed.popitem(last=False)
            del self.reservations[old_id]

    def offer_live(self, due_ms: int, reservation_id: str) -> bool:
        """Whether an expiry timer still has an offer to time out."""
        reservation = self.reservations.get(reservation_id)
        return reservation is not None and reservation.status is ReservationStatus.PENDING

    # -- snapshot and digest ----------------------------------------------------------------

    def save(self) -> OffersShare:
        return OffersShare(
            self.reservation_seq, list(self.reservations.values()), list(self._closed)
        )

    def restore(self, share: OffersShare) -> None:
        self.reservation_seq = share.reservation_seq
        self.reservations.update((r.reservation_id, r) for r in share.reservations)
        self._closed = OrderedDict.fromkeys(share.closed_reservation_ids)

    def digest_state(self) -> list[Any]:
        return list(self.reservations.values())
