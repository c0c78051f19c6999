"""The tasks' lifecycle: creation (with idempotent retries), update, cancellation, completion
and wrap-up, every change of status checked against the transition table (`transitions.py`).
Offers, the reserved part of the lifecycle, are `offers.py`'s."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from router.core import commands as cmd
from router.core.catalog import found
from router.core.customers import check_customer_key
from router.core.errors import AlreadyExists, FailedPrecondition, ResourceExhausted
from router.core.events import (
    Event,
    TaskCanceled,
    TaskCompleted,
    TaskCreated,
    TaskRequeued,
    TaskUpdated,
    TaskWrapping,
)
from router.core.histories import payload_fingerprint
from router.core.limits import (
    CLOSED_TASKS_KEPT_MAX,
    OPEN_TASKS_MAX,
    QUEUE_DEPTH_MAX,
    TASK_TTL_S_DEFAULT,
)
from router.core.model import NO_ROUTE, QueueConfig, TaskRecord, TaskStatus, WorkerRecord
from router.core.results import CreatedTask
from router.core.scoring import REPEAT_CONTACT_WINDOW_MS
from router.core.task_table import ClosedTask, TaskCopy, TaskTable
from router.core.timers import TimerKind
from router.core.transitions import TaskMove, check_task_move
from router.core.validation import check_attributes, check_priority, validate_task

if TYPE_CHECKING:
    from router.core.catalog import Catalog
    from router.core.conversations import Conversations
    from router.core.customers import Customers
    from router.core.histories import Histories
    from router.core.identifiers import Identifiers
    from router.core.matching import Matching
    from router.core.offers import Offers
    from router.core.roster import Roster
    from router.core.routing import Routing
    from router.core.statistics import Statistics
    from router.core.timers import Clock, TimerQueue


@dataclass(frozen=True, slots=True)
class TasksShare:
    """The tasks' share of a snapshot."""

    task_seq: int
    open_tasks: list[TaskRecord]
    """In creation order."""
    closed_tasks: list[ClosedTask]
    """In the order they closed."""


