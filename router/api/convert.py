"""Conversion between protobuf messages and the core's dataclasses. Only this module and the
servicers touch protobuf types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from google.protobuf import struct_pb2
from google.protobuf.message import Message

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import stats_service_pb2 as stats_pb
from router.core.conversation_model import (
    ConversationView,
    Participant,
    ParticipantRole,
    Transfer,
    TransferMode,
    TransferStatus,
    TransferTarget,
)
from router.core.engine import QueueStats
from router.core.errors import InvalidArgument
from router.core.limits import PAUSE_MAX_S_DEFAULT, RESERVATION_TIMEOUT_S_DEFAULT
from router.core.model import (
    ActionKind,
    BusinessHours,
    ExceptionRule,
    OpenHours,
    PauseExpiryAction,
    PolicyFilter,
    QueueAction,
    QueueConfig,
    QueueOrder,
    Reservation,
    ReservationStatus,
    Route,
    RoutingPolicy,
    RoutingStep,
    ScoringWeights,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    TriggerKind,
    Weekday,
    WorkerProfile,
    WorkerRecord,
)
from router.core.presence import WorkerPresence
from router.core.validation import canonical_number

TASK_STATUS_TO_PB: dict[TaskStatus, pb.TaskStatus.ValueType] = {
    TaskStatus.PENDING: pb.TASK_STATUS_PENDING,
    TaskStatus.RESERVED: pb.TASK_STATUS_RESERVED,
    TaskStatus.ASSIGNED: pb.TASK_STATUS_ASSIGNED,
    TaskStatus.WRAPPING: pb.TASK_STATUS_WRAPPING,
    TaskStatus.COMPLETED: pb.TASK_STATUS_COMPLETED,
    TaskStatus.CANCELED: pb.TASK_STATUS_CANCELED,
    TaskStatus.PAUSED: pb.TASK_STATUS_PAUSED,
}
TASK_STATUS_FROM_PB: dict[int, TaskStatus | None] = {
    pb.TASK_STATUS_UNSPECIFIED: None,
    **{value: key for key, value in TASK_STATUS_TO_PB.items()},
}
"""A ListTasks status filter: UNSPECIFIED does not filter."""
RESERVATION_STATUS_TO_PB: dict[ReservationStatus, pb.ReservationStatus.ValueType] = {
    ReservationStatus.PENDING: pb.RESERVATION_STATUS_PENDING,
    ReservationStatus.ACCEPTED: pb.RESERVATION_STATUS_ACCEPTED,
    ReservationStatus.REJECTED: pb.RESERVATION_STATUS_REJECTED,
    ReservationStatus.TIMED_OUT: pb.RESERVATION_STATUS_TIMED_OUT,
    ReservationStatus.RESCINDED: pb.RESERVATION_STATUS_RESCINDED,
    ReservationStatus.CANCELED: pb.RESERVATION_STATUS_CANCELED,
}
QUEUE_ORDER_TO_PB = {QueueOrder.FIFO: pb.QUEUE_ORDER_FIFO, QueueOrder.LIFO: pb.QUEUE_ORDER_LIFO}
QUEUE_ORDER_FROM_PB = {
    pb.QUEUE_ORDER_UNSPECIFIED: QueueOrder.FIFO,
    pb.QUEUE_ORDER_FIFO: QueueOrder.FIFO,
    pb.QUEUE_ORDER_LIFO: QueueOrder.LIFO,
}
WEEKDAY_TO_PB: dict[Weekday, pb.DayOfWeek.ValueType] = {
    Weekday.MONDAY: pb.DAY_OF_WEEK_MONDAY,
    Weekday.TUESDAY: pb.DAY_OF_WEEK_TUESDAY,
    Weekday.WEDNESDAY: pb.DAY_OF_WEEK_WEDNESDAY,
    Weekday.THURSDAY: pb.DAY_OF_WEEK_THURSDAY,
    Weekday.FRIDAY: pb.DAY_OF_WEEK_FRIDAY,
    Weekday.SATURDAY: pb.DAY_OF_WEEK_SATURDAY,
    Weekday.SUNDAY: pb.DAY_OF_WEEK_SUNDAY,
}
WEEKDAY_FROM_PB = {value: key for key, value in WEEKDAY_TO_PB.items()}
ACTION_KIND_TO_PB: dict[ActionKind, pb.QueueActionKind.ValueType] = {
    ActionKind.MOVE_TO_QUEUE: pb.QUEUE_ACTION_KIND_MOVE_TO_QUEUE,
    ActionKind.RAISE_PRIORITY: pb.QUEUE_ACTION_KIND_RAISE_PRIORITY,
    ActionKind.CANCEL: pb.QUEUE_ACTION_KIND_CANCEL,
}
ACTION_KIND_FROM_PB = {value: key for key, value in ACTION_KIND_TO_PB.items()}
TRIGGER_KIND_TO_PB: dict[TriggerKind, pb.ExceptionTrigger.ValueType] = {
    TriggerKind.WAIT_TIME: pb.EXCEPTION_TRIGGER_WAIT_TIME,
    TriggerKind.QUEUE_LENGTH: pb.EXCEPTION_TRIGGER_QUEUE_LENGTH,
    TriggerKind.STEPS_EXHAUSTED: pb.EXCEPTION_TRIGGER_STEPS_EXHAUSTED,
}
TRIGGER_KIND_FROM_PB = {value: key for key, value in TRIGGER_KIND_TO_PB.items()}


_Member = TypeVar("_Member")

TASK_OUTPUT_ONLY_FIELDS = (
    "task_id", "client_request_id", "status", "worker_id", "created_at_ms", "updated_at_ms",
    "cancel_reason", "queue_position", "estimated_wait_s", "estimated_wait_known",
    "excluded_worker_ids", "effective_priority", "step_index", "queued_at_ms", "customer_key",
    "customer_erased",
)  # fmt: skip
"""Fields of a `Task` that the router sets: refused on input rather than silently ignored."""
WORKER_OUTPUT_ONLY_FIELDS = ("available", "idle_since_ms", "load_by_channel", "task_ids")
"""Fields of a `Worker` that the router sets."""


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """Attributes as the core keeps them: JSON values, each integral number within +-2**53 an
    int (the canonical encoding: a Struct carries every number as a double). A NaN or an
    infinity is kept as it is, for validation to refuse naming its path."""
    return {key: _from_value(value) for key, value in struct.fields.items()}


def _from_value(value: struct_pb2.Value) -> Any:
    # Recursion is bounded by protobuf's own decoding depth (about 32 levels of objects).
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        return canonical_number(value.number_value)
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [_from_value(item) for item in value.list_value.values]
    return None  # null_value, or no kind at all


def refuse_output_only(field: str, message: Message, output_only: tuple[str, ...]) -> None:
    """Raises InvalidArgument for the first of `output_only` that `message` sets: a field the
    router would ignore on input is an error, not a silent loss."""
    given = {descriptor.name for descriptor, _ in message.ListFields()}
    for name in output_only:
        if name in given:
            raise InvalidArgument(f"{field}.{name}", "is output only (set by the router)")


def enum_from_pb(field: str, value: int, members: Mapping[Any, _Member]) -> _Member:
    """The member of a proto enum `value`, or InvalidArgument naming `field` for a value
    the API does not define (a client built with a newer or a forged descriptor)."""
    if value not in members:
        raise InvalidArgument(field, f"unknown value {value}")
    return members[value]


def dict_to_struct(document: Mapping[str, Any], into: struct_pb2.Struct) -> None:
    into.Clear()
    if document:
        into.update(document)


def task_spec_from_pb(task: pb.Task) -> TaskSpec:
    """The spec of a task to create; InvalidArgument for a field the router sets."""
    if task.client_request_id:
        raise InvalidArgument(
            "task.client_request_id",
            "is output only: give the idempotency key as CreateTaskRequest.client_request_id",
        )
    refuse_output_only("task", task, TASK_OUTPUT_ONLY_FIELDS)
    return TaskSpec(
        channel=task.channel,
        queue_id=task.queue_id,
        attributes=struct_to_dict(task.attributes),
        required_skills=dict(sorted(task.required_skills.items())),
        preferred_skills=dict(sorted(task.preferred_skills.items())),
        language=task.language,
        priority=task.priority,
        customer_id=task.customer_id,
        sentiment=task.sentiment,
        ttl_s=task.ttl_s,
        preferred_worker_id=task.preferred_worker_id,
        policy_id=task.policy_id,
        known_agent_wait_s=task.known_agent_wait_s,
    )


PARTICIPANT_ROLE_TO_PB = {
    ParticipantRole.PRIMARY: pb.PARTICIPANT_ROLE_PRIMARY,
    ParticipantRole.CONSULT: pb.PARTICIPANT_ROLE_CONSULT,
    ParticipantRole.MONITOR: pb.PARTICIPANT_ROLE_MONITOR,
}
PARTICIPANT_ROLE_FROM_PB = {value: key for key, value in PARTICIPANT_ROLE_TO_PB.items()}
TRANSFER_MODE_TO_PB = {
    TransferMode.COLD: pb.TRANSFER_MODE_COLD,
    TransferMode.WARM: pb.TRANSFER_MODE_WARM,
}
TRANSFER_MODE_FROM_PB = {value: key for key, value in TRANSFER_MODE_TO_PB.items()}
TRANSFER_STATUS_TO_PB = {
    TransferStatus.INITIATED: pb.TRANSFER_STATUS_INITIATED,
    TransferStatus.COMPLETED: pb.TRANSFER_STATUS_COMPLETED,
    TransferStatus.FAILED: pb.TRANSFER_STATUS_FAILED,
    TransferStatus.CANCELED: pb.TRANSFER_STATUS_CANCELED,
}
PAUSE_EXPIRY_TO_PB = {
    PauseExpiryAction.RESUME: pb.PAUSE_EXPIRY_ACTION_RESUME,
    PauseExpiryAction.CANCEL: pb.PAUSE_EXPIRY_ACTION_CANCEL,
}
PAUSE_EXPIRY_FROM_PB = {
    pb.PAUSE_EXPIRY_ACTION_UNSPECIFIED: PauseExpiryAction.RESUME,
    **{value: key for key, value in PAUSE_EXPIRY_TO_PB.items()},
}


def target_from_pb(target: pb.TransferTarget) -> TransferTarget:
    return TransferTarget(
        queue_id=target.queue_id,
        worker_id=target.worker_id,
        required_skills=dict(target.required_skills),
        worker_expression=target.worker_expression,
    )


def target_to_pb(target: TransferTarget) -> pb.TransferTarget:
    return pb.TransferTarget(
        queue_id=target.queue_id,
        worker_id=target.worker_id,
        required_skills=target.required_skills,
        worker_expression=target.worker_expression,
    )


def transfer_to_pb(transfer: Transfer) -> pb.Transfer:
    return pb.Transfer(
        transfer_id=transfer.transfer_id,
        mode=TRANSFER_MODE_TO_PB[transfer.mode],
        target=target_to_pb(transfer.target),
        status=TRANSFER_STATUS_TO_PB[transfer.status],
        from_worker_id=transfer.from_worker_id,
        from_queue_id=transfer.from_queue_id,
        to_worker_id=transfer.to_worker_id,
        reason=transfer.reason,
        outcome=transfer.outcome,
        created_at_ms=transfer.created_ms,
        ended_at_ms=transfer.ended_ms,
    )


def participant_to_pb(participant: Participant) -> pb.Participant:
    return pb.Participant(
        worker_id=participant.worker_id,
        role=PARTICIPANT_ROLE_TO_PB[participant.role],
        joined_at_ms=participant.joined_ms,
        reservation_id=participant.reservation_id,
        transfer_id=participant.transfer_id,
    )


def add_conversation(message: pb.Task, view: ConversationView) -> pb.Task:
    """Fills a task message's conversation fields (participants, transfers, pauses)."""
    if view.primary_worker_id:
        message.participants.append(
            pb.Participant(worker_id=view.primary_worker_id, role=pb.PARTICIPANT_ROLE_PRIMARY)
        )
    message.participants.extend(participant_to_pb(p) for p in view.participants)
    message.transfers.extend(transfer_to_pb(t) for t in view.transfers)
    message.paused_at_ms = view.paused_ms
    message.paused_total_ms = view.paused_total_ms
    return message


