"""The routing engine: the whole state of one workspace and the only code that changes it.

Pure: no I/O, no wall clock, no global randomness. Time enters with each command (`now_ms`), and
timers fire at their due time before the command is applied, so the same commands at the same
times always give the same state and the same events (`digest()` proves it)."""

from __future__ import annotations

import hashlib
import heapq
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, TypeVar

import msgspec
import numpy as np
import numpy.typing as npt

from router.core import commands as cmd
from router.core.assignment import INELIGIBLE, best_pairs
from router.core.calendar import is_open
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
    ASSIGNMENT_ROUND_TASKS_MAX,
    CHANNELS_MAX,
    CLOSED_TASKS_KEPT_MAX,
    OPEN_TASKS_MAX,
    POLICIES_MAX,
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
    NO_ROUTE,
    ActionKind,
    ExceptionRule,
    QueueAction,
    QueueConfig,
    Reservation,
    ReservationStatus,
    RoutingPolicy,
    RoutingStep,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    TriggerKind,
    WorkerProfile,
    WorkerRecord,
)
from router.core.policies import (
    OPEN_STEP,
    CompiledPolicy,
    policy_routes,
    route_steps,
    step_at,
)
from router.core.scoring import (
    REPEAT_CONTACT_WINDOW_MS,
    Requirement,
    best_row,
    best_rows,
    eligible_rows,
    empathy_need,
    make_requirement,
    scores,
)
from router.core.task_index import SEQ, TASK_ID, TaskFilter
from router.core.task_table import TaskCopy, TaskPage, TaskTable
from router.core.validation import (
    check_attributes,
    check_id,
    check_priority,
    check_queue_references,
    move_targets,
    validate_policy,
    validate_queue,
    validate_task,
    validate_worker,
)
from router.core.waiting import (
    NO_PIN,
    PINNED_TO_NOBODY,
    GroupTarget,
    QueueMembership,
    WaitingEntry,
    WaitingIndex,
    order_key,
)
from router.core.worker_index import WorkerIndex

SERVICE_RATE_SAMPLES = 64
"""Assignments (and completions) per queue remembered to estimate its service rate."""
EVERYONE = "\x00"
"""The membership key of the row of every worker (steps without a worker expression)."""
CUSTOMERS_KEPT_MAX = 200_000
"""Customers whose last agent and recent contacts are remembered, least recent forgotten first."""
_CLOSED_RESERVATIONS_KEPT_MAX = 100_000
_STALE_TIMERS_SWEPT_MIN = 1024
_REQUIREMENT_CACHE_MAX = 10_000
_NOBODY = np.zeros(0, dtype=bool)
"""A membership row of no worker."""
_DIGEST_SLICE_ITEMS = 1024
_canonical = msgspec.msgpack.Encoder(order="deterministic")
"""MessagePack with sets and dict keys sorted: equal values give equal bytes."""


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
    handle_ms: deque[int] = field(default_factory=lambda: deque(maxlen=SERVICE_RATE_SAMPLES))
    """How long the latest completed tasks held a worker (assignment to the end of wrap-up)."""


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
class UpsertedPolicy:
    policy: RoutingPolicy
    created: bool


@dataclass(frozen=True, slots=True)
class Arrival:
    """Where a task arriving at a queue ends up (see `Engine._arrival`)."""

    queue_id: str
    cancel_reason: str | None
    priority_raised: int
    cancel_origin: str = "exception"
    """"after_hours" or "exception": which of the queue's rules canceled it."""


class OfferRate(NamedTuple):
    """A queue's pace of offers on one channel: one task every `ms / slots` milliseconds."""

    ms: float
    """The mean handle time (or, before any completion, the mean time between assignments)."""
    slots: int
    """The staffed slots working in parallel (1 with the assignment-interval fallback)."""


class TaskRouting(NamedTuple):
    """What a task's current step makes of it, derived from the record (never stored)."""

    requirement: Requirement
    target: GroupTarget


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


