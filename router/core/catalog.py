"""The workspace's configuration: channels, activities, queues and routing policies, and which
workers belong to each queue and to each worker expression of the policies' steps (the
membership rows). Changing a queue or a policy re-evaluates the tasks it governs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from router.core import commands as cmd
from router.core.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from router.core.events import Event, PolicyChanged, QueueChanged
from router.core.expressions import MATCH_ALL, Expression, ExpressionError, parse
from router.core.limits import (
    CHANNELS_MAX,
    POLICIES_MAX,
    QUEUE_DEPTH_MAX,
    QUEUES_MAX,
    TRANSFER_EXPRESSIONS_MAX,
)
from router.core.model import (
    DEFAULT_ACTIVITIES,
    DEFAULT_CHANNELS,
    NO_ROUTE,
    BusinessHours,
    ExceptionRule,
    QueueAction,
    QueueConfig,
    QueueOrder,
    RoutingPolicy,
    ScoringWeights,
    TaskRecord,
    TaskStatus,
    TriggerKind,
)
from router.core.policies import CompiledPolicy, policy_routes
from router.core.results import UpsertedPolicy, UpsertedQueue
from router.core.statistics import QueueCounters
from router.core.validation import (
    check_id,
    check_queue_references,
    move_targets,
    validate_policy,
    validate_queue,
)
from router.core.waiting import GroupTarget, QueueMembership

if TYPE_CHECKING:
    from router.core.lifecycle import TaskLifecycle
    from router.core.matching import Matching
    from router.core.roster import Roster
    from router.core.routing import Routing
    from router.core.statistics import Statistics

EVERYONE = "\x00"
"""The membership key of the row of every worker (steps without a worker expression)."""
_TRANSFER_ROW = "\x01transfer:"
"""The prefix of the membership keys of cold transfers' worker expressions: a bounded pool of
rows (`TRANSFER_EXPRESSIONS_MAX`), reused as expressions stop being needed, so that the
membership matrix does not grow with every expression a caller ever wrote."""
_TRANSFER_KEYS = tuple(f"{_TRANSFER_ROW}{n}" for n in range(TRANSFER_EXPRESSIONS_MAX))
_NOBODY = np.zeros(0, dtype=bool)
"""A membership row of no worker."""
_Value = TypeVar("_Value")


@dataclass(frozen=True, slots=True)
class CatalogShare:
    """The configuration's share of a snapshot."""

    channels: dict[str, str]
    activities: dict[str, bool]
    queues: list[QueueConfig]
    policies: list[RoutingPolicy]