def task_to_pb(
    task: TaskRecord, *, queue_position: int = 0, estimated_wait_ms: int | None = None
) -> pb.Task:
    spec = task.spec
    # Only the fields away from their default are set: each keyword costs the constructor about
    # a quarter of a microsecond, and most are empty on most tasks (the message is the same:
    # proto3 sends no default scalar). Doubles are always set, so that a -0.0 stays on the wire.
    message = pb.Task(
        task_id=task.task_id,
        channel=spec.channel,
        queue_id=task.queue_id or spec.queue_id,
        sentiment=spec.sentiment,
        ttl_s=spec.ttl_s,
        known_agent_wait_s=spec.known_agent_wait_s,
        status=TASK_STATUS_TO_PB[task.status],
        created_at_ms=task.created_ms,
        updated_at_ms=task.updated_ms,
        estimated_wait_s=(estimated_wait_ms or 0) / 1000,
        estimated_wait_known=estimated_wait_ms is not None,
        effective_priority=task.priority,
        queued_at_ms=task.queued_ms,
    )
    if task.client_request_id:
        message.client_request_id = task.client_request_id
    if spec.required_skills:
        message.required_skills.update(spec.required_skills)
    if spec.preferred_skills:
        message.preferred_skills.update(spec.preferred_skills)
    if spec.language:
        message.language = spec.language
    if spec.priority:
        message.priority = spec.priority
    if spec.customer_id:
        message.customer_id = spec.customer_id
    if spec.preferred_worker_id:
        message.preferred_worker_id = spec.preferred_worker_id
    if spec.policy_id:
        message.policy_id = spec.policy_id
    if task.worker_id:
        message.worker_id = task.worker_id
    if task.cancel_reason:
        message.cancel_reason = task.cancel_reason
    if queue_position:
        message.queue_position = queue_position
    if task.excluded_worker_ids:
        message.excluded_worker_ids.extend(sorted(task.excluded_worker_ids))
    if task.step_index:
        message.step_index = task.step_index
    dict_to_struct(spec.attributes, message.attributes)
    return message


