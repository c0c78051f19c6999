"""Conversion between protobuf messages and the core's dataclasses. Only this module and the
servicers touch protobuf types."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format, struct_pb2

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import stats_service_pb2 as stats_pb
from router.core.engine import QueueStats
from router.core.limits import RESERVATION_TIMEOUT_S_DEFAULT
from router.core.model import (
    QueueConfig,
    QueueOrder,
    Reservation,
    ReservationStatus,
    ScoringWeights,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    WorkerProfile,
    WorkerRecord,
)

TASK_STATUS_TO_PB: dict[TaskStatus, pb.TaskStatus.ValueType] = {
    TaskStatus.PENDING: pb.TASK_STATUS_PENDING,
    TaskStatus.RESERVED: pb.TASK_STATUS_RESERVED,
    TaskStatus.ASSIGNED: pb.TASK_STATUS_ASSIGNED,
    TaskStatus.WRAPPING: pb.TASK_STATUS_WRAPPING,
    TaskStatus.COMPLETED: pb.TASK_STATUS_COMPLETED,
    TaskStatus.CANCELED: pb.TASK_STATUS_CANCELED,
}
TASK_STATUS_FROM_PB = {value: key for key, value in TASK_STATUS_TO_PB.items()}
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


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    return json_format.MessageToDict(struct)


def dict_to_struct(document: Mapping[str, Any], into: struct_pb2.Struct) -> None:
    into.Clear()
    if document:
        into.update(document)


def task_spec_from_pb(task: pb.Task) -> TaskSpec:
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
    )


def task_to_pb(
    task: TaskRecord, *, queue_position: int = 0, estimated_wait_ms: int | None = None
) -> pb.Task:
    spec = task.spec
    message = pb.Task(
        task_id=task.task_id,
        client_request_id=task.client_request_id,
        channel=spec.channel,
        queue_id=spec.queue_id,
        required_skills=spec.required_skills,
        preferred_skills=spec.preferred_skills,
        language=spec.language,
        priority=spec.priority,
        customer_id=spec.customer_id,
        sentiment=spec.sentiment,
        ttl_s=spec.ttl_s,
        preferred_worker_id=spec.preferred_worker_id,
        status=TASK_STATUS_TO_PB[task.status],
        worker_id=task.worker_id,
        created_at_ms=task.created_ms,
        updated_at_ms=task.updated_ms,
        cancel_reason=task.cancel_reason,
        queue_position=queue_position,
        estimated_wait_s=(estimated_wait_ms or 0) / 1000,
        estimated_wait_known=estimated_wait_ms is not None,
        excluded_worker_ids=sorted(task.excluded_worker_ids),
    )
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


def worker_to_pb(worker: WorkerRecord, *, available: bool) -> pb.Worker:
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
    if profile.total_capacity is not None:
        message.total_capacity = profile.total_capacity
    dict_to_struct(profile.attributes, message.attributes)
    return message


def queue_from_pb(queue: pb.Queue) -> QueueConfig:
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
        order=QUEUE_ORDER_FROM_PB.get(queue.order, QueueOrder.FIFO),
        depth_max=queue.depth_max,
    )


def queue_to_pb(queue: QueueConfig) -> pb.Queue:
    w = queue.weights
    return pb.Queue(
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
    )


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