class Catalog:
    """Channels, activities, queues, policies and the membership rows."""

    def __init__(self) -> None:
        self.channels: dict[str, str] = {name: name for name in DEFAULT_CHANNELS}
        self.activities: dict[str, bool] = dict(DEFAULT_ACTIVITIES)
        self.queues: dict[str, QueueConfig] = {}
        self._queue_expressions: dict[str, Expression] = {}
        self.wait_rules: dict[str, tuple[ExceptionRule, ...]] = {}
        """Per queue, its wait-time rules by threshold (the order in which they fire)."""
        self.policies: dict[str, RoutingPolicy] = {}
        self.compiled: dict[str, CompiledPolicy] = {}
        self._step_expressions: dict[str, Expression] = {EVERYONE: MATCH_ALL}
        """Membership key -> expression, for the worker expressions of every policy's steps."""
        self.batched_queues: set[str] = set()
        """Queues assigned in rounds (`assignment_window_s` > 0)."""
        self.queues_with_arrival_rules: set[str] = set()
        """Queues with business hours or queue-length rules (arrivals there are checked)."""
        self._transfer_rows: dict[str, _TransferRow] = {}
        """Worker expression -> its pooled row, for the expressions that tasks waiting after a
        cold transfer to a requirement are held to (derived: counted from the conversations)."""
        self._targets: dict[tuple[str, str, int, bool], GroupTarget] = {}
        """GroupTarget by (queue, worker expression, pinned row, a transfer's expression),
        rebuilt on change."""
        self.membership = QueueMembership()
        self.everyone_slot = self.membership.index_of(EVERYONE)

    def connect(
        self,
        *,
        events: list[Event],
        roster: Roster,
        lifecycle: TaskLifecycle,
        routing: Routing,
        matching: Matching,
        statistics: Statistics,
    ) -> None:
        self._events = events
        self._roster = roster
        self._lifecycle = lifecycle
        self._routing = routing
        self._matching = matching
        self._stats = statistics

    # -- reads ------------------------------------------------------------------------------

    def queue(self, queue_id: str) -> QueueConfig:
        return found("queue_id", "queue", self.queues, queue_id)

    def policy(self, policy_id: str) -> RoutingPolicy:
        return found("policy_id", "routing policy", self.policies, policy_id)

    def queue_full(self, queue: QueueConfig) -> bool:
        depth = self._matching.waiting.queue_depth(queue.queue_id)
        return depth >= (queue.depth_max or QUEUE_DEPTH_MAX)

    def target(
        self, queue_id: str, worker_expression: str, pinned: int, *, transfer: bool = False
    ) -> GroupTarget:
        """The waiting-index target of a queue's tasks in a step (shared, cached); with
        `transfer`, the expression is a cold transfer's (`use_transfer_expression`)."""
        key = (queue_id, worker_expression, pinned, transfer)
        target = self._targets.get(key)
        if target is None:
            queue = self.queues[queue_id]
            if transfer:
                slot = self._transfer_rows[worker_expression].slot
            else:
                slot = self.membership.index_of(EVERYONE + worker_expression)
            target = self._targets[key] = GroupTarget(
                queue_id=queue.queue_id,
                queue_slot=self.membership.index_of(queue.queue_id),
                expression_slot=slot,
                pinned_row=pinned,
                aging_per_ms=queue.priority_aging_per_min / 60_000,
                batched=queue.assignment_window_s > 0,
            )
        return target

    def membership_expressions(self) -> Iterator[tuple[str, Expression]]:
        """Every membership row's key and expression: the queues', then the steps'."""
        yield from self._queue_expressions.items()
        yield from self._step_expressions.items()
        for row in self._transfer_rows.values():
            yield row.key, row.expression

    # -- cold transfers' worker expressions -------------------------------------------------

    def check_transfer_expression(self, source: str) -> Expression:
        """The parsed expression of a cold transfer's target, refused (changing nothing) when
        it does not parse or would need a row past `TRANSFER_EXPRESSIONS_MAX`."""
        try:
            expression = parse(source)
        except ExpressionError as error:
            raise InvalidArgument("target.worker_expression", str(error)) from None
        if source not in self._transfer_rows and (
            len(self._transfer_rows) >= TRANSFER_EXPRESSIONS_MAX
        ):
            raise ResourceExhausted(
                f"tasks wait for {TRANSFER_EXPRESSIONS_MAX} different worker expressions after "
                "cold transfers, the limit; reuse one of them, or transfer to a queue"
            )
        return expression

    def use_transfer_expression(self, source: str, expression: Expression) -> None:
        """One more task is held to a cold transfer's worker expression: its row is evaluated
        when it is the first. Nobody waits on a new row yet, so nobody is served."""
        row = self._transfer_rows.get(source)
        if row is None:
            used = {r.key for r in self._transfer_rows.values()}
            key = next(key for key in _TRANSFER_KEYS if key not in used)
            row = self._transfer_rows[source] = _TransferRow(
                key, self.membership.index_of(key), expression
            )
            self.membership.ensure_rows(self._roster.columns.row_count)
            self.membership.set_row(row.slot, self._roster.evaluate(expression))
        row.uses += 1

    def release_transfer_expression(self, source: str) -> None:
        """A task is no longer held to a cold transfer's worker expression (assigned, closed):
        the last one lets its row go back to the pool."""
        row = self._transfer_rows[source]
        row.uses -= 1
        if not row.uses:
            del self._transfer_rows[source]
            self.membership.set_row(row.slot, _NOBODY)
            self._targets.clear()  # the slot may serve another expression next

    def transfer_expression_uses(self) -> dict[str, int]:
        """How many tasks each cold transfer's expression holds (for the invariants)."""
        return {source: row.uses for source, row in self._transfer_rows.items()}

    # -- commands ---------------------------------------------------------------------------

    def upsert_channel(self, command: cmd.UpsertChannel) -> str:
        """Defines or renames a channel; returns the display name it now has."""
        check_id("channel.channel_id", command.channel_id)
        if command.channel_id not in self.channels and len(self.channels) >= CHANNELS_MAX:
            raise ResourceExhausted(f"a workspace may define at most {CHANNELS_MAX} channels")
        display_name = command.display_name or command.channel_id
        self.channels[command.channel_id] = display_name
        self._roster.columns.channel_col(command.channel_id)
        return display_name

    def upsert_activity(self, command: cmd.UpsertActivity) -> str:
        check_id("activity.activity_id", command.activity_id)
        was_available = self.activities.get(command.activity_id)
        self.activities[command.activity_id] = command.available
        if was_available is not None and was_available != command.available:
            for worker in list(self._roster.workers.values()):
                if worker.activity == command.activity_id:
                    self._roster.availability_changed(worker, was_available)
        return command.activity_id

    def upsert_queue(self, command: cmd.UpsertQueue) -> UpsertedQueue:
        """Creates or replaces a queue. The tasks already waiting in it are re-evaluated under
        the new configuration: reordered, their exception rules applied afresh (as if the new
        rules had applied all along), and offered to the workers who may now take them."""
        queue = command.queue
        validate_queue(queue)
        created = queue.queue_id not in self.queues
        if created and len(self.queues) >= QUEUES_MAX:
            raise ResourceExhausted(f"a workspace may define at most {QUEUES_MAX} queues")
        check_queue_references(queue, self.queues)
        expression = parse_target(queue.target_expression)
        previous = self.queues.get(queue.queue_id)
        self.membership.ensure_rows(self._roster.columns.row_count)
        members = self._roster.evaluate(expression)
        self.queues[queue.queue_id] = queue
        self._queue_expressions[queue.queue_id] = expression
        self._index_queue(queue)
        self._stats.counters.setdefault(queue.queue_id, QueueCounters())
        self._set_members(queue.queue_id, members)
        if previous is not None and previous != queue:
            self._routing.reevaluate_queue(
                queue, rules_changed=previous.exception_rules != queue.exception_rules
            )
        self._events.append(QueueChanged(queue.queue_id))
        return UpsertedQueue(queue, created)

    def _index_queue(self, queue: QueueConfig) -> None:
        """Derived lookups of a queue's configuration (also rebuilt from a snapshot)."""
        queue_id = queue.queue_id
        self.wait_rules[queue_id] = wait_rules_of(queue)
        self.batched_queues.discard(queue_id)
        if queue.assignment_window_s > 0:
            self.batched_queues.add(queue_id)
        self.queues_with_arrival_rules.discard(queue_id)
        if queue.business_hours is not None or any(
            r.trigger is TriggerKind.QUEUE_LENGTH for r in queue.exception_rules
        ):
            self.queues_with_arrival_rules.add(queue_id)
        self._targets.clear()

    def _set_members(self, key: str, members: npt.NDArray[np.bool_]) -> None:
        """Writes a membership row and serves the workers who joined it."""
        slot = self.membership.index_of(key)
        before = self.membership.matrix[slot, : members.size].copy()
        self.membership.set_row(slot, members)
        self._stats.staffing_changed()
        roster = self._roster
        for row in np.flatnonzero(members & ~before).tolist():
            self._matching.serve_worker(roster.workers[roster.worker_at_row[row]])

    def delete_queue(self, command: cmd.DeleteQueue) -> None:
        queue_id = self.queue(command.queue_id).queue_id
        counters = self._stats.counters[queue_id]
        waiting = self._matching.waiting.queue_depth(queue_id)
        open_tasks = waiting + sum(counters.by_status.values())
        if open_tasks:
            raise FailedPrecondition(
                f"queue {queue_id!r} has {open_tasks} open tasks; cancel or complete them first"
            )
        for user in self._queue_users(queue_id):
            raise FailedPrecondition(f"queue {queue_id!r} is used by {user}")
        del self.queues[queue_id]
        del self._queue_expressions[queue_id]
        del self.wait_rules[queue_id]
        self.batched_queues.discard(queue_id)
        self.queues_with_arrival_rules.discard(queue_id)
        self._targets.clear()
        del self._stats.counters[queue_id]
        self._matching.forget_round(queue_id)
        self.membership.set_row(self.membership.index_of(queue_id), _NOBODY)
        self._events.append(QueueChanged(queue_id, deleted=True))

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

    def upsert_policy(self, command: cmd.UpsertRoutingPolicy) -> UpsertedPolicy:
        """Creates or replaces a routing policy. The waiting tasks it routed are routed again:
        their filter re-evaluated, and their step the one the new policy gives their wait."""
        policy = command.policy
        validate_policy(policy, self.queues)
        created = policy.policy_id not in self.policies
        if created and len(self.policies) >= POLICIES_MAX:
            raise ResourceExhausted(f"a workspace may define at most {POLICIES_MAX} policies")
        compiled = CompiledPolicy(policy)
        tasks = self._lifecycle.tasks
        routed: list[TaskRecord] = []  # waiting or offered: routed again
        held: list[TaskRecord] = []  # with an agent, or paused: kept within the new policy
        for task_id in tasks.index.open_of_policy(policy.policy_id):
            task = tasks.open[task_id]
            if task.route_index != NO_ROUTE:
                (routed if task.status in _ROUTED_STATUSES else held).append(task)
        for task in routed:  # refuse before changing anything
            if compiled.route_index(task.spec, self._routing.customer_document(task)) is None:
                raise FailedPrecondition(
                    f"task {task.task_id} is routed by policy {policy.policy_id!r} and would "
                    "match none of its filters; give the policy a default route"
                )
        self.policies[policy.policy_id] = policy
        self.compiled[policy.policy_id] = compiled
        self.refresh_step_expressions()
        waiting = self._matching.waiting
        for task in routed:
            if task.status is TaskStatus.PENDING:
                waiting.remove(task.task_id)
            self._routing.reroute_by_policy(task)
        for task in held:
            self._routing.keep_in_policy(task)
        self._events.append(PolicyChanged(policy.policy_id))
        return UpsertedPolicy(policy, created)

    def refresh_step_expressions(self) -> None:
        """Keeps a membership row for every worker expression the policies' steps use."""
        sources = set().union(*(c.worker_expressions() for c in self.compiled.values()))
        wanted = {EVERYONE + source for source in sources} | {EVERYONE}
        for key in list(self._step_expressions):
            if key not in wanted:
                del self._step_expressions[key]
                self.membership.set_row(self.membership.index_of(key), _NOBODY)
        self._targets.clear()
        self.membership.ensure_rows(self._roster.columns.row_count)
        for key in sorted(wanted - self._step_expressions.keys()):
            expression = parse(key[len(EVERYONE) :])
            self._step_expressions[key] = expression
            self._set_members(key, self._roster.evaluate(expression))

    def delete_policy(self, command: cmd.DeleteRoutingPolicy) -> None:
        self.policy(command.policy_id)
        users = self._lifecycle.tasks.index.open_count_of_policy(command.policy_id)
        if users:
            raise FailedPrecondition(
                f"routing policy {command.policy_id!r} routes {users} open tasks; it can be "
                "deleted once they are closed"
            )
        del self.policies[command.policy_id]
        del self.compiled[command.policy_id]
        self.refresh_step_expressions()
        self._events.append(PolicyChanged(command.policy_id, deleted=True))

    # -- snapshot and digest ----------------------------------------------------------------

    def save(self) -> CatalogShare:
        return CatalogShare(
            self.channels, self.activities, list(self.queues.values()), list(self.policies.values())
        )

    def restore(self, share: CatalogShare) -> None:
        """The configuration, before the workers: their membership is evaluated afterwards
        (`restore_membership`)."""
        self.channels = dict(share.channels)
        self.activities = dict(share.activities)
        for queue in share.queues:
            self.queues[queue.queue_id] = queue
            self._queue_expressions[queue.queue_id] = parse_target(queue.target_expression)
            self._index_queue(queue)
            self.membership.index_of(queue.queue_id)
        for policy in share.policies:
            self.policies[policy.policy_id] = policy
            self.compiled[policy.policy_id] = CompiledPolicy(policy)

    def restore_membership(self) -> None:
        """Every membership row, evaluated over the restored workers."""
        self.membership.ensure_rows(self._roster.columns.row_count)
        self.refresh_step_expressions()  # its rows, evaluated over every worker
        for key, expression in self.membership_expressions():
            members = self._roster.evaluate(expression)
            self.membership.set_row(self.membership.index_of(key), members)

    def digest_state(self) -> dict[str, Any]:
        return {
            "channels": self.channels,
            "activities": self.activities,
            "queues": [queue_digest(queue) for queue in self.queues.values()],
            "policies": list(self.policies.values()),
        }