def offer_to_pb(reservation: Reservation, task: TaskRecord) -> pb.Offer:
    return pb.Offer(
        reservation_id=reservation.reservation_id,
        task_id=reservation.task_id,
        worker_id=reservation.worker_id,
        created_at_ms=reservation.created_ms,
        expires_at_ms=reservation.expires_ms,
        status=RESERVATION_STATUS_TO_PB[reservation.status],
        task=task_to_pb(task),
    )


def worker_profile_from_pb(worker: pb.Worker) -> WorkerProfile:
    """The profile of a worker to upsert; InvalidArgument for a field the router sets."""
    refuse_output_only("worker", worker, WORKER_OUTPUT_ONLY_FIELDS)
    return WorkerProfile(
        worker_id=worker.worker_id,
        display_name=worker.display_name,
        attributes=struct_to_dict(worker.attributes),
        skills=dict(sorted(worker.skills.items())),
        languages=tuple(worker.languages),
        empathy=worker.empathy,
        capacity_by_channel=dict(sorted(worker.capacity_by_channel.items())),
        total_capacity=worker.total_capacity if worker.HasField("total_capacity") else None,
        cost_by_channel=dict(sorted(worker.cost_by_channel.items())),
        activity=worker.activity or None,
    )


def worker_to_pb(
    worker: WorkerRecord, *, available: bool, presence: WorkerPresence | None = None
) -> pb.Worker:
    profile = worker.profile
    message = pb.Worker(
        worker_id=profile.worker_id,
        display_name=profile.display_name,
        skills=profile.skills,
        languages=profile.languages,
        empathy=profile.empathy,
        capacity_by_channel=profile.capacity_by_channel,
        cost_by_channel=profile.cost_by_channel,
        activity=worker.activity,
        available=available,
        idle_since_ms=worker.idle_since_ms,
        load_by_channel=worker.load_by_channel,
        task_ids=list(worker.task_ids),
    )
    if presence is not None:
        message.connected = presence.connected
        message.draining = presence.draining
        message.presence_lost_at_ms = presence.lost_ms
        message.missed_offers = presence.missed_offers
    if profile.total_capacity is not None:
        message.total_capacity = profile.total_capacity
    dict_to_struct(profile.attributes, message.attributes)
    return message


