"""The routing engine: the whole state of one workspace and the only code that changes it.

Pure: no I/O, no wall clock, no global randomness. Time enters with each command (`now_ms`), and
timers fire at their due time before the command is applied, so the same commands at the same
times always give the same state and the same events (`digest()` proves it)."""

from __future__ import annotations

import hashlib
import heapq
import json
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np

from router.core import commands as cmd
from router.core.columns import IDLE_SINCE_MS, WorkerColumns
from router.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from router.core.events import (
    Event,
    OfferClosed,
    OfferCreated,
    TaskAssigned,
    TaskCanceled,
    TaskCompleted,
    TaskCreated,
    WorkerActivityChanged,
)
from router.core.expressions import MATCH_ALL, AttributeColumns, Expression, ExpressionError, parse
from router.core.limits import (
    CHANNELS_MAX,
    CLOSED_TASKS_KEPT_MAX,
    OPEN_TASKS_MAX,
    QUEUE_DEPTH_MAX,
    QUEUES_MAX,
    REQUEST_IDS_KEPT_MAX,
    SKILLS_PER_WORKSPACE_MAX,
    TASK_TTL_S_DEFAULT,
    WORKERS_MAX,
)
from router.core.model import (
    DEFAULT_ACTIVITIES,
    DEFAULT_CHANNELS,
    NEW_WORKER_ACTIVITY,
    QueueConfig,
    Reservation,
    ReservationStatus,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    WorkerProfile,
    WorkerRecord,
)
from router.core.scoring import (
    REPEAT_CONTACT_WINDOW_MS,
    Requirement,
    best_row,
    empathy_need,
    make_requirement,
)
from router.core.validation import (
    check_attributes,
    check_id,
    check_priority,
    validate_queue,
    validate_task,
    validate_worker,
)
from router.core.waiting import QueueMembership, WaitingIndex, order_key

SERVICE_RATE_SAMPLES = 64
"""Assignments per queue remembered to estimate its service rate (the estimated wait)."""
CUSTOMERS_KEPT_MAX = 200_000
"""Customers whose last agent and recent contacts are remembered, least recent forgotten first."""
_CLOSED_RESERVATIONS_KEPT_MAX = 100_000
_STALE_TIMERS_SWEPT_MIN = 1024
_REQUIREMENT_CACHE_MAX = 10_000


@dataclass(slots=True)
class QueueCounters:
    created_total: int = 0
    offered_total: int = 0
    assigned_total: int = 0
    completed_total: int = 0
    canceled_total: int = 0
    by_status: dict[TaskStatus, int] = field(default_factory=dict)
    assigned_ms: deque[int] = field(default_factory=lambda: deque(maxlen=SERVICE_RATE_SAMPLES))
    """When the latest assignments happened: the queue's recent service rate."""


@dataclass(slots=True)
class CustomerHistory:
    last_worker_id: str = ""
    contacts_ms: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class CreatedTask:
    task: TaskRecord
    deduplicated: bool
    queue_position: int
    estimated_wait_ms: int | None


@dataclass(frozen=True, slots=True)
class UpsertedWorker:
    worker: WorkerRecord
    created: bool


@dataclass(frozen=True, slots=True)
class UpsertedQueue:
    queue: QueueConfig
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


Result = Any
"""What a command returns: a TaskRecord, CreatedTask, UpsertedWorker, ... (see each handler)."""