@dataclass(slots=True)
class _TransferRow:
    """A pooled membership row held by a cold transfer's worker expression."""

    key: str
    slot: int
    expression: Expression
    uses: int = 0


_ROUTED_STATUSES = (TaskStatus.PENDING, TaskStatus.RESERVED)
"""The statuses of a task being routed (waiting, or offered): a policy change re-routes it."""


def wait_rules_of(queue: QueueConfig) -> tuple[ExceptionRule, ...]:
    """A queue's wait-time rules in the order they fire (by threshold, then as given)."""
    return tuple(
        sorted(
            (r for r in queue.exception_rules if r.trigger is TriggerKind.WAIT_TIME),
            key=lambda rule: rule.wait_s,
        )
    )


@dataclass(frozen=True, slots=True)
class _QueueBeforePause:
    """A queue's fields before `pause_max_s` and `pause_expiry_action` were added, in their
    order: what the digest encodes of a queue that leaves both at their defaults, so that an
    older router's state keeps the digest it had."""

    queue_id: str
    display_name: str
    target_expression: str
    weights: ScoringWeights
    reservation_timeout_s: float
    wrapup_s: float
    order: QueueOrder
    depth_max: int
    priority_aging_per_min: float
    exception_rules: tuple[ExceptionRule, ...]
    business_hours: BusinessHours | None
    after_hours_action: QueueAction | None
    offer_workers_max: int
    assignment_window_s: float


