"""Conversations: what happens to a task while an agent holds it. Transfers (cold and warm, to a
queue, a named worker or a requirement), pause and resume, and participants (consults and
monitors besides the primary), each change of task status checked against the transition table
(`transitions.py`).

A task's conversation state is kept here, keyed by task id, from the first command that needs it
(the task records themselves are unchanged, so that older states keep their digest). A consult
offer (a participant invited, or a warm transfer's target) is routed like a task: the worker is
chosen by the usual eligibility and score, offered the task on its stream, holds capacity while
the offer is pending, and answers it with `AcceptOffer` or `RejectOffer` (the engine sends the
answers to a consult offer here), or lets it time out.

Capacity: the primary holds the task's channel capacity (as before), every consult holds its
own, invited or joined, a monitor holds none, and an agent who handed the task on into wrap-up
holds it until the wrap-up ends. `Audit.check_invariants` checks the holders against this."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from router.core import commands as cmd
from router.core.catalog import found
from router.core.conversation_model import (
    NO_CONVERSATION,
    Conversation,
    ConversationView,
    Participant,
    ParticipantRole,
    Transfer,
    TransferMode,
    TransferStatus,
    TransferTarget,
)
from router.core.errors import (
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from router.core.events import (
    ConsultClosed,
    ConsultOffered,
    Event,
    ParticipantChanged,
    TaskPaused,
    TaskResumed,
    TransferChanged,
)
from router.core.expressions.parser import parse
from router.core.expressions.values import ExpressionError
from router.core.limits import (
    CLOSED_TASKS_KEPT_MAX,
    KNOWN_AGENT_WAIT_S_MAX,
    PARTICIPANTS_PER_TASK_MAX,
    SKILL_LEVEL_MAX,
    SKILLS_PER_TASK_MAX,
    TRANSFER_REASON_CHARS_MAX,
    TRANSFERS_PER_TASK_MAX,
)
from router.core.model import (
    NO_ROUTE,
    PauseExpiryAction,
    QueueConfig,
    Reservation,
    ReservationStatus,
    TaskRecord,
    TaskStatus,
    WorkerRecord,
)
from router.core.results import ConversationResult
from router.core.scoring import best_rows, eligible_rows, empathy_need
from router.core.timers import TimerKind
from router.core.transitions import TaskMove, check_task_move
from router.core.validation import check_finite, check_id, check_priority, check_text

if TYPE_CHECKING:
    from router.core.catalog import Catalog
    from router.core.histories import Histories
    from router.core.identifiers import Identifiers
    from router.core.lifecycle import TaskLifecycle
    from router.core.matching import Matching
    from router.core.offers import Offers
    from router.core.roster import Roster
    from router.core.routing import Routing
    from router.core.statistics import Statistics
    from router.core.timers import Clock, TimerQueue


@dataclass(frozen=True, slots=True)
class ConversationsShare:
    """The conversations' share of a snapshot."""

    transfer_seq: int = 0
    consult_seq: int = 0
    active: list[Conversation] | None = None
    """The open tasks' conversations, in the order they began."""
    closed: list[Conversation] | None = None
    """The closed tasks' conversations kept, in the order their tasks closed."""