class Engine:
    """One workspace's routing state. Apply commands with `apply`; read between commands."""

    def __init__(self) -> None:
        self.now_ms = 0
        self._task_seq = 0
        self._reservation_seq = 0
        self._timer_seq = 0
        self.channels: dict[str, str] = {name: name for name in DEFAULT_CHANNELS}
        self.activities: dict[str, bool] = dict(DEFAULT_ACTIVITIES)
        self.queues: dict[str, QueueConfig] = {}
        self._queue_expressions: dict[str, Expression] = {}
        self.counters: dict[str, QueueCounters] = {}
        self.workers: dict[str, WorkerRecord] = {}
        self._worker_at_row: dict[int, str] = {}
        self.tasks: dict[str, TaskRecord] = {}
        self._requirements: dict[str, Requirement] = {}
        self.reservations: dict[str, Reservation] = {}
        self._closed_reservations: OrderedDict[str, None] = OrderedDict()
        self._closed_tasks: OrderedDict[str, None] = OrderedDict()
        self._request_ids: OrderedDict[str, tuple[str, TaskSpec]] = OrderedDict()
        self._customers: OrderedDict[str, CustomerHistory] = OrderedDict()
        self._timers: list[tuple[int, int, str, str]] = []
        self._timers_stale = 0
        """Timers in the heap that will do nothing when they fall due."""
        self._requirement_cache: dict[tuple[object, ...], Requirement] = {}
        self.columns = WorkerColumns()
        for name in DEFAULT_CHANNELS:
            self.columns.channel_col(name)
        self.worker_attributes = AttributeColumns()
        self.membership = QueueMembership()
        self.waiting = WaitingIndex()
        self._events: list[Event] = []
        self._handlers: dict[type, Callable[[Any], Result]] = {
            cmd.UpsertChannel: self._upsert_channel,
            cmd.UpsertActivity: self._upsert_activity,
            cmd.UpsertQueue: self._upsert_queue,
            cmd.DeleteQueue: self._delete_queue,
            cmd.UpsertWorker: self._upsert_worker,
            cmd.RemoveWorker: self._remove_worker,
            cmd.SetActivity: self._set_activity,
            cmd.CreateTask: self._create_task,
            cmd.UpdateTask: self._update_task,
            cmd.CancelTask: self._cancel_task,
            cmd.AcceptOffer: self._accept_offer,
            cmd.RejectOffer: self._reject_offer,
            cmd.CompleteTask: self._complete_task,
            cmd.WrapUpTask: self._wrap_up_task,
            cmd.Tick: lambda _: None,
        }

    # == applying commands =====================================================================

    def apply(self, command: cmd.Command, now_ms: int) -> Result:
        """Fires the timers due by `now_ms`, then applies the command. Raises a CoreError (and
        changes nothing but the timers) when the command is refused."""
        if now_ms < self.now_ms:
            raise ValueError(f"time went backwards: {now_ms} < {self.now_ms}")
        self._fire_timers(now_ms)
        self.now_ms = now_ms
        return self._handlers[type(command)](command)

    def take_events(self) -> list[Event]:
        """The events emitted since the last call, in order."""
        events, self._events = self._events, []
        return events

    def next_timer_ms(self) -> int | None:
        """When the earliest timer falls due (the service ticks then), or None."""
        return self._timers[0][0] if self._timers else None

    def _fire_timers(self, now_ms: int) -> None:
        while self._timers and self._timers[0][0] <= now_ms:
            timer = heapq.heappop(self._timers)
            if not self._timer_live(timer):
                self._timers_stale -= 1
                continue
            due_ms, _, kind, ref = timer
            self.now_ms = max(self.now_ms, due_ms)
            if kind == "offer":
                self._end_offer(self.reservations[ref], ReservationStatus.TIMED_OUT, exclude=True)
            elif kind == "wrapup":
                self._finish(self.tasks[ref])
            else:
                self._cancel(self.tasks[ref], "ttl_expired")

    def _timer_live(self, timer: tuple[int, int, str, str]) -> bool:
        """Whether a timer still has something to do (timers are not removed when their
        offer or task ends; they are skipped, and swept by `_timer_ended`)."""
        due_ms, _, kind, ref = timer
        if kind == "offer":
            reservation = self.reservations.get(ref)
            return reservation is not None and reservation.status is ReservationStatus.PENDING
        task = self.tasks.get(ref)
        if task is None:
            return False
        if kind == "wrapup":
            return task.status is TaskStatus.WRAPPING and task.wrapup_due_ms == due_ms
        return task.status in (TaskStatus.PENDING, TaskStatus.RESERVED)

    def _add_timer(self, due_ms: int, kind: str, ref: str) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (due_ms, self._timer_seq, kind, ref))

    def _timer_ended(self) -> None:
        """Counts a timer made pointless (its offer answered, its task closed) and rebuilds the
        heap when most entries are such: a day's time-to-live timers would otherwise pile up."""
        self._timers_stale += 1
        if self._timers_stale > _STALE_TIMERS_SWEPT_MIN and 2 * self._timers_stale > len(
            self._timers
        ):
            self._timers = [t for t in self._timers if self._timer_live(t)]
            heapq.heapify(self._timers)
            self._timers_stale = 0

    # == configuration =========================================================================

    def _upsert_channel(self, command: cmd.UpsertChannel) -> str:
        check_id("channel.channel_id", command.channel_id)
        if command.channel_id not in self.channels and len(self.channels) >= CHANNELS_MAX:
            raise ResourceExhausted(f"a workspace may define at most {CHANNELS_MAX} channels")
        self.channels[command.channel_id] = command.display_name or command.channel_id
        self.columns.channel_col(command.channel_id)
        return command.channel_id

    def _upsert_activity(self, command: cmd.UpsertActivity) -> str:
        check_id("activity.activity_id", command.activity_id)
        was_available = self.activities.get(command.activity_id)
        self.activities[command.activity_id] = command.available
        if was_available is not None and was_available != command.available:
            for worker in list(self.workers.values()):
                if worker.activity == command.activity_id:
                    self._availability_changed(worker, was_available)
        return command.activity_id

    def _upsert_queue(self, command: cmd.UpsertQueue) -> UpsertedQueue:
        queue = command.queue
        validate_queue(queue)
        created = queue.queue_id not in self.queues
        if created and len(self.queues) >= QUEUES_MAX:
            raise ResourceExhausted(f"a workspace may define at most {QUEUES_MAX} queues")
        expression = _parse_target(queue.target_expression)
        previous = self.queues.get(queue.queue_id)
        slot = self.membership.index_of(queue.queue_id)
        self.membership.ensure_rows(self.columns.row_count)
        members = self._evaluate_members(expression)
        before = self.membership.matrix[slot, : members.size].copy()
        self.membership.matrix[slot, :] = False
        self.membership.matrix[slot, : members.size] = members
        self.queues[queue.queue_id] = queue
        self._queue_expressions[queue.queue_id] = expression
        self.counters.setdefault(queue.queue_id, QueueCounters())
        if previous is not None and previous.order is not queue.order:
            self._rekey_waiting(queue)
        for row in np.flatnonzero(members & ~before).tolist():
            worker = self.workers[self._worker_at_row[row]]
            self._serve_worker(worker)
        return UpsertedQueue(queue, created)

    def _evaluate_members(self, expression: Expression) -> np.ndarray:
        rows = self.columns.row_count
        mask = np.zeros(rows, dtype=bool)
        if expression is MATCH_ALL:
            mask[:] = True
        else:
            evaluated = expression.mask(self.worker_attributes)
            count = min(rows, evaluated.size)
            mask[:count] = evaluated[:count]
        return mask & self.columns.alive[:rows]

    def _rekey_waiting(self, queue: QueueConfig) -> None:
        for task_id in self.waiting.task_ids(queue.queue_id):
            self.waiting.remove(task_id)
            self._enqueue(self.tasks[task_id])

    def _delete_queue(self, command: cmd.DeleteQueue) -> None:
        self._queue(command.queue_id)
        counters = self.counters[command.queue_id]
        open_tasks = self.waiting.queue_depth(command.queue_id) + sum(counters.by_status.values())
        if open_tasks:
            raise FailedPrecondition(
                f"queue {command.queue_id!r} has {open_tasks} open tasks; cancel or complete "
                "them first"
            )
        del self.queues[command.queue_id]
        del self._queue_expressions[command.queue_id]
        del self.counters[command.queue_id]
        self.membership.matrix[self.membership.index_of(command.queue_id), :] = False

    # == workers ===============================================================================

    def _upsert_worker(self, command: cmd.UpsertWorker) -> UpsertedWorker:
        profile = command.profile
        validate_worker(profile, self.channels)
        if profile.activity is not None and profile.activity not in self.activities:
            raise InvalidArgument("worker.activity", f"unknown activity {profile.activity!r}")
        existing = self.workers.get(profile.worker_id)
        if existing is None and len(self.workers) >= WORKERS_MAX:
            raise ResourceExhausted(f"a workspace may have at most {WORKERS_MAX} workers")
        if existing is not None:
            self._check_capacity_covers_load(existing, profile)
        self._check_new_skills(profile.skills)

        if existing is None:
            row = self.columns.allocate_row()
            self.membership.ensure_rows(self.columns.row_count)
            activity = profile.activity or NEW_WORKER_ACTIVITY
            worker = WorkerRecord(profile, row, activity, idle_since_ms=self.now_ms)
            self.workers[profile.worker_id] = worker
            self._worker_at_row[row] = profile.worker_id
            was_available = False
        else:
            worker = existing
            was_available = self.activities[worker.activity]
            if profile.activity is not None and profile.activity != worker.activity:
                self._record_activity_change(worker, profile.activity)
        worker.profile = replace(profile, activity=None)
        self.columns.available[worker.row] = self.activities[worker.activity]
        self.columns.write_profile(worker.row, profile)
        document = _worker_document(profile)
        self.worker_attributes.set_row(worker.row, document)
        for queue_id, expression in self._queue_expressions.items():
            slot = self.membership.index_of(queue_id)
            self.membership.matrix[slot, worker.row] = expression.evaluate(document)
        if self.activities[worker.activity] != was_available:
            self._availability_changed(worker, was_available)
        else:  # new skills or capacity may make waiting tasks eligible
            self._serve_worker(worker)
        return UpsertedWorker(worker, existing is None)

    def _check_capacity_covers_load(self, worker: WorkerRecord, profile: WorkerProfile) -> None:
        for channel, load in worker.load_by_channel.items():
            capacity = profile.capacity_by_channel.get(channel, 0)
            if load > capacity:
                raise FailedPrecondition(
                    f"worker.capacity_by_channel[{channel}]: {capacity} is below the {load} "
                    f"tasks of that channel the worker holds"
                )
        if profile.total_capacity is not None:
            held = sum(
                load * profile.cost_by_channel.get(channel, 1.0)
                for channel, load in worker.load_by_channel.items()
            )
            if held > profile.total_capacity + 1e-9:
                raise FailedPrecondition(
                    f"worker.total_capacity: {profile.total_capacity:g} is below the {held:g} "
                    "the worker's tasks use"
                )

    def _check_new_skills(self, skills: Iterable[str]) -> None:
        index = self.columns.skill_index
        new = sum(1 for skill in skills if skill not in index)
        if new and len(index) + new > SKILLS_PER_WORKSPACE_MAX:
            raise ResourceExhausted(
                f"a workspace may use at most {SKILLS_PER_WORKSPACE_MAX} distinct skills"
            )

    def _remove_worker(self, command: cmd.RemoveWorker) -> None:
        worker = self._worker(command.worker_id)
        held = [
            task_id
            for task_id in worker.task_ids
            if self.tasks[task_id].status is not TaskStatus.RESERVED
        ]
        if held:
            raise FailedPrecondition(
                f"worker {worker.worker_id!r} holds tasks {', '.join(held)}; complete them first"
            )
        # Unavailable first, so that a rescinded task is not offered straight back.
        self.columns.available[worker.row] = False
        self.columns.refresh(worker.row)
        self._rescind_offers(worker)
        self.columns.release_row(worker.row)
        self.worker_attributes.clear_row(worker.row)
        self.membership.matrix[:, worker.row] = False
        del self._worker_at_row[worker.row]
        del self.workers[worker.worker_id]

    def _set_activity(self, command: cmd.SetActivity) -> WorkerRecord:
        worker = self._worker(command.worker_id)
        if command.activity not in self.activities:
            raise InvalidArgument("activity", f"unknown activity {command.activity!r}")
        if command.activity != worker.activity:
            was_available = self.activities[worker.activity]
            self._record_activity_change(worker, command.activity)
            self._availability_changed(worker, was_available)
        return worker

    def _record_activity_change(self, worker: WorkerRecord, activity: str) -> None:
        self._events.append(WorkerActivityChanged(worker.worker_id, activity, worker.activity))
        worker.activity = activity

    def _availability_changed(self, worker: WorkerRecord, was_available: bool) -> None:
        """Acts on a worker whose activity may have changed availability."""
        available = self.activities[worker.activity]
        self.columns.available[worker.row] = available
        self.columns.refresh(worker.row)
        if available == was_available:
            return
        if available:
            if not worker.task_ids:
                self._set_idle(worker)
            self._serve_worker(worker)
        else:
            self._rescind_offers(worker)

    def _rescind_offers(self, worker: WorkerRecord) -> None:
        for task_id in list(worker.task_ids):
            task = self.tasks[task_id]
            if task.status is TaskStatus.RESERVED:
                reservation = self.reservations[task.reservation_id]
                self._end_offer(reservation, ReservationStatus.RESCINDED, exclude=False)

    def _set_idle(self, worker: WorkerRecord) -> None:
        worker.idle_since_ms = self.now_ms
        self.columns.features[worker.row, IDLE_SINCE_MS] = self.now_ms

    # == tasks =================================================================================

    def _create_task(self, command: cmd.CreateTask) -> CreatedTask:
        spec, request_id = command.spec, command.client_request_id
        validate_task(spec, self.channels, request_id)
        if request_id and request_id in self._request_ids:
            task_id, first_spec = self._request_ids[request_id]
            if first_spec != spec:
                raise AlreadyExists(
                    f"client_request_id {request_id!r} was used for task {task_id} with a "
                    "different payload"
                )
            task = self.tasks.get(task_id)
            if task is None:
                raise FailedPrecondition(
                    f"client_request_id {request_id!r} created task {task_id}, which has closed "
                    f"and is no longer kept (the latest {CLOSED_TASKS_KEPT_MAX} closed tasks are)"
                )
            return self._created(task, deduplicated=True)
        queue = self._queue(spec.queue_id)
        self._check_room(queue)
        skills = {**spec.required_skills, **spec.preferred_skills}
        self._check_new_skills(skills)

        self._task_seq += 1
        task_id = f"task-{self._task_seq}"
        history = self._customer(spec.customer_id) if spec.customer_id else None
        repeats = 0
        if history is not None:
            window_start = self.now_ms - REPEAT_CONTACT_WINDOW_MS
            recent = tuple(t for t in history.contacts_ms if t > window_start)
            repeats = len(recent)
            history.contacts_ms = (*recent, self.now_ms)[-3:]
        ttl_ms = round((spec.ttl_s or TASK_TTL_S_DEFAULT) * 1000)
        task = TaskRecord(
            task_id=task_id,
            seq=self._task_seq,
            spec=spec,
            client_request_id=request_id,
            created_ms=self.now_ms,
            updated_ms=self.now_ms,
            ttl_due_ms=self.now_ms + ttl_ms,
            repeat_contacts=repeats,
        )
        self.tasks[task_id] = task
        self._requirements[task_id] = self._requirement(spec)
        if request_id:
            self._request_ids[request_id] = (task_id, spec)
            _trim(self._request_ids, REQUEST_IDS_KEPT_MAX)
        self._add_timer(task.ttl_due_ms, "ttl", task_id)
        self.counters[spec.queue_id].created_total += 1
        self._events.append(TaskCreated(task.snapshot()))
        self._route_task(task)
        return self._created(task, deduplicated=False)

    def _check_room(self, queue: QueueConfig) -> None:
        depth_max = queue.depth_max or QUEUE_DEPTH_MAX
        if self.waiting.queue_depth(queue.queue_id) >= depth_max:
            raise ResourceExhausted(
                f"queue {queue.queue_id!r} is full: {depth_max} tasks are waiting"
            )
        if len(self.tasks) - len(self._closed_tasks) >= OPEN_TASKS_MAX:
            raise ResourceExhausted(f"the workspace has {OPEN_TASKS_MAX} open tasks, the limit")

    def _requirement(self, spec: TaskSpec) -> Requirement:
        """The task's requirement, shared by every task with the same skills, channel and
        language (a contact center has a few hundred such task types, not one per task)."""
        key = (
            spec.channel,
            tuple(sorted(spec.required_skills.items())),
            tuple(spec.preferred_skills.items()),
            spec.language,
        )
        requirement = self._requirement_cache.get(key)
        if requirement is None:
            columns = self.columns
            requirement = make_requirement(
                channel_col=columns.channel_index.get(spec.channel),
                required=[(columns.skill_col(s), lvl) for s, lvl in spec.required_skills.items()],
                preferred=[(columns.skill_col(s), w) for s, w in spec.preferred_skills.items()],
                language_col=columns.language_col(spec.language) if spec.language else -1,
            )
            if len(self._requirement_cache) >= _REQUIREMENT_CACHE_MAX:
                self._requirement_cache.clear()
            self._requirement_cache[key] = requirement
        return requirement

    def _created(self, task: TaskRecord, *, deduplicated: bool) -> CreatedTask:
        position = self.waiting.position(task.task_id) if task.task_id in self.waiting else 0
        return CreatedTask(
            task.snapshot(), deduplicated, position, self.estimated_wait_ms(task.task_id)
        )

    def _update_task(self, command: cmd.UpdateTask) -> TaskRecord:
        task = self._task(command.task_id)
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
        waiting = task.task_id in self.waiting
        if waiting:
            self.waiting.remove(task.task_id)
        task.spec = spec
        task.updated_ms = self.now_ms
        if waiting:
            self._enqueue(task)
        return task.snapshot()

    def _cancel_task(self, command: cmd.CancelTask) -> TaskRecord:
        task = self._task(command.task_id)
        if task.status not in (TaskStatus.PENDING, TaskStatus.RESERVED):
            raise FailedPrecondition(
                f"task {task.task_id} is {task.status.value}; only pending or reserved tasks "
                "can be canceled"
            )
        self._cancel(task, command.reason or "canceled")
        return task.snapshot()

    def _cancel(self, task: TaskRecord, reason: str) -> None:
        if task.status is TaskStatus.RESERVED:
            reservation = self.reservations[task.reservation_id]
            self._close_reservation(reservation, ReservationStatus.CANCELED, exclude=False)
            worker = self.workers.get(reservation.worker_id)
        else:
            self.waiting.remove(task.task_id)
            worker = None
        task.cancel_reason = reason
        self._set_status(task, TaskStatus.CANCELED)
        self.counters[task.spec.queue_id].canceled_total += 1
        self._close_task(task)
        self._events.append(TaskCanceled(task.snapshot()))
        if worker is not None:
            self._serve_worker(worker)

    def _accept_offer(self, command: cmd.AcceptOffer) -> TaskRecord:
        reservation = self._reservation_of(command.worker_id, command.reservation_id)
        task = self.tasks[reservation.task_id]
        reservation.status = ReservationStatus.ACCEPTED
        self._retire_reservation(reservation)
        task.assigned_ms = self.now_ms
        self._set_status(task, TaskStatus.ASSIGNED)
        counters = self.counters[task.spec.queue_id]
        counters.assigned_total += 1
        counters.assigned_ms.append(self.now_ms)
        if task.spec.customer_id:
            self._customer(task.spec.customer_id).last_worker_id = reservation.worker_id
        self._events.append(
            TaskAssigned(reservation.snapshot(), task.snapshot(), self.now_ms - task.created_ms)
        )
        return task.snapshot()

    def _reject_offer(self, command: cmd.RejectOffer) -> None:
        reservation = self._reservation_of(command.worker_id, command.reservation_id)
        self._end_offer(reservation, ReservationStatus.REJECTED, exclude=True)

    def _reservation_of(self, worker_id: str, reservation_id: str) -> Reservation:
        check_id("reservation_id", reservation_id)
        reservation = self.reservations.get(reservation_id)
        if reservation is None:
            raise NotFound(f"no offer {reservation_id!r}")
        if reservation.worker_id != worker_id:
            raise FailedPrecondition(
                f"offer {reservation_id} was made to worker {reservation.worker_id!r}, "
                f"not {worker_id!r}"
            )
        if reservation.status is not ReservationStatus.PENDING:
            raise FailedPrecondition(
                f"offer {reservation_id} is no longer pending: it is {reservation.status.value}"
            )
        return reservation

    def _complete_task(self, command: cmd.CompleteTask) -> TaskRecord:
        task = self._task(command.task_id)
        if task.status is not TaskStatus.ASSIGNED:
            raise FailedPrecondition(
                f"task {task.task_id} is {task.status.value}; only an assigned task can be "
                "completed"
            )
        wrapup_ms = round(self.queues[task.spec.queue_id].wrapup_s * 1000)
        if wrapup_ms > 0:
            task.wrapup_due_ms = self.now_ms + wrapup_ms
            self._set_status(task, TaskStatus.WRAPPING)
            self._add_timer(task.wrapup_due_ms, "wrapup", task.task_id)
        else:
            self._finish(task)
        return task.snapshot()

    def _wrap_up_task(self, command: cmd.WrapUpTask) -> TaskRecord:
        task = self._task(command.task_id)
        if task.status is not TaskStatus.WRAPPING:
            raise FailedPrecondition(
                f"task {task.task_id} is {task.status.value}; only a wrapping task can be "
                "wrapped up"
            )
        self._timer_ended()  # its wrap-up end
        self._finish(task)
        return task.snapshot()

    def _finish(self, task: TaskRecord) -> None:
        """Completes a task and frees the worker's capacity."""
        worker = self.workers[task.worker_id]
        self._release(worker, task)
        self._set_status(task, TaskStatus.COMPLETED)
        self.counters[task.spec.queue_id].completed_total += 1
        self._close_task(task)
        self._events.append(TaskCompleted(task.snapshot()))
        self._serve_worker(worker)

    # == matching ==============================================================================

    def _route_task(self, task: TaskRecord) -> None:
        """Offers a pending task to the best eligible worker, or makes it wait."""
        queue = self.queues[task.spec.queue_id]
        row = best_row(
            self.columns,
            self._requirements[task.task_id],
            self.membership.members(queue.queue_id),
            queue.weights,
            need=empathy_need(task.spec.sentiment, task.repeat_contacts),
            excluded_rows=self._rows_of(task.excluded_worker_ids),
            affinity_rows=self._affinity_rows(task),
            now_ms=self.now_ms,
        )
        if row is None:
            self._enqueue(task)
        else:
            self._offer(task, self.workers[self._worker_at_row[row]])

    def _serve_worker(self, worker: WorkerRecord) -> None:
        """Offers a worker with free capacity the waiting tasks it should take next."""
        row = worker.row
        worker_id = worker.worker_id
        while self.columns.ready[row].any():
            task_id = self.waiting.best_task_for(
                row,
                self.columns,
                self.membership,
                lambda task_id: worker_id in self.tasks[task_id].excluded_worker_ids,
            )
            if task_id is None:
                return
            self.waiting.remove(task_id)
            self._offer(self.tasks[task_id], worker)

    def _enqueue(self, task: TaskRecord) -> None:
        queue = self.queues[task.spec.queue_id]
        key = order_key(
            priority=task.spec.priority,
            created_ms=task.created_ms,
            seq=task.seq,
            task_id=task.task_id,
            order=queue.order,
        )
        self.waiting.add(
            task_id=task.task_id,
            queue_id=queue.queue_id,
            queue_slot=self.membership.index_of(queue.queue_id),
            requirement=self._requirements[task.task_id],
            key=key,
            created_ms=task.created_ms,
            seq=task.seq,
        )

    def _offer(self, task: TaskRecord, worker: WorkerRecord) -> None:
        queue = self.queues[task.spec.queue_id]
        self._reservation_seq += 1
        reservation = Reservation(
            reservation_id=f"res-{self._reservation_seq}",
            task_id=task.task_id,
            worker_id=worker.worker_id,
            created_ms=self.now_ms,
            expires_ms=self.now_ms + round(queue.reservation_timeout_s * 1000),
        )
        self.reservations[reservation.reservation_id] = reservation
        task.worker_id = worker.worker_id
        task.reservation_id = reservation.reservation_id
        self._set_status(task, TaskStatus.RESERVED)
        self._hold(worker, task)
        self._add_timer(reservation.expires_ms, "offer", reservation.reservation_id)
        self.counters[queue.queue_id].offered_total += 1
        self._events.append(OfferCreated(reservation.snapshot(), task.snapshot()))

    def _end_offer(
        self, reservation: Reservation, status: ReservationStatus, *, exclude: bool
    ) -> None:
        """Ends a pending offer without acceptance; the task is routed again, and the worker,
        if still available, takes other work."""
        task = self.tasks[reservation.task_id]
        self._close_reservation(reservation, status, exclude=exclude)
        self._set_status(task, TaskStatus.PENDING)
        self._route_task(task)
        worker = self.workers.get(reservation.worker_id)
        if worker is not None:
            self._serve_worker(worker)

    def _close_reservation(
        self, reservation: Reservation, status: ReservationStatus, *, exclude: bool
    ) -> None:
        task = self.tasks[reservation.task_id]
        reservation.status = status
        self._retire_reservation(reservation)
        worker = self.workers.get(reservation.worker_id)
        if worker is not None:
            self._release(worker, task)
        task.worker_id = ""
        task.reservation_id = ""
        if exclude:
            task.excluded_worker_ids = task.excluded_worker_ids | {reservation.worker_id}
        task.updated_ms = self.now_ms
        self._events.append(OfferClosed(reservation.snapshot(), task.snapshot()))

    def _retire_reservation(self, reservation: Reservation) -> None:
        """Keeps a closed reservation for a while, so a late answer gets a clear error."""
        self._timer_ended()  # its expiry
        self._closed_reservations[reservation.reservation_id] = None
        while len(self._closed_reservations) > _CLOSED_RESERVATIONS_KEPT_MAX:
            old_id, _ = self._closed_reservations.popitem(last=False)
            del self.reservations[old_id]

    def _hold(self, worker: WorkerRecord, task: TaskRecord) -> None:
        channel = task.spec.channel
        worker.task_ids[task.task_id] = None
        worker.load_by_channel[channel] = worker.load_by_channel.get(channel, 0) + 1
        self.columns.add_load(worker.row, self.columns.channel_index.get(channel), 1)

    def _release(self, worker: WorkerRecord, task: TaskRecord) -> None:
        channel = task.spec.channel
        del worker.task_ids[task.task_id]
        worker.load_by_channel[channel] -= 1
        if not worker.load_by_channel[channel]:
            del worker.load_by_channel[channel]
        self.columns.add_load(worker.row, self.columns.channel_index.get(channel), -1)
        if not worker.task_ids:
            self._set_idle(worker)

    def _rows_of(self, worker_ids: frozenset[str]) -> list[int]:
        return [self.workers[w].row for w in sorted(worker_ids) if w in self.workers]

    def _affinity_rows(self, task: TaskRecord) -> list[int]:
        rows = []
        preferred = self.workers.get(task.spec.preferred_worker_id)
        if preferred is not None:
            rows.append(preferred.row)
        history = self._customers.get(task.spec.customer_id) if task.spec.customer_id else None
        if history is not None:
            last = self.workers.get(history.last_worker_id)
            if last is not None and last.row not in rows:
                rows.append(last.row)
        return rows

    # == bookkeeping ===========================================================================

    def _set_status(self, task: TaskRecord, status: TaskStatus) -> None:
        by_status = self.counters[task.spec.queue_id].by_status
        for old_or_new, step in ((task.status, -1), (status, 1)):
            if old_or_new in (TaskStatus.RESERVED, TaskStatus.ASSIGNED, TaskStatus.WRAPPING):
                by_status[old_or_new] = by_status.get(old_or_new, 0) + step
        task.status = status
        task.updated_ms = self.now_ms

    def _close_task(self, task: TaskRecord) -> None:
        """Forgets what only open tasks need, and the oldest closed tasks past the limit."""
        self._requirements.pop(task.task_id, None)
        self._timer_ended()  # its time-to-live
        self._closed_tasks[task.task_id] = None
        while len(self._closed_tasks) > CLOSED_TASKS_KEPT_MAX:
            old_id, _ = self._closed_tasks.popitem(last=False)
            del self.tasks[old_id]

    def _customer(self, customer_id: str) -> CustomerHistory:
        history = self._customers.get(customer_id)
        if history is None:
            history = self._customers[customer_id] = CustomerHistory()
            _trim(self._customers, CUSTOMERS_KEPT_MAX)
        else:
            self._customers.move_to_end(customer_id)
        return history

    # == reads =================================================================================

    def _task(self, task_id: str) -> TaskRecord:
        check_id("task_id", task_id)
        task = self.tasks.get(task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        return task

    def _worker(self, worker_id: str) -> WorkerRecord:
        check_id("worker_id", worker_id)
        worker = self.workers.get(worker_id)
        if worker is None:
            raise NotFound(f"no worker {worker_id!r}")
        return worker

    def _queue(self, queue_id: str) -> QueueConfig:
        check_id("queue_id", queue_id)
        queue = self.queues.get(queue_id)
        if queue is None:
            raise NotFound(f"no queue {queue_id!r}")
        return queue

    def get_task(self, task_id: str) -> TaskRecord:
        return self._task(task_id)

    def get_worker(self, worker_id: str) -> WorkerRecord:
        return self._worker(worker_id)

    def get_queue(self, queue_id: str) -> QueueConfig:
        return self._queue(queue_id)

    def queue_position(self, task_id: str) -> int:
        """0-based position of a pending task in its queue (0 when not waiting)."""
        return self.waiting.position(task_id) if task_id in self.waiting else 0

    def estimated_wait_ms(self, task_id: str) -> int | None:
        """Time until the task is offered: 0 once it has been; for a waiting task, its
        position + 1 over the queue's recent service rate (assignments per ms over the last
        `SERVICE_RATE_SAMPLES` assignments); None when the queue has no recent service."""
        task = self.tasks[task_id]
        if task_id not in self.waiting:
            return 0 if task.status is not TaskStatus.CANCELED else None
        samples = self.counters[task.spec.queue_id].assigned_ms
        if len(samples) < 2 or samples[-1] <= samples[0]:
            return None
        ms_per_task = (samples[-1] - samples[0]) / (len(samples) - 1)
        return round((self.waiting.position(task_id) + 1) * ms_per_task)

    def iter_tasks(self) -> Iterator[TaskRecord]:
        """Every known task, in creation order."""
        return iter(self.tasks.values())

    def queue_stats(self, queue_id: str) -> QueueStats:
        counters = self.counters[queue_id]
        oldest = self.waiting.oldest_created_ms(queue_id)
        slot = self.membership.index_of(queue_id)
        rows = self.columns.row_count
        return QueueStats(
            queue_id=queue_id,
            waiting=self.waiting.queue_depth(queue_id),
            longest_wait_ms=0 if oldest is None else self.now_ms - oldest,
            reserved=counters.by_status.get(TaskStatus.RESERVED, 0),
            assigned=counters.by_status.get(TaskStatus.ASSIGNED, 0),
            wrapping=counters.by_status.get(TaskStatus.WRAPPING, 0),
            created_total=counters.created_total,
            offered_total=counters.offered_total,
            assigned_total=counters.assigned_total,
            completed_total=counters.completed_total,
            canceled_total=counters.canceled_total,
            eligible_workers=int(self.membership.matrix[slot, :rows].sum()),
        )

    def workers_by_activity(self) -> dict[str, int]:
        counts = dict.fromkeys(self.activities, 0)
        for worker in self.workers.values():
            counts[worker.activity] += 1
        return counts

    def check_invariants(self) -> None:
        """Raises AssertionError when the state breaks a rule that must always hold: no worker
        over capacity, no task held by two workers, columns agree with records, and no waiting
        task has an eligible free worker (matching left nothing undone). O(state): for tests."""
        holders: dict[str, str] = {}
        for worker in self.workers.values():
            row = worker.row
            for channel, load in worker.load_by_channel.items():
                col = self.columns.channel_index.get(channel)
                capacity = worker.profile.capacity_by_channel.get(channel, 0)
                assert 0 < load <= capacity, (
                    f"{worker.worker_id} holds {load} {channel} > {capacity}"
                )
                assert self.columns.load[row, col] == load, f"{worker.worker_id} load column"
            priced = sum(
                load * worker.profile.cost_by_channel.get(channel, 1.0)
                for channel, load in worker.load_by_channel.items()
            )
            assert abs(self.columns.total_load[row] - priced) < 1e-6, f"{worker.worker_id} total"
            if worker.profile.total_capacity is not None:
                assert priced <= worker.profile.total_capacity + 1e-9, f"{worker.worker_id} over"
            for task_id in worker.task_ids:
                assert task_id not in holders, f"{task_id} held by {holders[task_id]} and more"
                holders[task_id] = worker.worker_id
        for task in self.tasks.values():
            held = task.status in (TaskStatus.RESERVED, TaskStatus.ASSIGNED, TaskStatus.WRAPPING)
            assert held == (task.task_id in holders), f"{task.task_id} {task.status} holders"
            if held:
                assert holders[task.task_id] == task.worker_id
            assert (task.status is TaskStatus.PENDING) == (task.task_id in self.waiting)
        for queue_id in self.queues:
            for task_id in self.waiting.task_ids(queue_id):
                task = self.tasks[task_id]
                queue = self.queues[queue_id]
                free_row = best_row(
                    self.columns,
                    self._requirements[task_id],
                    self.membership.members(queue_id),
                    queue.weights,
                    need=0.0,
                    excluded_rows=self._rows_of(task.excluded_worker_ids),
                    affinity_rows=(),
                    now_ms=self.now_ms,
                )
                assert free_row is None, (
                    f"{task_id} waits while {self._worker_at_row[free_row]} is free"
                )

    def digest(self) -> str:
        """A hash of the whole routing state: equal digests mean equal states."""
        encoded = json.dumps(
            self.digest_state(), default=_json_default, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(encoded.encode()).hexdigest()

    def digest_state(self) -> dict[str, Any]:
        """The state that `digest` hashes, part by part (to see which part two states differ
        in)."""
        # The clock is not state: a router that idled to a later time holds the same state.
        return {
            "seqs": [self._task_seq, self._reservation_seq, self._timer_seq],
            "channels": self.channels,
            "activities": self.activities,
            "queues": [asdict(q) for q in self.queues.values()],
            "workers": [
                [
                    asdict(w.profile),
                    w.row,
                    w.activity,
                    w.idle_since_ms,
                    w.load_by_channel,
                    list(w.task_ids),
                ]
                for w in self.workers.values()
            ],
            "tasks": [asdict(t) for t in self.tasks.values()],
            "reservations": [asdict(r) for r in self.reservations.values()],
            "waiting": {q: self.waiting.task_ids(q) for q in self.queues},
            "timers": sorted(t for t in self._timers if self._timer_live(t)),
            "customers": [[c, asdict(h)] for c, h in self._customers.items()],
            "request_ids": [[r, t, asdict(spec)] for r, (t, spec) in self._request_ids.items()],
            "counters": [
                [
                    q,
                    c.created_total,
                    c.offered_total,
                    c.assigned_total,
                    c.completed_total,
                    c.canceled_total,
                    list(c.assigned_ms),
                ]
                for q, c in self.counters.items()
            ],
        }


def _worker_document(profile: WorkerProfile) -> dict[str, Any]:
    """What a target expression sees of a worker: its attributes and the reserved keys."""
    return {
        **profile.attributes,
        "skills": dict(profile.skills),
        "languages": list(profile.languages),
        "empathy": profile.empathy,
        "worker_id": profile.worker_id,
    }


def _parse_target(source: str) -> Expression:
    if not source.strip():
        return MATCH_ALL
    try:
        return parse(source)
    except ExpressionError as error:
        raise InvalidArgument("queue.target_expression", str(error)) from None


def _trim(mapping: OrderedDict[str, Any], size_max: int) -> None:
    while len(mapping) > size_max:
        mapping.popitem(last=False)


def _json_default(value: object) -> object:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")