_PAUSE_DEFAULTS = QueueConfig("")


def queue_digest(queue: QueueConfig) -> QueueConfig | _QueueBeforePause:
    """The queue as the digest encodes it (see `_QueueBeforePause`)."""
    if (
        queue.pause_max_s != _PAUSE_DEFAULTS.pause_max_s
        or queue.pause_expiry_action is not _PAUSE_DEFAULTS.pause_expiry_action
    ):
        return queue
    return _QueueBeforePause(
        queue.queue_id, queue.display_name, queue.target_expression, queue.weights,
        queue.reservation_timeout_s, queue.wrapup_s, queue.order, queue.depth_max,
        queue.priority_aging_per_min, queue.exception_rules, queue.business_hours,
        queue.after_hours_action, queue.offer_workers_max, queue.assignment_window_s,
    )  # fmt: skip


def parse_target(source: str) -> Expression:
    if not source.strip():
        return MATCH_ALL
    try:
        return parse(source)
    except ExpressionError as error:
        raise InvalidArgument("queue.target_expression", str(error)) from None


def found(field: str, kind: str, table: Mapping[str, _Value], key: str) -> _Value:
    """The entry for `key`: a refused id is INVALID_ARGUMENT, an unknown one NOT_FOUND."""
    check_id(field, key)
    value = table.get(key)
    if value is None:
        raise NotFound(f"no {kind} {key!r}")
    return value