class Conversations:
    """The conversation state of tasks, and the commands that change it."""

    def __init__(self) -> None:
        self.active: dict[str, Conversation] = {}
        """Per open task that has one, its conversation."""
        self.closed: OrderedDict[str, Conversation] = OrderedDict()
        """Closed tasks' conversations (GetTask still shows them), oldest forgotten first."""
        self.invites: dict[str, str] = {}
        """Pending consult offer id -> task id (derived from the participants)."""
        self.transfer_seq = 0
        self.consult_seq = 0

    def connect(
        self,
        *,
        clock: Clock,
        events: list[Event],
        timers: TimerQueue,
        catalog: Catalog,
        roster: Roster,
        lifecycle: TaskLifecycle,
        offers: Offers,
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
        self._offers = offers
        self._routing = routing
        self._matching = matching
        self._stats = statistics
        self._histories = histories
        self._ids = identifiers

    # -- reads ------------------------------------------------------------------------------

    def view(self, task_id: str) -> ConversationView:
        """A copy of the task's conversation (empty when it has none)."""
        conversation = self.active.get(task_id) or self.closed.get(task_id)
        task = self._open.get(task_id)
        primary = ""
        if task is not None and task.status in (TaskStatus.ASSIGNED, TaskStatus.WRAPPING):
            primary = task.worker_id
        if conversation is None:
            return replace(NO_CONVERSATION, primary_worker_id=primary)
        return ConversationView(
            primary,
            tuple(replace(p) for p in conversation.participants),
            tuple(t.snapshot() for t in conversation.transfers),
            conversation.paused_ms,
            conversation.paused_total_ms,
        )

    def holders(self, task_id: str) -> list[str]:
        """The workers holding capacity for the task besides its primary and its offers:
        consults (invited or joined) and agents in wrap-up after handing it on."""
        conversation = self.active.get(task_id)
        if conversation is None:
            return []
        held = [p.worker_id for p in conversation.participants if p.holds_capacity]
        return held + [worker_id for worker_id, _ in conversation.wrapups]

    def earlier_handle_ms(self, task_id: str) -> int:
        """Handle time of the task's assignments before its latest (paused time excluded)."""
        conversation = self.active.get(task_id)
        return conversation.handled_ms if conversation is not None else 0

    def invites_of(self, worker_id: str) -> list[tuple[Reservation, TaskRecord, Participant]]:
        """The worker's pending consult offers (re-sent when its stream reconnects)."""
        found_invites = []
        worker = self._roster.workers.get(worker_id)
        for task_id in worker.task_ids if worker is not None else ():
            conversation = self.active.get(task_id)
            for participant in conversation.participants if conversation is not None else ():
                if participant.worker_id == worker_id and participant.reservation_id:
                    task = self._open[task_id]
                    reservation = _reservation(participant, task, ReservationStatus.PENDING)
                    found_invites.append((reservation, task, participant))
        return found_invites

    # -- transfers --------------------------------------------------------------------------

    def transfer_task(self, command: cmd.TransferTask) -> ConversationResult:
        task = self._lifecycle.task(command.task_id)
        target = command.target
        check_text("reason", command.reason, TRANSFER_REASON_CHARS_MAX)
        if command.priority is not None:
            check_priority("priority", command.priority)
        _check_target(target)
        if command.wrap_up and command.allow_back:
            raise InvalidArgument(
                "allow_back", "an agent released into wrap-up cannot be offered the task back"
            )
        held_to = None
        if command.mode is TransferMode.COLD and target.worker_expression:
            held_to = self._catalog.check_transfer_expression(target.worker_expression)
        check_task_move(task.task_id, task.status, TaskStatus.PENDING, TaskMove.TRANSFER)
        conversation = self.active.get(task.task_id)
        self._check_no_transfer_in_flight(task, conversation)
        if conversation is not None and len(conversation.transfers) >= TRANSFERS_PER_TASK_MAX:
            raise ResourceExhausted(
                f"task {task.task_id} has been transferred {TRANSFERS_PER_TASK_MAX} times, "
                "the limit"
            )
        queue = self._target_queue(task, target)
        if command.mode is TransferMode.WARM:
            self._check_room_for_one_more(task, conversation)
            worker = self._choose(task, target, queue, self._on_task(task))
            return self._start_warm(task, command, worker)
        named = self._choose(task, target, queue, self._on_task(task)) if target.worker_id else None
        if held_to is not None:
            self._catalog.use_transfer_expression(target.worker_expression, held_to)
        return self._cold(task, command, queue, named)

    def _cold(
        self,
        task: TaskRecord,
        command: cmd.TransferTask,
        queue: QueueConfig,
        worker: WorkerRecord | None,
    ) -> ConversationResult:
        """The agent leaves, the task re-enters routing at the target, keeping its age."""
        now_ms = self._clock.now_ms
        conversation = self._ensure(task.task_id)
        transfer = self._new_transfer(task, command)
        conversation.transfers.append(transfer)
        self._events.append(self._transfer_event(transfer, task))
        freed = self._clear_participants(task, conversation, "transferred")
        primary = self._roster.workers[task.worker_id]
        conversation.handled_ms += now_ms - task.assigned_ms
        if not command.allow_back:
            task.excluded_worker_ids = task.excluded_worker_ids | {primary.worker_id}
        if self._leave(task, conversation, primary, wrap_up=command.wrap_up):
            freed.append(primary)
        spec = task.spec
        if command.priority is not None:
            spec = replace(spec, priority=command.priority)
            task.priority_raised = 0
        if command.target.required_skills:
            spec = replace(spec, required_skills=_merged(spec.required_skills, command.target))
        task.spec = spec
        task.worker_id = ""
        task.reservation_id = ""
        self._lifecycle.transition(task, TaskStatus.PENDING, TaskMove.TRANSFER)
        freed.extend(self._end_wrapups_of_eligible(task, conversation))
        if queue.queue_id != task.queue_id:
            self._lifecycle.move_to_queue(task, queue.queue_id)
        task.queued_ms = now_ms
        task.route_index = NO_ROUTE  # the transfer's target routes it, not its policy's steps
        task.route_started_ms = now_ms
        task.known_agent_id = ""
        task.wait_rules_fired = 0
        self._end_transfer(
            task, transfer, TransferStatus.COMPLETED, "routed",
            to_worker_id=worker.worker_id if worker is not None else "",
        )  # fmt: skip
        self._routing.start_route(task, offer_to=worker)
        self._serve(freed)
        return self._result(task, transfer.transfer_id)

    def _start_warm(
        self, task: TaskRecord, command: cmd.TransferTask, worker: WorkerRecord
    ) -> ConversationResult:
        conversation = self._ensure(task.task_id)
        transfer = self._new_transfer(task, command)
        transfer.to_worker_id = worker.worker_id
        conversation.transfers.append(transfer)
        self._events.append(self._transfer_event(transfer, task))
        queue = self._target_queue(task, command.target)
        self._invite(task, conversation, worker, ParticipantRole.CONSULT, queue, transfer)
        return self._result(task, transfer.transfer_id)

    def cancel_transfer(self, command: cmd.CancelTransfer) -> ConversationResult:
        task = self._lifecycle.task(command.task_id)
        check_id("transfer_id", command.transfer_id)
        conversation = self.active.get(task.task_id) or self.closed.get(task.task_id)
        transfer = _transfer_in(conversation, command.transfer_id)
        if transfer is None:
            raise NotFound(f"no transfer {command.transfer_id!r} of task {task.task_id}")
        if transfer.status is not TransferStatus.INITIATED:
            raise FailedPrecondition(
                f"transfer {transfer.transfer_id} is {transfer.status.value}; only an initiated "
                "transfer can be canceled"
            )
        assert conversation is not None
        participant = next(p for p in conversation.participants if p.transfer_id)
        worker = self._end_invite(
            task, conversation, participant, ReservationStatus.CANCELED, "canceled"
        )
        self._serve([worker])
        return self._result(task, transfer.transfer_id)

    def _new_transfer(self, task: TaskRecord, command: cmd.TransferTask) -> Transfer:
        self.transfer_seq += 1
        return Transfer(
            transfer_id=self._ids.transfer_id(self.transfer_seq),
            mode=command.mode,
            target=command.target,
            from_worker_id=task.worker_id,
            from_queue_id=task.queue_id,
            created_ms=self._clock.now_ms,
            reason=command.reason,
            wrap_up=command.wrap_up,
        )

    def _end_transfer(
        self,
        task: TaskRecord,
        transfer: Transfer,
        status: TransferStatus,
        outcome: str,
        *,
        to_worker_id: str | None = None,
    ) -> None:
        transfer.status = status
        transfer.outcome = outcome
        transfer.ended_ms = self._clock.now_ms
        if to_worker_id is not None:
            transfer.to_worker_id = to_worker_id
        self._events.append(self._transfer_event(transfer, task))

    def _transfer_event(self, transfer: Transfer, task: TaskRecord) -> TransferChanged:
        workers = [transfer.from_worker_id]
        if transfer.to_worker_id and transfer.to_worker_id != transfer.from_worker_id:
            workers.append(transfer.to_worker_id)
        return TransferChanged(transfer.snapshot(), task.snapshot(), tuple(workers))

    def held_to_expression(self, task_id: str) -> str:
        """The worker expression an open task is held to ("" when none): its latest transfer's,
        when that was cold to a worker expression and no worker has accepted the task since.
        Derived from the conversation alone, so that a restored engine routes it alike."""
        conversation = self.active.get(task_id)
        if conversation is None or not conversation.transfers:
            return ""
        return _held_to(conversation.transfers[-1])

    def task_assigned(self, task: TaskRecord) -> None:
        """A worker accepted the task: a cold transfer's worker expression no longer holds it
        (the transfer records who took it)."""
        held_to = self.held_to_expression(task.task_id)
        if held_to:
            self.active[task.task_id].transfers[-1].to_worker_id = task.worker_id
            self._catalog.release_transfer_expression(held_to)
            self._routing.derive(task)

    # -- participants -----------------------------------------------------------------------

    def add_participant(self, command: cmd.AddParticipant) -> ConversationResult:
        task = self._lifecycle.task(command.task_id)
        target = command.target
        if command.role is ParticipantRole.PRIMARY:
            raise InvalidArgument("role", "must be consult or monitor (the primary is the agent)")
        _check_target(target)
        if command.role is ParticipantRole.MONITOR and not target.worker_id:
            raise InvalidArgument("target.worker_id", "a monitor is a named worker")
        if task.status is not TaskStatus.ASSIGNED:
            raise FailedPrecondition(
                f"task {task.task_id} is {task.status.value}; participants join assigned tasks"
            )
        conversation = self.active.get(task.task_id)
        on_task = self._on_task(task)
        if target.worker_id in on_task:
            raise FailedPrecondition(
                f"worker {target.worker_id!r} is already a participant of task {task.task_id}"
            )
        self._check_room_for_one_more(task, conversation)
        queue = self._target_queue(task, target)
        if command.role is ParticipantRole.MONITOR:
            worker = self._roster.worker(target.worker_id)
            conversation = self._ensure(task.task_id)
            now_ms = self._clock.now_ms
            participant = Participant(worker.worker_id, command.role, now_ms, joined_ms=now_ms)
            conversation.participants.append(participant)
            self._participant_event(task, conversation, participant, added=True)
            return self._result(task)
        worker = self._choose(task, target, queue, on_task)
        conversation = self._ensure(task.task_id)
        self._invite(task, conversation, worker, command.role, queue, None)
        return self._result(task)

    def remove_participant(self, command: cmd.RemoveParticipant) -> ConversationResult:
        task = self._lifecycle.task(command.task_id)
        check_id("worker_id", command.worker_id)
        if task.worker_id == command.worker_id and task.status is TaskStatus.ASSIGNED:
            raise FailedPrecondition(
                f"worker {command.worker_id!r} is the primary of task {task.task_id}: complete, "
                "transfer or hand over the task instead"
            )
        conversation = self.active.get(task.task_id)
        participant = _participant(conversation, command.worker_id)
        if participant is None:
            raise NotFound(f"worker {command.worker_id!r} is not a participant of {task.task_id}")
        assert conversation is not None
        if participant.reservation_id:
            freed = [
                self._end_invite(
                    task, conversation, participant, ReservationStatus.RESCINDED,
                    "participant_removed",
                )
            ]  # fmt: skip
        else:
            freed = self._remove_joined(task, conversation, participant)
        self._serve(freed)
        return self._result(task)

    def hand_over_task(self, command: cmd.HandOverTask) -> ConversationResult:
        task = self._lifecycle.task(command.task_id)
        check_id("worker_id", command.worker_id)
        if task.status is not TaskStatus.ASSIGNED:
            raise FailedPrecondition(
                f"task {task.task_id} is {task.status.value}; only an assigned task is handed over"
            )
        conversation = self.active.get(task.task_id)
        participant = _participant(conversation, command.worker_id)
        if participant is None:
            raise NotFound(f"worker {command.worker_id!r} is not a participant of {task.task_id}")
        if participant.role is not ParticipantRole.CONSULT:
            raise FailedPrecondition(f"worker {command.worker_id!r} is a monitor, not a consult")
        if participant.reservation_id:
            raise FailedPrecondition(
                f"worker {command.worker_id!r} has not accepted the consult offer yet"
            )
        assert conversation is not None
        self._check_no_transfer_in_flight(task, conversation)
        freed = self._hand_over(task, conversation, participant, wrap_up=command.wrap_up)
        self._serve(freed)
        return self._result(task)

    def _invite(
        self,
        task: TaskRecord,
        conversation: Conversation,
        worker: WorkerRecord,
        role: ParticipantRole,
        queue: QueueConfig,
        transfer: Transfer | None,
    ) -> None:
        """Offers the task to a worker as a consult: it holds capacity until it answers."""
        now_ms = self._clock.now_ms
        self.consult_seq += 1
        participant = Participant(
            worker_id=worker.worker_id,
            role=role,
            invited_ms=now_ms,
            reservation_id=self._ids.consult_id(self.consult_seq),
            expires_ms=now_ms + round(queue.reservation_timeout_s * 1000),
            transfer_id=transfer.transfer_id if transfer is not None else "",
        )
        conversation.participants.append(participant)
        self.invites[participant.reservation_id] = task.task_id
        self._roster.hold(worker, task)
        self._timers.add(participant.expires_ms, TimerKind.CONSULT, participant.reservation_id)
        self._events.append(
            ConsultOffered(
                _reservation(participant, task, ReservationStatus.PENDING), task.snapshot(),
                role, participant.transfer_id,
            )
        )  # fmt: skip

    def accept_consult(self, command: cmd.AcceptOffer) -> Any:
        """The worker accepts a consult offer: it joins the task (and takes it over, when the
        offer is a warm transfer's)."""
        task, conversation, participant = self._invited(command.worker_id, command.reservation_id)
        now_ms = self._clock.now_ms
        del self.invites[participant.reservation_id]
        self._timers.ended()  # its expiry
        reservation = _reservation(participant, task, ReservationStatus.ACCEPTED)
        participant.reservation_id = ""
        participant.expires_ms = 0
        participant.joined_ms = now_ms
        self._participant_event(task, conversation, participant, added=True)
        freed: list[WorkerRecord] = []
        if participant.transfer_id:
            transfer = _transfer_in(conversation, participant.transfer_id)
            assert transfer is not None
            freed = self._hand_over(
                task, conversation, participant, wrap_up=transfer.wrap_up,
                reservation_id=reservation.reservation_id,
            )  # fmt: skip
            if transfer.target.queue_id and transfer.target.queue_id != task.queue_id:
                self._lifecycle.move_to_queue(task, transfer.target.queue_id)
            self._end_transfer(task, transfer, TransferStatus.COMPLETED, "accepted")
        self._serve(freed)
        return self._stats.copy(task)

    def reject_consult(self, command: cmd.RejectOffer) -> None:
        task, conversation, participant = self._invited(command.worker_id, command.reservation_id)
        check_text("reason", command.reason, TRANSFER_REASON_CHARS_MAX)
        worker = self._end_invite(
            task, conversation, participant, ReservationStatus.REJECTED, "rejected",
            reason=command.reason,
        )  # fmt: skip
        self._serve([worker])

    def _invited(
        self, worker_id: str, reservation_id: str
    ) -> tuple[TaskRecord, Conversation, Participant]:
        task = self._open[self.invites[reservation_id]]
        conversation = self.active[task.task_id]
        participant = next(
            p for p in conversation.participants if p.reservation_id == reservation_id
        )
        if participant.worker_id != worker_id:  # (naming nobody: the caller may be probing)
            raise PermissionDenied(f"offer {reservation_id} was not made to {worker_id!r}")
        return task, conversation, participant

    def consult_live(self, due_ms: int, reservation_id: str) -> bool:
        task_id = self.invites.get(reservation_id)
        if task_id is None:
            return False
        participant = next(
            p for p in self.active[task_id].participants if p.reservation_id == reservation_id
        )
        return participant.expires_ms == due_ms

    def consult_expired(self, reservation_id: str) -> None:
        task = self._open[self.invites[reservation_id]]
        conversation = self.active[task.task_id]
        participant = next(
            p for p in conversation.participants if p.reservation_id == reservation_id
        )
        worker = self._end_invite(
            task, conversation, participant, ReservationStatus.TIMED_OUT, "timed_out"
        )
        self._serve([worker])

    def _end_invite(
        self,
        task: TaskRecord,
        conversation: Conversation,
        participant: Participant,
        status: ReservationStatus,
        outcome: str,
        *,
        reason: str = "",
    ) -> WorkerRecord:
        """A consult offer ends unanswered or refused; the warm transfer it served fails (or
        is canceled). Returns the worker it freed (to be served)."""
        del self.invites[participant.reservation_id]
        self._timers.ended()  # its expiry
        conversation.participants.remove(participant)
        worker = self._roster.workers[participant.worker_id]
        self._roster.release(worker, task)
        reservation = _reservation(participant, task, status)
        self._events.append(
            ConsultClosed(reservation, task.snapshot(), participant.role,
                          participant.transfer_id, reason)
        )  # fmt: skip
        transfer = _transfer_in(conversation, participant.transfer_id)
        if transfer is not None:
            ended = TransferStatus.CANCELED if outcome == "canceled" else TransferStatus.FAILED
            self._end_transfer(task, transfer, ended, outcome)
        return worker

    def _remove_joined(
        self, task: TaskRecord, conversation: Conversation, participant: Participant
    ) -> list[WorkerRecord]:
        conversation.participants.remove(participant)
        freed = []
        if participant.holds_capacity:
            worker = self._roster.workers[participant.worker_id]
            self._roster.release(worker, task)
            freed.append(worker)
        self._participant_event(task, conversation, participant, added=False)
        return freed

    def _hand_over(
        self,
        task: TaskRecord,
        conversation: Conversation,
        participant: Participant,
        *,
        wrap_up: bool,
        reservation_id: str = "",
    ) -> list[WorkerRecord]:
        """A joined consult becomes the primary; the former primary leaves."""
        previous = self._roster.workers[task.worker_id]
        conversation.participants.remove(participant)
        task.worker_id = participant.worker_id
        if reservation_id:
            task.reservation_id = reservation_id
        task.updated_ms = self._clock.now_ms
        self._lifecycle.tasks.changed(task)  # its worker
        if task.spec.customer_id:
            history = self._histories.customer(task.spec.customer_id)
            history.last_worker_id = participant.worker_id
        left = Participant(previous.worker_id, ParticipantRole.PRIMARY, 0)
        self._participant_event(task, conversation, left, added=False)
        return [previous] if self._leave(task, conversation, previous, wrap_up=wrap_up) else []

    def _participant_event(
        self, task: TaskRecord, conversation: Conversation, participant: Participant, *, added: bool
    ) -> None:
        on_task = [task.worker_id] if task.worker_id else []
        on_task += [p.worker_id for p in conversation.participants if not p.reservation_id]
        if participant.worker_id not in on_task:
            on_task.append(participant.worker_id)
        self._events.append(
            ParticipantChanged(
                task.task_id, task.queue_id, task.spec.channel, participant.worker_id,
                participant.role, added, tuple(on_task),
            )
        )  # fmt: skip

    # -- pause and resume -------------------------------------------------------------------

    def pause_task(self, command: cmd.PauseTask) -> ConversationResult:
        task = self._lifecycle.task(command.task_id)
        check_text("reason", command.reason, TRANSFER_REASON_CHARS_MAX)
        check_task_move(task.task_id, task.status, TaskStatus.PAUSED, TaskMove.PAUSE)
        now_ms = self._clock.now_ms
        conversation = self._ensure(task.task_id)
        freed = self._clear_participants(task, conversation, "paused")
        primary = self._roster.workers[task.worker_id]
        conversation.handled_ms += now_ms - task.assigned_ms
        self._roster.release(primary, task)
        freed.append(primary)
        task.known_agent_id = primary.worker_id
        task.worker_id = ""
        task.reservation_id = ""
        # A known agent adds a step before the route's: derived again now, as a restored engine
        # derives it (else the priority its step gives differs after a snapshot).
        self._routing.derive(task)
        queue = self._catalog.queues[task.queue_id]
        conversation.paused_ms = now_ms
        conversation.pause_due_ms = now_ms + round(queue.pause_max_s * 1000)
        self._lifecycle.transition(task, TaskStatus.PAUSED, TaskMove.PAUSE)
        self._timers.add(conversation.pause_due_ms, TimerKind.PAUSE, task.task_id)
        self._events.append(TaskPaused(task.snapshot(), primary.worker_id, command.reason))
        self._serve(freed)
        return self._result(task)

    def resume_task(self, command: cmd.ResumeTask) -> ConversationResult:
        task = self._lifecycle.task(command.task_id)
        wait_s = command.known_agent_wait_s
        if wait_s is not None:
            check_finite("known_agent_wait_s", wait_s, 0.0, KNOWN_AGENT_WAIT_S_MAX)
        check_task_move(task.task_id, task.status, TaskStatus.PENDING, TaskMove.RESUME)
        self._resume(task, wait_s, "caller")
        return self._result(task)

    def _resume(self, task: TaskRecord, wait_s: float | None, origin: str) -> None:
        now_ms = self._clock.now_ms
        conversation = self.active[task.task_id]
        paused_for_ms = self._end_pause(conversation)
        self._timers.ended()  # its pause's end
        if wait_s is not None:
            task.spec = replace(task.spec, known_agent_wait_s=wait_s)
        task.queued_ms = now_ms
        task.route_started_ms = now_ms
        task.wait_rules_fired = 0
        self._lifecycle.transition(task, TaskStatus.PENDING, TaskMove.RESUME)
        freed = self._end_wrapups_of_eligible(task, conversation)
        self._events.append(
            TaskResumed(task.snapshot(), task.known_agent_id, paused_for_ms, origin)
        )
        self._routing.start_route(task)
        self._serve(freed)

    def _end_pause(self, conversation: Conversation) -> int:
        paused_for_ms = self._clock.now_ms - conversation.paused_ms
        conversation.paused_total_ms += paused_for_ms
        conversation.paused_ms = 0
        conversation.pause_due_ms = 0
        return paused_for_ms

    def pause_live(self, due_ms: int, task_id: str) -> bool:
        conversation = self.active.get(task_id)
        return conversation is not None and conversation.pause_due_ms == due_ms

    def pause_ran_out(self, task_id: str) -> None:
        """The task stayed paused for its queue's `pause_max_s`: resumed or canceled."""
        task = self._open[task_id]
        queue = self._catalog.queues[task.queue_id]
        if queue.pause_expiry_action is PauseExpiryAction.CANCEL:
            self._lifecycle.cancel(task, "pause_expired", "pause")
        else:
            self._resume(task, None, "pause")

    # -- the lifecycle's hooks --------------------------------------------------------------

    def conversation_ended(self, task: TaskRecord) -> list[WorkerRecord]:
        """The task is completed: every participant but the primary leaves (the primary wraps
        up). Returns the workers freed, for the caller to serve once its events are out."""
        conversation = self.active.get(task.task_id)
        if conversation is None:
            return []
        return self._clear_participants(task, conversation, "completed")

    def task_closed(self, task: TaskRecord) -> list[WorkerRecord]:
        """The task closed: whoever still holds it lets go, and its conversation is kept with
        the closed tasks. Returns the workers freed."""
        held_to = self.held_to_expression(task.task_id)
        if held_to:
            self._catalog.release_transfer_expression(held_to)
        conversation = self.active.pop(task.task_id, None)
        if conversation is None:
            return []
        freed = self._clear_participants(task, conversation, "task_closed")
        if conversation.paused_ms:
            self._end_pause(conversation)
            self._timers.ended()
        freed += self._end_wrapups(task, conversation, lambda _: True)
        self.closed[task.task_id] = conversation
        while len(self.closed) > CLOSED_TASKS_KEPT_MAX:
            self.closed.popitem(last=False)
        return freed

    def rescind_invites(self, worker: WorkerRecord) -> None:
        """The worker is no longer eligible (an activity, a drain, a lost stream): its pending
        consult offers are withdrawn, failing the warm transfers they served."""
        for task_id in list(worker.task_ids):
            conversation = self.active.get(task_id)
            if conversation is None:
                continue
            for participant in list(conversation.participants):
                if participant.worker_id == worker.worker_id and participant.reservation_id:
                    self._end_invite(
                        self._open[task_id], conversation, participant,
                        ReservationStatus.RESCINDED, "worker_unavailable",
                    )  # fmt: skip

    def primary_lost(self, task: TaskRecord) -> list[WorkerRecord]:
        """The task goes back to routing because its primary's stream was lost (`presence.py`):
        its handle time so far is kept, and every other participant leaves (a warm transfer in
        flight fails). Returns the workers freed."""
        conversation = self._ensure(task.task_id)
        conversation.handled_ms += self._clock.now_ms - task.assigned_ms
        return self._clear_participants(task, conversation, "worker_lost")

    def participant_lost(self, task: TaskRecord, worker_id: str) -> list[WorkerRecord]:
        """A joined consult's stream was lost for its channel's re-queue delay: it leaves the
        task. Returns the workers freed."""
        conversation = self.active.get(task.task_id)
        if conversation is None:
            return []
        for participant in list(conversation.participants):
            if participant.worker_id == worker_id and not participant.reservation_id:
                return self._remove_joined(task, conversation, participant)
        return []

    def _clear_participants(
        self, task: TaskRecord, conversation: Conversation, outcome: str
    ) -> list[WorkerRecord]:
        """Every participant but the primary leaves: consult offers are withdrawn (failing the
        warm transfer in flight), consults and monitors removed."""
        freed = []
        for participant in list(conversation.participants):
            if participant.reservation_id:
                freed.append(
                    self._end_invite(
                        task, conversation, participant, ReservationStatus.RESCINDED, outcome
                    )
                )
            else:
                freed += self._remove_joined(task, conversation, participant)
        return freed

    def _leave(
        self, task: TaskRecord, conversation: Conversation, worker: WorkerRecord, *, wrap_up: bool
    ) -> bool:
        """An agent hands the task on: it keeps its capacity through the queue's wrap-up when
        asked to, else lets go at once (returns True: serve it)."""
        queue = self._catalog.queues.get(task.queue_id)
        wrapup_ms = round(queue.wrapup_s * 1000) if queue is not None and wrap_up else 0
        if wrapup_ms <= 0:
            self._roster.release(worker, task)
            return True
        due_ms = self._clock.now_ms + wrapup_ms
        conversation.wrapups.append((worker.worker_id, due_ms))
        self._timers.add(due_ms, TimerKind.HANDOFF_WRAPUP, task.task_id)
        return False

    def _end_wrapups_of_eligible(
        self, task: TaskRecord, conversation: Conversation
    ) -> list[WorkerRecord]:
        """A task about to be routed again lets go of the agents still in wrap-up for it who
        may be offered it (a worker holds a task once)."""
        excluded = task.excluded_worker_ids
        return self._end_wrapups(task, conversation, lambda w: w not in excluded)

    def _end_wrapups(
        self, task: TaskRecord, conversation: Conversation, ends: Any
    ) -> list[WorkerRecord]:
        freed = []
        kept = []
        for worker_id, due_ms in conversation.wrapups:
            if ends(worker_id):
                worker = self._roster.workers[worker_id]
                self._roster.release(worker, task)
                freed.append(worker)
                self._timers.ended()
            else:
                kept.append((worker_id, due_ms))
        conversation.wrapups = kept
        return freed

    def wrapup_live(self, due_ms: int, task_id: str) -> bool:
        conversation = self.active.get(task_id)
        return conversation is not None and any(d == due_ms for _, d in conversation.wrapups)

    def wrapup_ended(self, task_id: str) -> None:
        now_ms = self._clock.now_ms
        task = self._open[task_id]
        conversation = self.active[task_id]
        due = {worker_id for worker_id, due_ms in conversation.wrapups if due_ms <= now_ms}
        self._serve(self._end_wrapups(task, conversation, lambda w: w in due))

    # -- choosing workers -------------------------------------------------------------------

    def _target_queue(self, task: TaskRecord, target: TransferTarget) -> QueueConfig:
        if target.queue_id:
            return found("target.queue_id", "queue", self._catalog.queues, target.queue_id)
        return self._catalog.queues[task.queue_id]

    def _choose(
        self, task: TaskRecord, target: TransferTarget, queue: QueueConfig, on_task: set[str]
    ) -> WorkerRecord:
        """The worker the target names, or the best eligible free one it allows: refused
        (naming why) when there is none. Changes nothing."""
        roster, columns = self._roster, self._roster.columns
        rows = columns.row_count
        members = self._catalog.membership.members(queue.queue_id)[:rows]
        if target.worker_expression:
            try:
                expression = parse(target.worker_expression)
            except ExpressionError as error:
                raise InvalidArgument("target.worker_expression", str(error)) from None
            members = members & roster.evaluate(expression)[:rows]
        skills = _merged(task.spec.required_skills, target)
        unknown = sorted(s for s in skills if s not in columns.skill_index)
        if target.worker_id:
            worker = found("target.worker_id", "worker", roster.workers, target.worker_id)
            if worker.worker_id in on_task:
                raise FailedPrecondition(
                    f"worker {worker.worker_id!r} is already on task {task.task_id}"
                )
            if not members[worker.row]:
                raise FailedPrecondition(
                    f"worker {worker.worker_id!r} is not among the workers of queue "
                    f"{queue.queue_id!r} the target allows"
                )
            if (
                unknown
                or not eligible_rows(
                    columns, self._requirement(task, target), _only(worker.row, rows)
                ).size
            ):
                raise FailedPrecondition(
                    f"worker {worker.worker_id!r} cannot take task {task.task_id} now: it is "
                    f"not available, has no free {task.spec.channel} capacity, or lacks a "
                    "required skill or language"
                )
            return worker
        if unknown:
            raise FailedPrecondition(f"no worker has skill {unknown[0]!r}")
        excluded = roster.rows_of(frozenset(on_task) | task.excluded_worker_ids)
        best = best_rows(
            columns, self._requirement(task, target), members, queue.weights,
            need=empathy_need(task.spec.sentiment, task.repeat_contacts),
            excluded_rows=excluded, affinity_rows=(), now_ms=self._clock.now_ms, count=1,
        )  # fmt: skip
        if not best:
            raise FailedPrecondition(
                f"no worker the target allows is free to take task {task.task_id} now"
            )
        return roster.workers[roster.worker_at_row[best[0]]]

    def _requirement(self, task: TaskRecord, target: TransferTarget) -> Any:
        return self._routing.requirement(task.spec, target.required_skills)

    def _on_task(self, task: TaskRecord) -> set[str]:
        """Every worker on the task: the primary, participants, and agents in its wrap-up."""
        on_task = {task.worker_id}
        conversation = self.active.get(task.task_id)
        if conversation is not None:
            on_task.update(p.worker_id for p in conversation.participants)
            on_task.update(worker_id for worker_id, _ in conversation.wrapups)
        return on_task

    def _check_room_for_one_more(self, task: TaskRecord, conversation: Conversation | None) -> None:
        count = 1 + (len(conversation.participants) if conversation is not None else 0)
        if count >= PARTICIPANTS_PER_TASK_MAX:
            raise ResourceExhausted(
                f"task {task.task_id} has {count} participants, the limit is "
                f"{PARTICIPANTS_PER_TASK_MAX}"
            )

    def _check_no_transfer_in_flight(
        self, task: TaskRecord, conversation: Conversation | None
    ) -> None:
        for transfer in conversation.transfers if conversation is not None else ():
            if transfer.status is TransferStatus.INITIATED:
                raise FailedPrecondition(
                    f"transfer {transfer.transfer_id} of task {task.task_id} is in progress; "
                    "cancel it first"
                )

    # -- helpers ----------------------------------------------------------------------------

    def _ensure(self, task_id: str) -> Conversation:
        conversation = self.active.get(task_id)
        if conversation is None:
            conversation = self.active[task_id] = Conversation(task_id)
        return conversation

    def _serve(self, workers: Iterable[WorkerRecord]) -> None:
        serve_worker = self._matching.serve_worker
        for worker in workers:
            if worker.worker_id in self._roster.workers:
                serve_worker(worker)

    def _result(self, task: TaskRecord, transfer_id: str = "") -> ConversationResult:
        return ConversationResult(self._stats.copy(task), self.view(task.task_id), transfer_id)

    # -- snapshot and digest ----------------------------------------------------------------

    def save(self) -> ConversationsShare:
        return ConversationsShare(
            self.transfer_seq, self.consult_seq, list(self.active.values()),
            list(self.closed.values()),
        )  # fmt: skip

    def restore(self, share: ConversationsShare) -> None:
        self.transfer_seq = share.transfer_seq
        self.consult_seq = share.consult_seq
        for conversation in share.active or ():
            self.active[conversation.task_id] = conversation
            held_to = self.held_to_expression(conversation.task_id)
            if held_to:
                self._catalog.use_transfer_expression(held_to, parse(held_to))
            for participant in conversation.participants:
                if participant.reservation_id:
                    self.invites[participant.reservation_id] = conversation.task_id
        for conversation in share.closed or ():
            self.closed[conversation.task_id] = conversation

    def digest_state(self) -> dict[str, Any]:
        """Empty while no conversation command has ever run (an older router's state keeps the
        digest it had)."""
        if not (self.transfer_seq or self.consult_seq or self.active or self.closed):
            return {}
        return {
            "conversations": [
                self.transfer_seq, self.consult_seq, list(self.active.values()),
                list(self.closed.values()),
            ]
        }  # fmt: skip

    def check(self) -> None:
        """Raises AssertionError unless the conversations agree with the tasks. O(state)."""
        invites = {}
        for task_id, conversation in self.active.items():
            task = self._open[task_id]
            assert conversation.task_id == task_id
            assert len(conversation.participants) + 1 <= PARTICIPANTS_PER_TASK_MAX, task_id
            assert (conversation.paused_ms > 0) == (task.status is TaskStatus.PAUSED), task_id
            if task.status is not TaskStatus.ASSIGNED:
                assert not conversation.participants, f"{task_id} {task.status} participants"
            in_flight = [t for t in conversation.transfers if t.status is TransferStatus.INITIATED]
            assert len(in_flight) <= 1, f"{task_id} has {len(in_flight)} transfers in flight"
            assert len(conversation.transfers) <= TRANSFERS_PER_TASK_MAX, task_id
            linked = [p for p in conversation.participants if p.transfer_id]
            assert [p.transfer_id for p in linked] == [t.transfer_id for t in in_flight], task_id
            workers = [p.worker_id for p in conversation.participants]
            assert len(set(workers)) == len(workers) and task.worker_id not in workers, task_id
            for participant in conversation.participants:
                if participant.reservation_id:
                    invites[participant.reservation_id] = task_id
        assert invites == self.invites, "consult offers index"
        held: dict[str, int] = {}
        for task_id in self.active:
            held_to = self.held_to_expression(task_id)
            if held_to:
                held[held_to] = held.get(held_to, 0) + 1
        assert held == self._catalog.transfer_expression_uses(), "cold transfers' expressions"
        assert not self.active.keys() & self.closed.keys(), "a conversation open and closed"
        for task_id, conversation in self.closed.items():
            assert not conversation.participants and not conversation.wrapups, task_id
            assert not conversation.paused_ms, task_id
            assert all(t.status is not TransferStatus.INITIATED for t in conversation.transfers)


def _check_target(target: TransferTarget) -> None:
    check_id("target.queue_id", target.queue_id, required=False)
    check_id("target.worker_id", target.worker_id, required=False)
    if target.worker_id and (target.required_skills or target.worker_expression):
        raise InvalidArgument(
            "target.worker_id", "name a worker or give a requirement (skills, expression), not both"
        )
    if len(target.required_skills) > SKILLS_PER_TASK_MAX:
        raise InvalidArgument(
            "target.required_skills", f"at most {SKILLS_PER_TASK_MAX} skills, got "
            f"{len(target.required_skills)}",
        )  # fmt: skip
    for skill, level in target.required_skills.items():
        check_id("target.required_skills", skill)
        check_finite(f"target.required_skills[{skill}]", level, 0.0, SKILL_LEVEL_MAX)
    check_text("target.worker_expression", target.worker_expression, 4096)


def _held_to(transfer: Transfer) -> str:
    """The worker expression a task's latest transfer holds it to until a worker accepts it."""
    if transfer.mode is TransferMode.COLD and not transfer.to_worker_id:
        return transfer.target.worker_expression
    return ""


def _merged(required: Any, target: TransferTarget) -> dict[str, float]:
    """The task's minimum levels raised by the target's."""
    merged = dict(required)
    for skill, level in target.required_skills.items():
        merged[skill] = max(level, merged.get(skill, level))
    return merged


def _only(row: int, rows: int) -> Any:
    mask = np.zeros(rows, dtype=bool)
    mask[row] = True
    return mask


def _participant(conversation: Conversation | None, worker_id: str) -> Participant | None:
    for participant in conversation.participants if conversation is not None else ():
        if participant.worker_id == worker_id:
            return participant
    return None


def _transfer_in(conversation: Conversation | None, transfer_id: str) -> Transfer | None:
    for transfer in conversation.transfers if conversation is not None and transfer_id else ():
        if transfer.transfer_id == transfer_id:
            return transfer
    return None


def _reservation(
    participant: Participant, task: TaskRecord, status: ReservationStatus
) -> Reservation:
    """A consult offer as an offer (what the agent's stream and the feed show)."""
    return Reservation(
        participant.reservation_id, task.task_id, participant.worker_id,
        participant.invited_ms, participant.expires_ms, status,
    )  # fmt: skip