def queue_from_pb(queue: pb.Queue) -> QueueConfig:
    """Raises InvalidArgument for an enum left UNSPECIFIED or a required message left out (call
    it where CoreError is mapped to a status)."""
    defaults = ScoringWeights()
    weights = queue.weights
    return QueueConfig(
        queue_id=queue.queue_id,
        display_name=queue.display_name,
        target_expression=queue.target_expression,
        weights=ScoringWeights(
            skill=weights.skill if weights.HasField("skill") else defaults.skill,
            empathy=weights.empathy if weights.HasField("empathy") else defaults.empathy,
            idle=weights.idle if weights.HasField("idle") else defaults.idle,
            affinity=weights.affinity if weights.HasField("affinity") else defaults.affinity,
            load=weights.load if weights.HasField("load") else defaults.load,
        ),
        reservation_timeout_s=queue.reservation_timeout_s or RESERVATION_TIMEOUT_S_DEFAULT,
        wrapup_s=queue.wrapup_s,
        order=enum_from_pb("queue.order", queue.order, QUEUE_ORDER_FROM_PB),
        depth_max=queue.depth_max,
        priority_aging_per_min=queue.priority_aging_per_min,
        exception_rules=tuple(
            exception_rule_from_pb(rule, f"queue.exception_rules[{index}]")
            for index, rule in enumerate(queue.exception_rules)
        ),
        business_hours=(
            business_hours_from_pb(queue.business_hours, "queue.business_hours")
            if queue.HasField("business_hours")
            else None
        ),
        after_hours_action=(
            queue_action_from_pb(queue.after_hours_action, "queue.after_hours_action")
            if queue.HasField("after_hours_action")
            else None
        ),
        offer_workers_max=queue.offer_workers_max or 1,
        assignment_window_s=queue.assignment_window_s,
        pause_max_s=queue.pause_max_s or PAUSE_MAX_S_DEFAULT,
        pause_expiry_action=enum_from_pb(
            "queue.pause_expiry_action", queue.pause_expiry_action, PAUSE_EXPIRY_FROM_PB
        ),
    )