Result = Any
"""What a command returns: a TaskRecord, CreatedTask, UpsertedWorker, ... (see each handler)."""
_Value = TypeVar("_Value")


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
        self._wait_rules: dict[str, tuple[ExceptionRule, ...]] = {}
        """Per queue, its wait-time rules by threshold (the order in which they fire)."""
        self.policies: dict[str, RoutingPolicy] = {}
        self._compiled: dict[str, CompiledPolicy] = {}
        self._step_expressions: dict[str, Expression] = {EVERYONE: MATCH_ALL}
        """Membership key -> expression, for the worker expressions of every policy's steps."""
        self._round_due_ms: dict[str, int] = {}
        """Per batch-assigned queue, when its next assignment round runs."""
        self._batched_queues: set[str] = set()
        """Queues assigned in rounds (`assignment_window_s` > 0)."""
        self._queues_with_arrival_rules: set[str] = set()
        """Queues with business hours or queue-length rules (arrivals there are checked)."""
        self._targets: dict[tuple[str, str, int], GroupTarget] = {}
        """GroupTarget by (queue, step worker expression, pinned row), rebuilt on change."""
        self._staffing_version = 0
        """Bumped whenever who is available or who belongs to a queue may have changed."""
        self._staffing_cache: dict[tuple[str, int], tuple[int, int]] = {}
        self.counters: dict[str, QueueCounters] = {}
        self.workers: dict[str, WorkerRecord] = {}
        self.worker_index = WorkerIndex()
        """Worker ids in order, overall and per activity."""
        self._worker_at_row: dict[int, str] = {}
        self.tasks = TaskTable()
        """Every task by id: open records, closed ones as bytes, and indexes over both."""
        self._routing: dict[str, TaskRouting] = {}
        """Per open task, its current step's requirement and target."""
        self.reservations: dict[str, Reservation] = {}
        self._closed_reservations: OrderedDict[str, None] = OrderedDict()
        self._request_ids: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        """Per client request id, the task it created and its payload's fingerprint (see
        `payload_fingerprint`): not the payload, which would keep a million specs and their
        attributes alive long after their tasks are forgotten."""
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
        self._everyone_slot = self.membership.index_of(EVERYONE)
        self.waiting = WaitingIndex()
        self._events: list[Event] = []
        self._handlers: dict[type, Callable[[Any], Result]] = {
            cmd.UpsertChannel: self._upsert_channel,
            cmd.UpsertActivity: self._upsert_activity,
            cmd.UpsertQueue: self._upsert_queue,
            cmd.DeleteQueue: self._delete_queue,
            cmd.UpsertRoutingPolicy: self._upsert_policy,
            cmd.DeleteRoutingPolicy: self._delete_policy,
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
                # Not every dead timer is counted when it dies (a step timer of a task served
                # early, say); the count only paces the sweep, so it is clamped, not exact.
                self._timers_stale = max(0, self._timers_stale - 1)
                continue
            due_ms, _, kind, ref = timer
            self.now_ms = max(self.now_ms, due_ms)
            if kind == "offer":
                self._end_offer(self.reservations[ref], ReservationStatus.TIMED_OUT, exclude=True)
            elif kind == "wrapup":
                self._finish(self.tasks.open[ref])
            elif kind == "ttl":
                self._cancel(self.tasks.open[ref], "ttl_expired", "ttl")
            elif kind == "step":
                self._step_timed_out(self.tasks.open[ref])
            elif kind == "wait":
                self._fire_wait_rules(self.tasks.open[ref])
            else:
                assert kind == "round", kind
                del self._round_due_ms[ref]
                self._run_round(ref)

    def _timer_live(self, timer: tuple[int, int, str, str]) -> bool:
        """Whether a timer still has something to do (timers are not removed when their
        offer or task ends; they are skipped, and swept by `_timer_ended`)."""
        due_ms, _, kind, ref = timer
        if kind == "offer":
            reservation = self.reservations.get(ref)
            return reservation is not None and reservation.status is ReservationStatus.PENDING
        if kind == "round":
            return self._round_due_ms.get(ref) == due_ms
        task = self.tasks.open.get(ref)
        if task is None:
            return False
        if kind == "wrapup":
            return task.status is TaskStatus.WRAPPING and task.wrapup_due_ms == due_ms
        if task.status not in (TaskStatus.PENDING, TaskStatus.RESERVED):
            return False
        if kind == "step":
            return task.step_due_ms == due_ms
        if kind == "wait":
            return self._next_wait_due_ms(task) == due_ms
        return True

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
        """Creates or replaces a queue. The tasks already waiting in it are re-evaluated under
        the new configuration: reordered, their exception rules applied afresh (as if the new
        rules had applied all along), and offered to the workers who may now take them."""
        queue = command.queue
        validate_queue(queue)
        created = queue.queue_id not in self.queues
        if created and len(self.queues) >= QUEUES_MAX:
            raise ResourceExhausted(f"a workspace may define at most {QUEUES_MAX} queues")
        check_queue_references(queue, self.queues)
        expression = _parse_target(queue.target_expression)
        previous = self.queues.get(queue.queue_id)
        self.membership.ensure_rows(self.columns.row_count)
        members = self._evaluate_members(expression)
        self.queues[queue.queue_id] = queue
        self._queue_expressions[queue.queue_id] = expression
        self._index_queue(queue)
        self.counters.setdefault(queue.queue_id, QueueCounters())
        self._set_members(queue.queue_id, members)
        if previous is not None and previous != queue:
            self._reevaluate_queue(
                queue, rules_changed=previous.exception_rules != queue.exception_rules
            )
        return UpsertedQueue(queue, created)

    def _index_queue(self, queue: QueueConfig) -> None:
        """Derived lookups of a queue's configuration (also rebuilt from a snapshot)."""
        queue_id = queue.queue_id
        self._wait_rules[queue_id] = wait_rules_of(queue)
        self._batched_queues.discard(queue_id)
        if queue.assignment_window_s > 0:
            self._batched_queues.add(queue_id)
        self._queues_with_arrival_rules.discard(queue_id)
        if queue.business_hours is not None or any(
            r.trigger is TriggerKind.QUEUE_LENGTH for r in queue.exception_rules
        ):
            self._queues_with_arrival_rules.add(queue_id)
        self._targets.clear()

    def _set_members(self, key: str, members: np.ndarray) -> None:
        """Writes a membership row and serves the workers who joined it."""
        slot = self.membership.index_of(key)
        before = self.membership.matrix[slot, : members.size].copy()
        self.membership.set_row(slot, members)
        self._staffing_version += 1
        for row in np.flatnonzero(members & ~before).tolist():
            self._serve_worker(self.workers[self._worker_at_row[row]])

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

    def _reevaluate_queue(self, queue: QueueConfig, *, rules_changed: bool) -> None:
        """Re-enters every waiting task of a changed queue, then serves its free members."""
        task_ids = self.waiting.task_ids(queue.queue_id)
        for task_id in task_ids:
            self.waiting.remove(task_id)
        for task_id in task_ids:
            task = self.tasks.open[task_id]
            if rules_changed:
                task.priority_raised = 0
                task.wait_rules_fired = 0
            self._derive(task)
            self._enqueue(task)
        if rules_changed:
            for task_id in task_ids:
                task = self.tasks.open[task_id]
                if task.status is TaskStatus.PENDING and task.queue_id == queue.queue_id:
                    self._fire_wait_rules(task)
        self._serve_members(queue.queue_id)
        self._schedule_round(queue.queue_id)

    def _serve_members(self, queue_id: str) -> None:
        """Offers waiting work to every free worker of a queue."""
        rows = self.columns.row_count
        free = self.columns.ready[:rows].any(axis=1) & self.membership.members(queue_id)[:rows]
        for row in np.flatnonzero(free).tolist():
            self._serve_worker(self.workers[self._worker_at_row[row]])

    def _delete_queue(self, command: cmd.DeleteQueue) -> None:
        self._queue(command.queue_id)
        counters = self.counters[command.queue_id]
        open_tasks = self.waiting.queue_depth(command.queue_id) + sum(counters.by_status.values())
        if open_tasks:
            raise FailedPrecondition(
                f"queue {command.queue_id!r} has {open_tasks} open tasks; cancel or complete "
                "them first"
            )
        for user in self._queue_users(command.queue_id):
            raise FailedPrecondition(f"queue {command.queue_id!r} is used by {user}")
        del self.queues[command.queue_id]
        del self._queue_expressions[command.queue_id]
        del self._wait_rules[command.queue_id]
        self._batched_queues.discard(command.queue_id)
        self._queues_with_arrival_rules.discard(command.queue_id)
        self._targets.clear()
        del self.counters[command.queue_id]
        self._round_due_ms.pop(command.queue_id, None)
        self.membership.set_row(self.membership.index_of(command.queue_id), _NOBODY)

    def _queue_users(self, queue_id: str) -> Iterator[str]:
        """What names a queue: policies' routes and other queues' move actions."""
        for policy in self.policies.values():
            if any(route.queue_id == queue_id for route in policy_routes(policy)):
                yield f"routing policy {policy.policy_id!r}"
        for other in self.queues.values():
            if other.queue_id != queue_id and any(
                target == queue_id for _, target in move_targets(other)
            ):
                yield f"queue {other.queue_id!r} (it moves tasks there)"

    def _upsert_policy(self, command: cmd.UpsertRoutingPolicy) -> UpsertedPolicy:
        """Creates or replaces a routing policy. The waiting tasks it routed are routed again:
        their filter re-evaluated, and their step the one the new policy gives their wait."""
        policy = command.policy
        validate_policy(policy, self.queues)
        created = policy.policy_id not in self.policies
        if created and len(self.policies) >= POLICIES_MAX:
            raise ResourceExhausted(f"a workspace may define at most {POLICIES_MAX} policies")
        compiled = CompiledPolicy(policy)
        routed = [
            task
            for task_id in self.tasks.index.open_of_policy(policy.policy_id)
            if (task := self.tasks.open[task_id]).route_index != NO_ROUTE
            and task.status in (TaskStatus.PENDING, TaskStatus.RESERVED)
        ]
        for task in routed:  # refuse before changing anything
            if compiled.route_index(task.spec) is None:
                raise FailedPrecondition(
                    f"task {task.task_id} is routed by policy {policy.policy_id!r} and would "
                    "match none of its filters; give the policy a default route"
                )
        self.policies[policy.policy_id] = policy
        self._compiled[policy.policy_id] = compiled
        self._refresh_step_expressions()
        for task in routed:
            if task.status is TaskStatus.PENDING:
                self.waiting.remove(task.task_id)
            self._reroute_by_policy(task)
        return UpsertedPolicy(policy, created)

    def _refresh_step_expressions(self) -> None:
        """Keeps a membership row for every worker expression the policies' steps use."""
        sources = set().union(*(c.worker_expressions() for c in self._compiled.values()))
        wanted = {EVERYONE + source for source in sources} | {EVERYONE}
        for key in list(self._step_expressions):
            if key not in wanted:
                del self._step_expressions[key]
                self.membership.set_row(self.membership.index_of(key), _NOBODY)
        self._targets.clear()
        self.membership.ensure_rows(self.columns.row_count)
        for key in sorted(wanted - self._step_expressions.keys()):
            expression = parse(key[len(EVERYONE) :])
            self._step_expressions[key] = expression
            self._set_members(key, self._evaluate_members(expression))

    def _delete_policy(self, command: cmd.DeleteRoutingPolicy) -> None:
        self.get_policy(command.policy_id)
        users = self.tasks.index.open_count_of_policy(command.policy_id)
        if users:
            raise FailedPrecondition(
                f"routing policy {command.policy_id!r} routes {users} open tasks; it can be "
                "deleted once they are closed"
            )
        del self.policies[command.policy_id]
        del self._compiled[command.policy_id]
        self._refresh_step_expressions()

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
            self.worker_index.add(worker.worker_id, activity)
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
        for key, expression in self._membership_expressions():
            slot = self.membership.index_of(key)
            self.membership.set_cell(slot, worker.row, expression.evaluate(document))
        self._staffing_version += 1
        if existing is None:
            self._repin(worker.worker_id)
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
            if self.tasks.open[task_id].status is not TaskStatus.RESERVED
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
        self.membership.clear_column(worker.row)
        self._staffing_version += 1
        pinned = self.waiting.task_ids_pinned_to(worker.row)
        del self._worker_at_row[worker.row]
        del self.workers[worker.worker_id]
        self.worker_index.remove(worker.worker_id, worker.activity)
        for task_id in pinned:  # its row may go to another worker: they now wait for nobody
            self._rederive_waiting(self.tasks.open[task_id])

    def _repin(self, worker_id: str) -> None:
        """A new worker may be the known agent that waiting tasks wait for."""
        for task_id in self.waiting.task_ids_pinned_to(PINNED_TO_NOBODY):
            task = self.tasks.open[task_id]
            if task.known_agent_id == worker_id:
                self._rederive_waiting(task)

    def _rederive_waiting(self, task: TaskRecord) -> None:
        """Re-files a waiting task whose routing (target, pinned worker) has changed."""
        self.waiting.remove(task.task_id)
        self._derive(task)
        self._enqueue(task)

    def _membership_expressions(self) -> Iterator[tuple[str, Expression]]:
        yield from self._queue_expressions.items()
        yield from self._step_expressions.items()

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
        self.worker_index.move(worker.worker_id, worker.activity, activity)
        worker.activity = activity

    def _availability_changed(self, worker: WorkerRecord, was_available: bool) -> None:
        """Acts on a worker whose activity may have changed availability."""
        available = self.activities[worker.activity]
        self.columns.available[worker.row] = available
        self.columns.refresh(worker.row)
        if available == was_available:
            return
        self._staffing_version += 1
        if available:
            if not worker.task_ids:
                self._set_idle(worker)
            self._serve_worker(worker)
        else:
            self._rescind_offers(worker)

    def _rescind_offers(self, worker: WorkerRecord) -> None:
        for task_id in list(worker.task_ids):
            reservation = self._offer_to(self.tasks.open[task_id], worker.worker_id)
            if reservation is not None:
                self._end_offer(reservation, ReservationStatus.RESCINDED, exclude=False)

    def _set_idle(self, worker: WorkerRecord) -> None:
        worker.idle_since_ms = self.now_ms
        self.columns.features[worker.row, IDLE_SINCE_MS] = self.now_ms

    # == tasks =================================================================================

    def _create_task(self, command: cmd.CreateTask) -> CreatedTask:
        spec, request_id = command.spec, command.client_request_id
        validate_task(spec, self.channels, request_id)
        fingerprint = payload_fingerprint(spec) if request_id else b""
        if request_id and request_id in self._request_ids:
            task_id, first_fingerprint = self._request_ids[request_id]
            if first_fingerprint != fingerprint:
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
        route_index = NO_ROUTE
        if spec.policy_id:
            route_index, queue_id = self._policy_route(spec)
        else:
            queue_id = self._queue(spec.queue_id).queue_id
        arrival = self._arrival(queue_id)
        if arrival.cancel_reason is None:
            self._check_room(self.queues[arrival.queue_id])
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
        moved = arrival.queue_id != queue_id
        task = TaskRecord(
            task_id=task_id,
            seq=self._task_seq,
            spec=spec,
            client_request_id=request_id,
            created_ms=self.now_ms,
            updated_ms=self.now_ms,
            ttl_due_ms=self.now_ms + ttl_ms,
            repeat_contacts=repeats,
            queue_id=arrival.queue_id,
            queued_ms=self.now_ms,
            route_index=NO_ROUTE if moved else route_index,
            route_started_ms=self.now_ms,
            priority_raised=arrival.priority_raised,
            known_agent_id="" if moved else self._known_agent_of(spec, history),
        )
        self.tasks.add(task)
        if request_id:
            self._request_ids[request_id] = (task_id, fingerprint)
            _trim(self._request_ids, REQUEST_IDS_KEPT_MAX)
        self._add_timer(task.ttl_due_ms, "ttl", task_id)
        self.counters[task.queue_id].created_total += 1
        self._events.append(TaskCreated(task.snapshot()))
        if arrival.cancel_reason is not None:
            self._derive(task)
            self._cancel(task, arrival.cancel_reason, arrival.cancel_origin)
        else:
            self._start_route(task)
        return self._created(task, deduplicated=False)

    def _policy_route(self, spec: TaskSpec) -> tuple[int, str]:
        """The route (filter index) and queue a policy gives a new task."""
        self.get_policy(spec.policy_id)
        index = self._compiled_route_index(spec.policy_id, spec)
        return index, self._compiled[spec.policy_id].route(index).queue_id

    def _known_agent_of(self, spec: TaskSpec, history: CustomerHistory | None) -> str:
        if spec.preferred_worker_id:
            return spec.preferred_worker_id
        return history.last_worker_id if history is not None else ""

    def _queue_full(self, queue: QueueConfig) -> bool:
        return self.waiting.queue_depth(queue.queue_id) >= (queue.depth_max or QUEUE_DEPTH_MAX)

    def _check_room(self, queue: QueueConfig) -> None:
        if self._queue_full(queue):
            raise ResourceExhausted(
                f"queue {queue.queue_id!r} is full: "
                f"{queue.depth_max or QUEUE_DEPTH_MAX} tasks are waiting"
            )
        if len(self.tasks.open) >= OPEN_TASKS_MAX:
            raise ResourceExhausted(f"the workspace has {OPEN_TASKS_MAX} open tasks, the limit")

    def _requirement(
        self, spec: TaskSpec, step_skills: Mapping[str, float] | None = None
    ) -> Requirement:
        """The task's requirement in a step, shared by every task with the same skills, channel
        and language (a contact center has a few hundred such task types, not one per task).
        A step's minimum levels raise the task's own."""
        required = spec.required_skills
        if step_skills:
            required = dict(required)
            for skill, level in step_skills.items():
                required[skill] = max(level, required.get(skill, level))
        key = (
            spec.channel,
            tuple(sorted(required.items())),
            tuple(spec.preferred_skills.items()),
            spec.language,
        )
        requirement = self._requirement_cache.get(key)
        if requirement is None:
            columns = self.columns
            requirement = make_requirement(
                channel_col=columns.channel_index.get(spec.channel),
                required=[(columns.skill_col(s), lvl) for s, lvl in required.items()],
                preferred=[(columns.skill_col(s), w) for s, w in spec.preferred_skills.items()],
                language_col=columns.language_col(spec.language) if spec.language else -1,
            )
            if len(self._requirement_cache) >= _REQUIREMENT_CACHE_MAX:
                self._requirement_cache.clear()
            self._requirement_cache[key] = requirement
        return requirement

    def _created(self, task: TaskRecord, *, deduplicated: bool) -> CreatedTask:
        if task.task_id not in self.waiting:
            return CreatedTask(
                task.snapshot(), deduplicated, 0, self.estimated_wait_ms(task.task_id)
            )
        position = self.waiting.position(task.task_id)  # once: the estimate needs it too
        wait_ms = _wait_ms(position, self._offer_rate(task))
        return CreatedTask(task.snapshot(), deduplicated, position, wait_ms)

    def _update_task(self, command: cmd.UpdateTask) -> TaskRecord:
        """Changes a task's priority or attributes. A waiting task routed by a policy has the
        policy's filters evaluated again on its new attributes (it may change route)."""
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
        rerouted = waiting and bool(task.spec.policy_id) and task.route_index != NO_ROUTE
        if rerouted:  # refuse before changing anything
            self._compiled_route_index(task.spec.policy_id, spec)
        if waiting:
            self.waiting.remove(task.task_id)
        task.spec = spec
        task.updated_ms = self.now_ms
        if waiting and rerouted:
            self._reroute_by_policy(task)
        elif task.status.is_open:
            self._derive(task)
            if waiting:
                self._enqueue(task)
        return task.snapshot()

    def _compiled_route_index(self, policy_id: str, spec: TaskSpec) -> int:
        """The policy's route for a task; refused when it matches nothing."""
        index = self._compiled[policy_id].route_index(spec)
        if index is None:
            raise FailedPrecondition(
                f"the task matches no filter of routing policy {policy_id!r}, which has "
                "no default route"
            )
        return index

    def _cancel_task(self, command: cmd.CancelTask) -> TaskRecord:
        task = self._task(command.task_id)
        if task.status not in (TaskStatus.PENDING, TaskStatus.RESERVED):
            raise FailedPrecondition(
                f"task {task.task_id} is {task.status.value}; only pending or reserved tasks "
                "can be canceled"
            )
        self._cancel(task, command.reason or "canceled")
        return task.snapshot()

    def _cancel(self, task: TaskRecord, reason: str, origin: str = "caller") -> None:
        freed = []
        if task.status is TaskStatus.RESERVED:
            for reservation_id in task.offer_ids:
                reservation = self.reservations[reservation_id]
                self._close_reservation(reservation, ReservationStatus.CANCELED, exclude=False)
                worker = self.workers.get(reservation.worker_id)
                if worker is not None:
                    freed.append(worker)
        elif task.task_id in self.waiting:
            self.waiting.remove(task.task_id)
        task.cancel_reason = reason
        self._set_status(task, TaskStatus.CANCELED)
        self.counters[task.queue_id].canceled_total += 1
        self._close_task(task)
        self._events.append(TaskCanceled(task.snapshot(), origin))
        for worker in freed:
            self._serve_worker(worker)

    def _accept_offer(self, command: cmd.AcceptOffer) -> TaskRecord:
        """The worker takes the task; its other offers (a multi-offer) are rescinded at once."""
        reservation = self._reservation_of(command.worker_id, command.reservation_id)
        task = self.tasks.open[reservation.task_id]
        reservation.status = ReservationStatus.ACCEPTED
        self._retire_reservation(reservation)
        others = [self.reservations[r] for r in task.offer_ids if r != reservation.reservation_id]
        task.offer_ids = ()
        for other in others:
            self._close_reservation(other, ReservationStatus.RESCINDED, exclude=False)
        task.worker_id = reservation.worker_id
        task.reservation_id = reservation.reservation_id
        task.assigned_ms = self.now_ms
        self._set_status(task, TaskStatus.ASSIGNED)
        counters = self.counters[task.queue_id]
        counters.assigned_total += 1
        counters.assigned_ms.append(self.now_ms)
        if task.spec.customer_id:
            self._customer(task.spec.customer_id).last_worker_id = reservation.worker_id
        self._events.append(
            TaskAssigned(reservation.snapshot(), task.snapshot(), self.now_ms - task.created_ms)
        )
        for other in others:
            worker = self.workers.get(other.worker_id)
            if worker is not None:
                self._serve_worker(worker)
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

    def _offer_to(self, task: TaskRecord, worker_id: str) -> Reservation | None:
        """The task's pending offer to this worker, if any."""
        for reservation_id in task.offer_ids:
            reservation = self.reservations[reservation_id]
            if reservation.worker_id == worker_id:
                return reservation
        return None

    def _complete_task(self, command: cmd.CompleteTask) -> TaskRecord:
        task = self._task(command.task_id)
        if task.status is not TaskStatus.ASSIGNED:
            raise FailedPrecondition(
                f"task {task.task_id} is {task.status.value}; only an assigned task can be "
                "completed"
            )
        wrapup_ms = round(self.queues[task.queue_id].wrapup_s * 1000)
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
        counters = self.counters[task.queue_id]
        counters.completed_total += 1
        counters.handle_ms.append(self.now_ms - task.assigned_ms)
        self._close_task(task)
        self._events.append(TaskCompleted(task.snapshot()))
        self._serve_worker(worker)

    # == steps and exceptions ==================================================================

    def _arrival(self, queue_id: str) -> Arrival:
        """Where a task arriving at a queue ends up: the after-hours action of a closed queue
        and the queue-length rules may move it on (validation keeps these chains acyclic) or
        cancel it. Pure: nothing changes until the task is created."""
        if queue_id not in self._queues_with_arrival_rules:
            return Arrival(queue_id, None, 0)
        raised = 0
        visited: list[str] = []
        while True:
            assert queue_id not in visited, f"overflow cycle through {visited}"
            visited.append(queue_id)
            queue = self.queues[queue_id]
            action = None
            origin = "exception"
            if (
                queue.business_hours is not None
                and queue.after_hours_action is not None
                and not is_open(queue.business_hours, self.now_ms)
            ):
                action = queue.after_hours_action
                origin = "after_hours"
            else:
                depth = self.waiting.queue_depth(queue_id)
                for rule in queue.exception_rules:
                    if rule.trigger is TriggerKind.QUEUE_LENGTH and depth >= rule.queue_length:
                        if rule.action.kind is ActionKind.RAISE_PRIORITY:
                            raised += rule.action.priority_delta
                        else:
                            action = rule.action
                            break
            if action is None:
                return Arrival(queue_id, None, raised)
            if action.kind is ActionKind.CANCEL:
                return Arrival(queue_id, action.reason or origin, raised, origin)
            if self._queue_full(self.queues[action.queue_id]):
                return Arrival(queue_id, None, raised)  # a full overflow: stay
            queue_id = action.queue_id

    def _start_route(self, task: TaskRecord) -> None:
        """Puts a new (or moved) task on the first step of its route and routes it."""
        self._enter_step(task, 0, started_ms=self.now_ms)
        self._schedule_wait_timer(task)
        self._route_task(task)

    def _steps(self, task: TaskRecord) -> tuple[RoutingStep, ...]:
        """The task's steps: a wait for its known agent when it asks for one, then its route's."""
        if task.route_index == NO_ROUTE:
            steps: tuple[RoutingStep, ...] = (OPEN_STEP,)
        else:
            steps = route_steps(self._compiled[task.spec.policy_id].route(task.route_index))
        if task.known_agent_id and task.spec.known_agent_wait_s > 0:
            wait = RoutingStep(timeout_s=task.spec.known_agent_wait_s, known_agent=True)
            steps = (wait, *steps)
        return steps

    def _enter_step(self, task: TaskRecord, index: int, *, started_ms: int) -> None:
        """Moves a task not waiting in the index to step `index` (or the first later step not
        skipped; the last step is never skipped) and derives its routing from it."""
        steps = self._steps(task)
        while index < len(steps) - 1 and self._skips(task, steps[index]):
            started_ms = self.now_ms
            index += 1
        step = steps[index]
        task.step_index = index
        timeout_ms = round(step.timeout_s * 1000)
        task.step_due_ms = started_ms + timeout_ms if timeout_ms > 0 else 0
        if task.step_due_ms:
            self._add_timer(task.step_due_ms, "step", task.task_id)
        self._derive(task, step)

    def _skips(self, task: TaskRecord, step: RoutingStep) -> bool:
        if step.known_agent and task.known_agent_id not in self.workers:
            return True
        if not step.skip_if_no_workers:
            return False
        routing = self._routing_for(task, step)
        members = self._members(routing.target)
        candidates = (
            members[: self.columns.row_count] & self.columns.available[: self.columns.row_count]
        )
        for col, level in routing.requirement.required:
            candidates &= self.columns.skills[: self.columns.row_count, col] >= level
        return not candidates.any()

    def _derive(self, task: TaskRecord, step: RoutingStep | None = None) -> None:
        """Recomputes what the task's step makes of it: priority, requirement, target."""
        if step is None:
            step = self._steps(task)[task.step_index]
        task.priority = task.spec.priority + task.priority_raised + step.priority_delta
        self._routing[task.task_id] = self._routing_for(task, step)

    def _routing_for(self, task: TaskRecord, step: RoutingStep) -> TaskRouting:
        pinned = NO_PIN
        if step.known_agent:
            agent = self.workers.get(task.known_agent_id)
            pinned = agent.row if agent is not None else PINNED_TO_NOBODY
        key = (task.queue_id, step.worker_expression, pinned)
        target = self._targets.get(key)
        if target is None:
            queue = self.queues[task.queue_id]
            target = self._targets[key] = GroupTarget(
                queue_id=queue.queue_id,
                queue_slot=self.membership.index_of(queue.queue_id),
                expression_slot=self.membership.index_of(EVERYONE + step.worker_expression),
                pinned_row=pinned,
                aging_per_ms=queue.priority_aging_per_min / 60_000,
                batched=queue.assignment_window_s > 0,
            )
        return TaskRouting(self._requirement(task.spec, step.required_skills), target)

    def _step_timed_out(self, task: TaskRecord) -> None:
        steps = self._steps(task)
        waiting = task.task_id in self.waiting
        if task.step_index + 1 >= len(steps):
            task.step_due_ms = 0
            self._exception(task, TriggerKind.STEPS_EXHAUSTED)
            return
        if waiting:
            self.waiting.remove(task.task_id)
        self._enter_step(task, task.step_index + 1, started_ms=task.step_due_ms)
        task.updated_ms = self.now_ms
        if waiting:
            self._route_task(task)

    def _reroute_by_policy(self, task: TaskRecord) -> None:
        """Routes a task by its policy as it is now: the first matching filter, and the step
        its wait since routing gives. A waiting task (already out of the index) is routed at
        once; a task being offered keeps its offers and is routed so if they end."""
        index = self._compiled_route_index(task.spec.policy_id, task.spec)
        queue_id = self._compiled[task.spec.policy_id].route(index).queue_id
        if queue_id != task.queue_id:
            status = task.status
            # Out of its status and back: moves the status count (and the index) with the task.
            self._set_status(task, TaskStatus.PENDING)
            task.queue_id = queue_id
            task.queued_ms = self.now_ms
            task.wait_rules_fired = 0
            self._set_status(task, status)
        task.route_index = index
        steps = self._steps(task)
        at = step_at(steps, task.route_started_ms, self.now_ms)
        self._enter_step(task, at.index, started_ms=at.started_ms)
        self._schedule_wait_timer(task)
        if task.status is TaskStatus.PENDING:
            self._route_task(task)

    def _exception(self, task: TaskRecord, trigger: TriggerKind) -> None:
        """Applies the first rule of the task's queue with this trigger, if any."""
        for rule in self.queues[task.queue_id].exception_rules:
            if rule.trigger is trigger:
                self._apply_action(task, rule.action)
                return

    def _apply_action(self, task: TaskRecord, action: QueueAction) -> None:
        """An exception action on a pending task (a task being offered is left alone). The
        task may be out of the index (back from an offer, about to be routed)."""
        if task.status is not TaskStatus.PENDING:
            return
        if action.kind is ActionKind.CANCEL:
            self._cancel(task, action.reason or "exception", "exception")
            return
        if task.task_id in self.waiting:
            self.waiting.remove(task.task_id)
        task.updated_ms = self.now_ms
        if action.kind is ActionKind.RAISE_PRIORITY:
            task.priority_raised += action.priority_delta
            self._derive(task)
            self._route_task(task)
            return
        arrival = self._arrival(action.queue_id)
        if arrival.cancel_reason is None and self._queue_full(self.queues[arrival.queue_id]):
            self._enqueue(task)  # the overflow is full: the task stays where it is
            return
        task.queue_id = arrival.queue_id
        self.tasks.changed(task)
        task.queued_ms = self.now_ms
        task.route_index = NO_ROUTE
        task.known_agent_id = ""
        task.wait_rules_fired = 0
        task.priority_raised += arrival.priority_raised
        if arrival.cancel_reason is not None:
            self._derive(task)
            self._cancel(task, arrival.cancel_reason, arrival.cancel_origin)
        else:
            self._start_route(task)

    def _next_wait_due_ms(self, task: TaskRecord) -> int | None:
        rules = self._wait_rules[task.queue_id]
        if not rules or task.wait_rules_fired >= len(rules):
            return None
        return task.queued_ms + round(rules[task.wait_rules_fired].wait_s * 1000)

    def _schedule_wait_timer(self, task: TaskRecord) -> None:
        due_ms = self._next_wait_due_ms(task)
        if due_ms is not None:
            self._add_timer(max(due_ms, self.now_ms), "wait", task.task_id)

    def _fire_wait_rules(self, task: TaskRecord) -> None:
        """Fires the wait-time rules a pending task is due (one at a time, in threshold order,
        until one moves or cancels it), then schedules the next."""
        while task.status is TaskStatus.PENDING:
            due_ms = self._next_wait_due_ms(task)
            if due_ms is None or due_ms > self.now_ms:
                break
            queue_id = task.queue_id
            rule = self._wait_rules[queue_id][task.wait_rules_fired]
            task.wait_rules_fired += 1
            self._apply_action(task, rule.action)
            if task.queue_id != queue_id:
                return  # moved: its new queue's rules were scheduled on arrival
        if task.status is TaskStatus.PENDING:
            self._schedule_wait_timer(task)

    # == matching ==============================================================================

    def _members(self, target: GroupTarget) -> npt.NDArray[np.bool_]:
        """Who may take tasks of this target (availability and requirement aside)."""
        matrix = self.membership.matrix
        members: npt.NDArray[np.bool_] = matrix[target.queue_slot]
        if target.expression_slot != self._everyone_slot:
            members = members & matrix[target.expression_slot]
        if target.pinned_row != NO_PIN:
            pinned = np.zeros_like(members)
            if target.pinned_row >= 0:
                pinned[target.pinned_row] = members[target.pinned_row]
            members = pinned
        return members

    def _route_task(self, task: TaskRecord) -> None:
        """Offers a pending task to the best eligible worker (or the best few, for a queue that
        offers to several at once), or makes it wait."""
        queue = self.queues[task.queue_id]
        routing = self._routing[task.task_id]
        if queue.assignment_window_s > 0:
            self._enqueue(task)
            self._schedule_round(queue.queue_id)
            return
        rows = best_rows(
            self.columns,
            routing.requirement,
            self._members(routing.target),
            queue.weights,
            need=empathy_need(task.spec.sentiment, task.repeat_contacts),
            excluded_rows=self._rows_of(task.excluded_worker_ids),
            affinity_rows=self._affinity_rows(task),
            now_ms=self.now_ms,
            count=queue.offer_workers_max,
        )
        if not rows:
            self._enqueue(task)
        for row in rows:
            self._offer(task, self.workers[self._worker_at_row[row]])

    def _serve_worker(self, worker: WorkerRecord) -> None:
        """Offers a worker with free capacity the waiting tasks it should take next."""
        row = worker.row
        worker_id = worker.worker_id
        open_tasks = self.tasks.open
        while self.columns.ready[row].any():
            task_id = self.waiting.best_task_for(
                row,
                self.columns,
                self.membership,
                lambda task_id: worker_id in open_tasks[task_id].excluded_worker_ids,
                self.now_ms,
            )
            if task_id is None:
                break
            self.waiting.remove(task_id)
            self._offer(open_tasks[task_id], worker)
        if self._batched_queues:
            self._serve_rounds(worker)

    def _serve_rounds(self, worker: WorkerRecord) -> None:
        """A worker still free may serve a batch-assigned queue: its next round will tell."""
        if not self.columns.ready[worker.row].any():
            return
        for queue_id in sorted(self._batched_queues):
            if self.waiting.queue_depth(queue_id) and self.membership.members(queue_id)[worker.row]:
                self._schedule_round(queue_id)

    def _enqueue(self, task: TaskRecord) -> None:
        self.waiting.add(self._waiting_entry(task))

    def _enqueue_all(self, tasks: Iterable[TaskRecord]) -> None:
        """Enqueues many tasks into an empty waiting index at once (a snapshot restore)."""
        self.waiting.add_all(self._waiting_entry(task) for task in tasks)

    def _waiting_entry(self, task: TaskRecord) -> WaitingEntry:
        routing = self._routing[task.task_id]
        queue = self.queues[task.queue_id]
        key = order_key(
            priority=task.priority,
            created_ms=task.created_ms,
            seq=task.seq,
            task_id=task.task_id,
            order=queue.order,
            aging_per_ms=routing.target.aging_per_ms,
        )
        return WaitingEntry(
            task.task_id, routing.target, routing.requirement, key, task.created_ms, task.seq
        )

    # == batch assignment ======================================================================

    def _schedule_round(self, queue_id: str) -> None:
        queue = self.queues[queue_id]
        if queue.assignment_window_s <= 0 or queue_id in self._round_due_ms:
            return
        if not self.waiting.queue_depth(queue_id):
            return
        due_ms = self.now_ms + round(queue.assignment_window_s * 1000)
        self._round_due_ms[queue_id] = due_ms
        self._add_timer(due_ms, "round", queue_id)

    def _run_round(self, queue_id: str) -> None:
        """Assigns the queue's longest-waiting tasks to its free workers as an assignment
        problem: tier by tier of priority (a higher tier is served first), the tasks that get a
        worker are the first in queue order, and who serves whom maximises the total score."""
        queue = self.queues[queue_id]
        task_ids = self.waiting.first_task_ids(queue_id, ASSIGNMENT_ROUND_TASKS_MAX)
        tiers: dict[int, list[TaskRecord]] = {}
        for task_id in task_ids:
            task = self.tasks.open[task_id]
            tiers.setdefault(task.priority, []).append(task)
        for priority in sorted(tiers, reverse=True):
            pending = tiers[priority]
            while pending:
                pending = self._assign_tier(queue, pending)
        if len(task_ids) == ASSIGNMENT_ROUND_TASKS_MAX:
            self._schedule_round(queue_id)

    def _assign_tier(self, queue: QueueConfig, tasks: list[TaskRecord]) -> list[TaskRecord]:
        """One assignment of tasks of one priority to free workers (one task each); returns
        the tasks left that still have an eligible free worker (multi-task workers may take
        another), or [] when no pair was made."""
        eligible = []
        for task in tasks:
            routing = self._routing[task.task_id]
            rows = eligible_rows(
                self.columns, routing.requirement, self._members(routing.target),
                self._rows_of(task.excluded_worker_ids),
            )  # fmt: skip
            if rows.size:
                eligible.append((task, routing, rows))
        if not eligible:
            return []
        columns = sorted(set().union(*(rows.tolist() for _, _, rows in eligible)))
        eligible = eligible[: len(columns)]  # the first in order get the workers
        column_of = {row: j for j, row in enumerate(columns)}
        matrix = np.full((len(eligible), len(columns)), INELIGIBLE)
        for i, (task, routing, rows) in enumerate(eligible):
            need = empathy_need(task.spec.sentiment, task.repeat_contacts)
            row_scores = scores(
                self.columns, rows, routing.requirement, need, queue.weights,
                self._affinity_rows(task), self.now_ms,
            )  # fmt: skip
            matrix[i, [column_of[r] for r in rows.tolist()]] = row_scores
        pairs = best_pairs(matrix)
        for i, j in pairs:
            task = eligible[i][0]
            self.waiting.remove(task.task_id)
            self._offer(task, self.workers[self._worker_at_row[columns[j]]])
        if not pairs:
            return []
        return [task for task, _, _ in eligible if task.status is TaskStatus.PENDING]

    # == offers ================================================================================

    def _offer(self, task: TaskRecord, worker: WorkerRecord) -> None:
        queue = self.queues[task.queue_id]
        self._reservation_seq += 1
        reservation = Reservation(
            reservation_id=f"res-{self._reservation_seq}",
            task_id=task.task_id,
            worker_id=worker.worker_id,
            created_ms=self.now_ms,
            expires_ms=self.now_ms + round(queue.reservation_timeout_s * 1000),
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
            self._set_status(task, TaskStatus.RESERVED)
        else:
            self.tasks.changed(task)  # its worker
        self._hold(worker, task)
        self._add_timer(reservation.expires_ms, "offer", reservation.reservation_id)
        self.counters[queue.queue_id].offered_total += 1
        self._events.append(OfferCreated(reservation.snapshot(), task.snapshot()))

    def _end_offer(
        self, reservation: Reservation, status: ReservationStatus, *, exclude: bool
    ) -> None:
        """Ends a pending offer without acceptance. When it was the task's last, the task is
        routed again; the worker, if still available, takes other work."""
        task = self.tasks.open[reservation.task_id]
        self._close_reservation(reservation, status, exclude=exclude)
        if not task.offer_ids:
            self._set_status(task, TaskStatus.PENDING)
            self._fire_wait_rules(task)  # those that fell due during the offer
            if task.status is TaskStatus.PENDING and task.task_id not in self.waiting:
                self._route_task(task)
        worker = self.workers.get(reservation.worker_id)
        if worker is not None:
            self._serve_worker(worker)

    def _close_reservation(
        self, reservation: Reservation, status: ReservationStatus, *, exclude: bool
    ) -> None:
        task = self.tasks.open[reservation.task_id]
        reservation.status = status
        self._retire_reservation(reservation)
        worker = self.workers.get(reservation.worker_id)
        if worker is not None:
            self._release(worker, task)
        task.offer_ids = tuple(r for r in task.offer_ids if r != reservation.reservation_id)
        if len(task.offer_ids) == 1:
            task.reservation_id = task.offer_ids[0]
            task.worker_id = self.reservations[task.reservation_id].worker_id
        else:
            task.worker_id = ""
            task.reservation_id = ""
        if exclude:
            task.excluded_worker_ids = task.excluded_worker_ids | {reservation.worker_id}
        task.updated_ms = self.now_ms
        self.tasks.changed(task)  # its worker
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
        by_status = self.counters[task.queue_id].by_status
        for old_or_new, step in ((task.status, -1), (status, 1)):
            if old_or_new in (TaskStatus.RESERVED, TaskStatus.ASSIGNED, TaskStatus.WRAPPING):
                by_status[old_or_new] = by_status.get(old_or_new, 0) + step
        task.status = status
        task.updated_ms = self.now_ms
        self.tasks.changed(task)

    def _close_task(self, task: TaskRecord) -> None:
        """Forgets what only open tasks need, and the oldest closed tasks past the limit."""
        self._routing.pop(task.task_id, None)
        task.offer_ids = ()
        self._timer_ended()  # its time-to-live
        self.tasks.close(task)

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
        return _found("task_id", "task", self.tasks, task_id)

    def _worker(self, worker_id: str) -> WorkerRecord:
        return _found("worker_id", "worker", self.workers, worker_id)

    def _queue(self, queue_id: str) -> QueueConfig:
        return _found("queue_id", "queue", self.queues, queue_id)

    def get_task(self, task_id: str) -> TaskRecord:
        """The task (a closed task's is a decoded copy)."""
        return self._task(task_id)

    def copy_task(self, task_id: str) -> TaskCopy:
        """A copy of the task that later commands do not change, with its place in its queue."""
        check_id("task_id", task_id)
        copy = self._copy(task_id, {})
        if copy is None:
            raise NotFound(f"no task {task_id!r}")
        return copy

    def list_tasks(
        self, task_filter: TaskFilter, *, after_seq: int, count_max: int, scan_max: int
    ) -> TaskPage:
        """Copies of up to `count_max` tasks created after `after_seq` that match, in creation
        order, examining at most `scan_max` candidates (so that a listing costs the same at any
        number of tasks); the page's `resume_after_seq` says where the next one starts."""
        scan = self.tasks.index.scan(
            task_filter, after_seq=after_seq, count_max=count_max, scan_max=scan_max
        )
        rates: dict[tuple[str, str], OfferRate | None] = {}  # read once per queue and channel
        copies = [self._copy(keys[TASK_ID], rates) for keys in scan.found]
        return TaskPage([copy for copy in copies if copy is not None], scan.resume_after_seq)

    def _copy(
        self, task_id: str, rates: dict[tuple[str, str], OfferRate | None]
    ) -> TaskCopy | None:
        task = self.tasks.open.get(task_id)
        if task is None:
            closed = self.tasks.closed.get(task_id)
            if closed is None:
                return None
            keys, data = closed
            return TaskCopy(keys[SEQ], None, data)
        if task_id not in self.waiting:
            return TaskCopy(task.seq, task.snapshot(), estimated_wait_ms=0)
        key = (task.queue_id, task.spec.channel)
        if key not in rates:
            rates[key] = self._offer_rate(task)
        ahead = self.waiting.position(task_id)
        return TaskCopy(
            task.seq,
            task.snapshot(),
            queue_position=ahead,
            estimated_wait_ms=_wait_ms(ahead, rates[key]),
        )

    def get_worker(self, worker_id: str) -> WorkerRecord:
        return self._worker(worker_id)

    def get_queue(self, queue_id: str) -> QueueConfig:
        return self._queue(queue_id)

    def get_policy(self, policy_id: str) -> RoutingPolicy:
        return _found("policy_id", "routing policy", self.policies, policy_id)

    def queue_position(self, task_id: str) -> int:
        """0-based position of a pending task in its queue (0 when not waiting)."""
        return self.waiting.position(task_id) if task_id in self.waiting else 0

    def estimated_wait_ms(self, task_id: str) -> int | None:
        """Time until the task is offered: 0 once it has been, None for a closed task or when
        nothing is known yet. A waiting task at position k (k tasks ahead of it) is offered once
        k + 1 workers' slots have come free; with the queue's staffed slots s (the capacity on
        the task's channel of its members who are available) each busy for the mean handle
        time h (assignment to the end of wrap-up, over the latest completions), slots come free
        at s / h, so the estimate is (k + 1) x h / s: the M/M/c expectation once every agent is
        busy. Before any completion, it falls back on the observed rate of assignments."""
        task = self.tasks.open.get(task_id)
        if task is None:
            return None
        if task_id not in self.waiting:
            return 0
        return _wait_ms(self.waiting.position(task_id), self._offer_rate(task))

    def _offer_rate(self, task: TaskRecord) -> OfferRate | None:
        """How fast the task's queue gets tasks of its channel offered (see
        `estimated_wait_ms`), or None when nothing is known yet."""
        counters = self.counters[task.queue_id]
        slots = self._staffed_slots(task)
        if counters.handle_ms and slots:
            return OfferRate(sum(counters.handle_ms) / len(counters.handle_ms), slots)
        samples = counters.assigned_ms
        if len(samples) < 2 or samples[-1] <= samples[0]:
            return None
        return OfferRate((samples[-1] - samples[0]) / (len(samples) - 1), 1)

    def _staffed_slots(self, task: TaskRecord) -> int:
        """Capacity on the task's channel of the queue's available members (cached until who
        is available or who belongs changes)."""
        channel_col = self._routing[task.task_id].requirement.channel_col
        key = (task.queue_id, channel_col)
        cached = self._staffing_cache.get(key)
        if cached is not None and cached[0] == self._staffing_version:
            return cached[1]
        rows = self.columns.row_count
        staffed = self.membership.members(task.queue_id)[:rows] & self.columns.available[:rows]
        slots = int(self.columns.capacity[:rows, channel_col][staffed].sum())
        if len(self._staffing_cache) > 4 * len(self.queues) + 64:
            self._staffing_cache.clear()
        self._staffing_cache[key] = (self._staffing_version, slots)
        return slots

    def queue_stats(self, queue_id: str) -> QueueStats:
        counters = self.counters[queue_id]
        oldest = self.waiting.oldest_created_ms(queue_id)
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
            eligible_workers=self.membership.count(self.membership.index_of(queue_id)),
        )

    def list_workers(
        self, *, activity: str, after_worker_id: str, count_max: int
    ) -> WorkerPage:
        """Copies of up to `count_max` workers after `after_worker_id` in id order (of one
        activity unless it is empty): O(log n + count_max)."""
        worker_ids, more = self.worker_index.after(
            after_worker_id, activity=activity, count_max=count_max
        )
        workers = [self.workers[worker_id] for worker_id in worker_ids]
        return WorkerPage(
            [WorkerCopy(w.snapshot(), self.activities[w.activity]) for w in workers], more
        )

    def workers_by_activity(self) -> dict[str, int]:
        return {activity: self.worker_index.count(activity) for activity in self.activities}

    def check_invariants(self) -> None:
        """Raises AssertionError when the state breaks a rule that must always hold: no worker
        over capacity, no task held by two workers, columns and indexes agree with records, and
        no waiting task has an eligible free worker (matching left nothing undone). O(state):
        for tests."""
        holders: dict[str, list[str]] = {}
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
                holders.setdefault(task_id, []).append(worker.worker_id)
        for task in self.tasks.values():
            held_by = sorted(holders.get(task.task_id, []))
            if task.status is TaskStatus.RESERVED:
                offered = sorted(self.reservations[r].worker_id for r in task.offer_ids)
                assert offered and held_by == offered, f"{task.task_id} offers {offered} {held_by}"
            elif task.status in (TaskStatus.ASSIGNED, TaskStatus.WRAPPING):
                assert held_by == [task.worker_id], f"{task.task_id} held by {held_by}"
            else:
                assert not held_by, f"{task.task_id} {task.status} held by {held_by}"
                assert not task.offer_ids, f"{task.task_id} {task.status} has offers"
            assert (task.status is TaskStatus.PENDING) == (task.task_id in self.waiting)
        self.tasks.check()
        self.worker_index.check((w.worker_id, w.activity) for w in self.workers.values())
        self.membership.check()
        for queue_id, queue in self.queues.items():
            if queue_id in self._round_due_ms:
                continue  # its free workers wait for the round
            for task_id in self.waiting.task_ids(queue_id):
                task = self.tasks.open[task_id]
                routing = self._routing[task_id]
                assert self.waiting.group_target(task_id) == routing.target, f"{task_id} target"
                free_row = best_row(
                    self.columns,
                    routing.requirement,
                    self._members(routing.target),
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
        """A hash of the whole routing state: equal states give equal digests, whether live,
        replayed from the journal or restored from a snapshot. It reads everything (about a
        second at 100k tasks of 8 KB attributes): take it off the writer's loop."""
        digest = hashlib.sha256()
        encode = _canonical.encode
        for name, part in self.digest_state().items():
            if isinstance(part, list):  # in slices: never the whole state in one buffer
                digest.update(encode([name, len(part)]))
                for start in range(0, len(part), _DIGEST_SLICE_ITEMS):
                    digest.update(encode(part[start : start + _DIGEST_SLICE_ITEMS]))
            else:
                digest.update(encode([name, part]))
        return digest.hexdigest()

    def digest_state(self) -> dict[str, Any]:
        """The state that `digest` hashes, part by part (to see which part two states differ
        in). Values are the records themselves: the digest encodes them with sorted sets and
        dict keys, so that neither hash seeds nor insertion orders that do not matter show."""
        # The clock is not state: a router that idled to a later time holds the same state.
        return {
            "seqs": [self._task_seq, self._reservation_seq, self._timer_seq],
            "channels": self.channels,
            "activities": self.activities,
            "queues": list(self.queues.values()),
            "policies": list(self.policies.values()),
            "rounds": sorted(self._round_due_ms.items()),
            "workers": [
                [w.profile, w.row, w.activity, w.idle_since_ms, w.load_by_channel, list(w.task_ids)]
                for w in self.workers.values()
            ],
            "open_tasks": list(self.tasks.open.values()),
            # Closed tasks are kept in that same deterministic encoding: their bytes are hashed
            # as they are, in the order they closed (the order they are forgotten in).
            "closed_tasks": [data for _, data in self.tasks.closed.values()],
            "reservations": list(self.reservations.values()),
            "waiting": {q: self.waiting.task_ids(q) for q in self.queues},
            "timers": sorted(t for t in self._timers if self._timer_live(t)),
            "customers": [[c, h] for c, h in self._customers.items()],
            "request_ids": [[r, t, f] for r, (t, f) in self._request_ids.items()],
            "counters": [
                [
                    q,
                    c.created_total,
                    c.offered_total,
                    c.assigned_total,
                    c.completed_total,
                    c.canceled_total,
                    list(c.assigned_ms),
                    list(c.handle_ms),
                ]
                for q, c in self.counters.items()
            ],
        }


def payload_fingerprint(spec: TaskSpec) -> bytes:
    """16 bytes that tell two task payloads apart: a hash of their canonical encoding. Equal
    specs as the journal gives them (`codec.normalize`) have equal fingerprints."""
    return hashlib.blake2b(_canonical.encode(spec), digest_size=16).digest()


def _wait_ms(ahead: int, rate: OfferRate | None) -> int | None:
    """(k + 1) x h / s for a task with k tasks ahead of it (see `Engine.estimated_wait_ms`)."""
    return None if rate is None else round((ahead + 1) * rate.ms / rate.slots)


def wait_rules_of(queue: QueueConfig) -> tuple[ExceptionRule, ...]:
    """A queue's wait-time rules in the order they fire (by threshold, then as given)."""
    return tuple(
        sorted(
            (r for r in queue.exception_rules if r.trigger is TriggerKind.WAIT_TIME),
            key=lambda rule: rule.wait_s,
        )
    )


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


def _found(field: str, kind: str, table: Mapping[str, _Value], key: str) -> _Value:
    """The entry for `key`: a refused id is INVALID_ARGUMENT, an unknown one NOT_FOUND."""
    check_id(field, key)
    value = table.get(key)
    if value is None:
        raise NotFound(f"no {kind} {key!r}")
    return value


def _trim(mapping: OrderedDict[str, Any], size_max: int) -> None:
    while len(mapping) > size_max:
        mapping.popitem(last=False)