class TaskLifecycle:
    """Every task, and the moves of its status."""

    def __init__(self) -> None:
        self.tasks = TaskTable()
        """Every task by id: open records, closed ones as bytes, and indexes over both."""
        self.task_seq = 0

    def connect(
        self,
        *,
        clock: Clock,
        events: list[Event],
        timers: TimerQueue,
        catalog: Catalog,
        roster: Roster,
        offers: Offers,
        routing: Routing,
        matching: Matching,
        statistics: Statistics,
        histories: Histories,
        identifiers: Identifiers,
        conversations: Conversations,
    ) -> None:
        self._clock = clock
        self._events = events
        self._timers = timers
        self._catalog = catalog
        self._roster = roster
        self._offers = offers
        self._routing = routing
        self._matching = matching
        self._stats = statistics
        self._histories = histories
        self._ids = identifiers
        self._conversations = conversations

    def connect_customers(self, customers: Customers) -> None:
        self._customers = customers

    def task(self, task_id: str) -> TaskRecord:
        """The task (a closed task's is a decoded copy)."""
        return found("task_id", "task", self.tasks, task_id)

    # -- moves ------------------------------------------------------------------------------

    def transition(self, task: TaskRecord, status: TaskStatus, move: TaskMove) -> None:
        """Moves an open task to `status`, as the table allows `move` to (else
        FailedPrecondition, and nothing changes), keeping the counts and indexes in step."""
        check_task_move(task.task_id, task.status, status, move)
        self._stats.status_moved(task.queue_id, task.status, status)
        task.status = status
        task.updated_ms = self._clock.now_ms
        self.tasks.changed(task)

    def move_to_queue(self, task: TaskRecord, queue_id: str) -> None:
        """Moves an open task's counts and index entries to another queue (its status kept)."""
        stats = self._stats
        stats.status_moved(task.queue_id, task.status, TaskStatus.PENDING)
        task.queue_id = queue_id
        stats.status_moved(queue_id, TaskStatus.PENDING, task.status)
        task.updated_ms = self._clock.now_ms
        self.tasks.changed(task)

    def close(self, task: TaskRecord) -> list[WorkerRecord]:
        """Forgets what only open tasks need, and the oldest closed tasks past the limit.
        Returns the workers its conversation freed (to be served once the task's event is
        out)."""
        self._routing.of_task.pop(task.task_id, None)
        task.offer_ids = ()
        self._timers.ended()  # its time-to-live
        freed = self._conversations.task_closed(task)
        self.tasks.close(task)
        return freed

    # -- creation ---------------------------------------------------------------------------

    def create_task(self, command: cmd.CreateTask) -> CreatedTask:
        spec, request_id = command.spec, command.client_request_id
        catalog, routing, histories = self._catalog, self._routing, self._histories
        validate_task(spec, catalog.channels, request_id)
        fingerprint = payload_fingerprint(spec) if request_id else b""
        earlier = histories.request(request_id) if request_id else None
        if earlier is not None:
            task_id, first_fingerprint = earlier
            if first_fingerprint != fingerprint:
                raise AlreadyExists(
                    f"client_request_id {request_id!r} was used for task {task_id} with a "
                    "different payload"
                )
            known = self.tasks.get(task_id)
            if known is None:
                raise FailedPrecondition(
                    f"client_request_id {request_id!r} created task {task_id}, which has closed "
                    f"and is no longer kept (the latest {CLOSED_TASKS_KEPT_MAX} closed tasks are)"
                )
            return self._created(known, deduplicated=True)
        keyed = command.customer_keyed and bool(spec.customer_id)
        if keyed:
            check_customer_key("task.customer_id", spec.customer_id)
        route_index = NO_ROUTE
        if spec.policy_id:
            route_index, queue_id = routing.policy_route(spec, keyed=keyed)
        else:
            queue_id = catalog.queue(spec.queue_id).queue_id
        arrival = routing.arrival(queue_id)
        if arrival.cancel_reason is None:
            self._check_room(catalog.queues[arrival.queue_id])
        self._roster.check_new_skills({**spec.required_skills, **spec.preferred_skills})

        now_ms = self._clock.now_ms
        self.task_seq += 1
        task_id = self._ids.task_id(self.task_seq)
        history = histories.customer(spec.customer_id) if spec.customer_id else None
        repeats = 0
        if history is not None:
            window_start = now_ms - REPEAT_CONTACT_WINDOW_MS
            recent = tuple(t for t in history.contacts_ms if t > window_start)
            repeats = len(recent)
            history.contacts_ms = (*recent, now_ms)[-3:]
        ttl_ms = round((spec.ttl_s or TASK_TTL_S_DEFAULT) * 1000)
        moved = arrival.queue_id != queue_id
        task = TaskRecord(
            task_id=task_id,
            seq=self.task_seq,
            spec=spec,
            client_request_id=request_id,
            created_ms=now_ms,
            updated_ms=now_ms,
            ttl_due_ms=now_ms + ttl_ms,
            repeat_contacts=repeats,
            queue_id=arrival.queue_id,
            queued_ms=now_ms,
            route_index=NO_ROUTE if moved else route_index,
            route_started_ms=now_ms,
            priority_raised=arrival.priority_raised,
            known_agent_id="" if moved else routing.known_agent_of(spec, history),
        )
        self.tasks.add(task)
        if keyed:
            self._customers.contact(task)
        if request_id:
            histories.record_request(request_id, task_id, fingerprint)
        self._timers.add(task.ttl_due_ms, TimerKind.TTL, task_id)
        self._stats.counters[task.queue_id].created_total += 1
        self._events.append(TaskCreated(task.snapshot(), keyed))
        if arrival.cancel_reason is not None:
            routing.derive(task)
            self.cancel(task, arrival.cancel_reason, arrival.cancel_origin)
        else:
            routing.start_route(task)
        return self._created(task, deduplicated=False)

    def _check_room(self, queue: QueueConfig) -> None:
        if self._catalog.queue_full(queue):
            raise ResourceExhausted(
                f"queue {queue.queue_id!r} is full: "
                f"{queue.depth_max or QUEUE_DEPTH_MAX} tasks are waiting"
            )
        if len(self.tasks.open) >= OPEN_TASKS_MAX:
            raise ResourceExhausted(f"the workspace has {OPEN_TASKS_MAX} open tasks, the limit")

    def _created(self, task: TaskRecord, *, deduplicated: bool) -> CreatedTask:
        position, wait_ms = self._stats.place(task)
        return CreatedTask(task.snapshot(), deduplicated, position, wait_ms)

    # -- commands on a task -----------------------------------------------------------------

    def update_task(self, command: cmd.UpdateTask) -> TaskCopy:
        """Changes a task's priority or attributes. A waiting task routed by a policy has the
        policy's filters evaluated again on its new attributes (it may change route)."""
        task = self.task(command.task_id)
        if command.priority is not None:
            check_priority("priority", command.priority)
        if command.attributes is not None:
            check_attributes("attributes", command.attributes)
        if not task.status.is_open:
            raise FailedPrecondition(f"task {task.task_id} is {task.status.value}")
        spec = task.spec
        if command.priority is not None:
            spec = replace(spec, priority=command.priority)
        if command.attributes is not None:
            spec = replace(spec, attributes=command.attributes)
        routing, waiting = self._routing, self._matching.waiting
        is_waiting = task.task_id in waiting
        rerouted = is_waiting and bool(task.spec.policy_id) and task.route_index != NO_ROUTE
        if rerouted:  # refuse before changing anything
            routing.compiled_route_index(task.spec.policy_id, spec, routing.customer_document(task))
        if is_waiting:
            waiting.remove(task.task_id)
        task.spec = spec
        task.updated_ms = self._clock.now_ms
        if is_waiting and rerouted:
            routing.reroute_by_policy(task)
        elif task.status.is_open:
            routing.derive(task)
            if is_waiting:
                self._matching.enqueue(task)
        self._events.append(
            TaskUpdated(task.task_id, task.queue_id, task.spec.channel, task.priority)
        )
        return self._stats.copy(task)

    def cancel_task(self, command: cmd.CancelTask) -> TaskCopy:
        task = self.task(command.task_id)
        check_task_move(task.task_id, task.status, TaskStatus.CANCELED, TaskMove.CANCEL)
        self.cancel(task, command.reason or "canceled")
        return self._stats.copy(task)

    def cancel(self, task: TaskRecord, reason: str, origin: str = "caller") -> None:
        freed: list[WorkerRecord] = []
        if task.status is TaskStatus.RESERVED:
            freed = self._offers.cancel_offers(task)
        elif task.task_id in self._matching.waiting:
            self._matching.waiting.remove(task.task_id)
        task.cancel_reason = reason
        self.transition(task, TaskStatus.CANCELED, TaskMove.CANCEL)
        self._stats.counters[task.queue_id].canceled_total += 1
        freed += self.close(task)
        self._events.append(TaskCanceled(task.snapshot(), origin))
        serve_worker = self._matching.serve_worker
        for worker in freed:
            serve_worker(worker)

    def expire(self, task_id: str) -> None:
        """The task's time-to-live ran out."""
        self.cancel(self.tasks.open[task_id], "ttl_expired", "ttl")

    def complete_task(self, command: cmd.CompleteTask) -> TaskCopy:
        task = self.task(command.task_id)
        now_ms = self._clock.now_ms
        queue = self._catalog.queues.get(task.queue_id)  # a closed task's may be deleted
        wrapup_ms = round(queue.wrapup_s * 1000) if queue is not None else 0
        to_status = TaskStatus.WRAPPING if wrapup_ms > 0 else TaskStatus.COMPLETED
        check_task_move(task.task_id, task.status, to_status, TaskMove.COMPLETE)
        # The conversation is over: consults and monitors leave (the primary wraps up).
        freed = self._conversations.conversation_ended(task)
        if wrapup_ms > 0:
            task.wrapup_due_ms = now_ms + wrapup_ms
            self.transition(task, TaskStatus.WRAPPING, TaskMove.COMPLETE)
            self._timers.add(task.wrapup_due_ms, TimerKind.WRAPUP, task.task_id)
            self._events.append(
                TaskWrapping(task.task_id, task.queue_id, task.spec.channel, task.worker_id)
            )
        else:
            self.finish(task, TaskMove.COMPLETE)
        for worker in freed:
            self._matching.serve_worker(worker)
        return self._stats.copy(task)

    def wrap_up_task(self, command: cmd.WrapUpTask) -> TaskCopy:
        task = self.task(command.task_id)
        check_task_move(task.task_id, task.status, TaskStatus.COMPLETED, TaskMove.WRAP_UP)
        self._timers.ended()  # its wrap-up end
        self.finish(task, TaskMove.WRAP_UP)
        return self._stats.copy(task)

    def wrapup_ended(self, task_id: str) -> None:
        """The task's wrap-up time ran out."""
        self.finish(self.tasks.open[task_id], TaskMove.WRAP_UP)

    def finish(self, task: TaskRecord, move: TaskMove) -> None:
        """Completes a task and frees the worker's capacity."""
        self.transition(task, TaskStatus.COMPLETED, move)  # checks the move before any change
        worker = self._roster.workers[task.worker_id]  # an assigned task's worker is never removed
        self._roster.release(worker, task)
        counters = self._stats.counters[task.queue_id]
        counters.completed_total += 1
        # Paused time is not handle time: the stretches before a pause or a cold transfer are
        # added to the last.
        earlier_ms = self._conversations.earlier_handle_ms(task.task_id)
        counters.handle_ms.append(self._clock.now_ms - task.assigned_ms + earlier_ms)
        freed = self.close(task)
        self._events.append(TaskCompleted(task.snapshot()))
        self._matching.serve_worker(worker)
        for other in freed:
            self._matching.serve_worker(other)

    def requeue(self, task: TaskRecord) -> None:
        """Routes an assigned task again, keeping its age: its worker's stream has been lost
        for its channel's `requeue_after_disconnect_s` (`presence.py`). The worker becomes its
        known agent, so that it is preferred if it comes back while the task waits."""
        check_task_move(task.task_id, task.status, TaskStatus.PENDING, TaskMove.REQUEUE)
        freed = self._conversations.primary_lost(task)
        worker = self._roster.workers[task.worker_id]
        self._roster.release(worker, task)
        task.known_agent_id = worker.worker_id
        task.worker_id = ""
        task.reservation_id = ""
        self.transition(task, TaskStatus.PENDING, TaskMove.REQUEUE)
        self._events.append(
            TaskRequeued(task.task_id, task.queue_id, task.spec.channel, worker.worker_id)
        )
        routing = self._routing
        routing.derive(task)
        routing.fire_wait_rules(task)
        if task.status is TaskStatus.PENDING and task.task_id not in self._matching.waiting:
            self._matching.route_task(task)
        for other in freed:
            self._matching.serve_worker(other)

    # -- timers -----------------------------------------------------------------------------

    def ttl_live(self, due_ms: int, task_id: str) -> bool:
        """The time-to-live cancels a task still waiting for its first agent: one an agent has
        taken (then transferred, paused and resumed, or re-queued) is a conversation under way."""
        task = self.tasks.open.get(task_id)
        return (
            task is not None
            and task.status in (TaskStatus.PENDING, TaskStatus.RESERVED)
            and task.assigned_ms == 0
        )

    def wrapup_live(self, due_ms: int, task_id: str) -> bool:
        task = self.tasks.open.get(task_id)
        return (
            task is not None and task.status is TaskStatus.WRAPPING and task.wrapup_due_ms == due_ms
        )

    # -- snapshot and digest ----------------------------------------------------------------

    def save(self) -> TasksShare:
        return TasksShare(
            self.task_seq, list(self.tasks.open.values()), list(self.tasks.closed.values())
        )

    def restore(self, share: TasksShare) -> None:
        """The tasks, after the workers and the configuration: their routing is derived."""
        self.task_seq = share.task_seq
        self.tasks.restore(share.open_tasks, share.closed_tasks)
        derive = self._routing.derive
        for task in share.open_tasks:
            derive(task)
        self._matching.enqueue_all(
            task for task in share.open_tasks if task.status is TaskStatus.PENDING
        )