def queue_to_pb(queue: QueueConfig) -> pb.Queue:
    w = queue.weights
    message = pb.Queue(
        queue_id=queue.queue_id,
        display_name=queue.display_name,
        target_expression=queue.target_expression,
        weights=pb.ScoringWeights(
            skill=w.skill, empathy=w.empathy, idle=w.idle, affinity=w.affinity, load=w.load
        ),
        reservation_timeout_s=queue.reservation_timeout_s,
        wrapup_s=queue.wrapup_s,
        order=QUEUE_ORDER_TO_PB[queue.order],
        depth_max=queue.depth_max,
        priority_aging_per_min=queue.priority_aging_per_min,
        exception_rules=[exception_rule_to_pb(rule) for rule in queue.exception_rules],
        offer_workers_max=queue.offer_workers_max,
        assignment_window_s=queue.assignment_window_s,
        # Defaults as the request leaves them (0, UNSPECIFIED), so that a queue round-trips.
        pause_max_s=0 if queue.pause_max_s == PAUSE_MAX_S_DEFAULT else queue.pause_max_s,
        pause_expiry_action=(
            pb.PAUSE_EXPIRY_ACTION_UNSPECIFIED
            if queue.pause_expiry_action is PauseExpiryAction.RESUME
            else PAUSE_EXPIRY_TO_PB[queue.pause_expiry_action]
        ),
    )
    if queue.business_hours is not None:
        message.business_hours.CopyFrom(business_hours_to_pb(queue.business_hours))
    if queue.after_hours_action is not None:
        message.after_hours_action.CopyFrom(queue_action_to_pb(queue.after_hours_action))
    return message


def queue_action_from_pb(action: pb.QueueAction, field: str) -> QueueAction:
    kind = ACTION_KIND_FROM_PB.get(action.kind)
    if kind is None:
        raise InvalidArgument(f"{field}.kind", _enum_problem(action.kind))
    return QueueAction(
        kind=kind,
        queue_id=action.queue_id,
        priority_delta=action.priority_delta,
        reason=action.reason,
    )


def queue_action_to_pb(action: QueueAction) -> pb.QueueAction:
    return pb.QueueAction(
        kind=ACTION_KIND_TO_PB[action.kind],
        queue_id=action.queue_id,
        priority_delta=action.priority_delta,
        reason=action.reason,
    )


def exception_rule_from_pb(rule: pb.ExceptionRule, field: str) -> ExceptionRule:
    trigger = TRIGGER_KIND_FROM_PB.get(rule.trigger)
    if trigger is None:
        raise InvalidArgument(f"{field}.trigger", _enum_problem(rule.trigger))
    if not rule.HasField("action"):
        raise InvalidArgument(f"{field}.action", "is required")
    return ExceptionRule(
        trigger=trigger,
        action=queue_action_from_pb(rule.action, f"{field}.action"),
        wait_s=rule.wait_s,
        queue_length=rule.queue_length,
    )


def exception_rule_to_pb(rule: ExceptionRule) -> pb.ExceptionRule:
    return pb.ExceptionRule(
        trigger=TRIGGER_KIND_TO_PB[rule.trigger],
        wait_s=rule.wait_s,
        queue_length=rule.queue_length,
        action=queue_action_to_pb(rule.action),
    )


def business_hours_from_pb(hours: pb.BusinessHours, field: str) -> BusinessHours:
    weekly = []
    for index, interval in enumerate(hours.weekly):
        day = WEEKDAY_FROM_PB.get(interval.day)
        if day is None:
            raise InvalidArgument(f"{field}.weekly[{index}].day", _enum_problem(interval.day))
        weekly.append(OpenHours(day=day, opens=interval.opens, closes=interval.closes))
    return BusinessHours(
        time_zone=hours.time_zone, weekly=tuple(weekly), holidays=tuple(hours.holidays)
    )


def business_hours_to_pb(hours: BusinessHours) -> pb.BusinessHours:
    return pb.BusinessHours(
        time_zone=hours.time_zone,
        weekly=[
            pb.OpenHours(
                day=WEEKDAY_TO_PB[interval.day], opens=interval.opens, closes=interval.closes
            )
            for interval in hours.weekly
        ],
        holidays=hours.holidays,
    )


def _enum_problem(value: int) -> str:
    return "is required" if value == 0 else f"unknown value {value}"


def routing_step_from_pb(step: pb.RoutingStep) -> RoutingStep:
    return RoutingStep(
        timeout_s=step.timeout_s,
        required_skills=dict(sorted(step.required_skills.items())),
        worker_expression=step.worker_expression,
        known_agent=step.known_agent,
        priority_delta=step.priority_delta,
        skip_if_no_workers=step.skip_if_no_workers,
    )


def routing_step_to_pb(step: RoutingStep) -> pb.RoutingStep:
    return pb.RoutingStep(
        timeout_s=step.timeout_s,
        required_skills=step.required_skills,
        worker_expression=step.worker_expression,
        known_agent=step.known_agent,
        priority_delta=step.priority_delta,
        skip_if_no_workers=step.skip_if_no_workers,
    )


def route_from_pb(route: pb.Route) -> Route:
    return Route(
        queue_id=route.queue_id, steps=tuple(routing_step_from_pb(step) for step in route.steps)
    )


def route_to_pb(route: Route) -> pb.Route:
    return pb.Route(
        queue_id=route.queue_id, steps=[routing_step_to_pb(step) for step in route.steps]
    )


def policy_from_pb(policy: pb.RoutingPolicy) -> RoutingPolicy:
    """Raises InvalidArgument for a filter without a route (call it where CoreError is mapped to
    a status)."""
    filters = []
    for index, entry in enumerate(policy.filters):
        if not entry.HasField("route"):
            raise InvalidArgument(f"policy.filters[{index}].route", "is required")
        filters.append(
            PolicyFilter(
                name=entry.name, expression=entry.expression, route=route_from_pb(entry.route)
            )
        )
    return RoutingPolicy(
        policy_id=policy.policy_id,
        display_name=policy.display_name,
        filters=tuple(filters),
        default_route=(
            route_from_pb(policy.default_route) if policy.HasField("default_route") else None
        ),
    )


def policy_to_pb(policy: RoutingPolicy) -> pb.RoutingPolicy:
    message = pb.RoutingPolicy(
        policy_id=policy.policy_id,
        display_name=policy.display_name,
        filters=[
            pb.PolicyFilter(
                name=entry.name, expression=entry.expression, route=route_to_pb(entry.route)
            )
            for entry in policy.filters
        ],
    )
    if policy.default_route is not None:
        message.default_route.CopyFrom(route_to_pb(policy.default_route))
    return message


def queue_stats_to_pb(stats: QueueStats) -> stats_pb.QueueStats:
    return stats_pb.QueueStats(
        queue_id=stats.queue_id,
        waiting=stats.waiting,
        longest_wait_s=stats.longest_wait_ms / 1000,
        reserved=stats.reserved,
        assigned=stats.assigned,
        wrapping=stats.wrapping,
        created_total=stats.created_total,
        offered_total=stats.offered_total,
        assigned_total=stats.assigned_total,
        completed_total=stats.completed_total,
        canceled_total=stats.canceled_total,
        eligible_workers=stats.eligible_workers,
    )
