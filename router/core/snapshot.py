"""Snapshots of the engine: its recorded state in a compact, versioned document, from which
`restore` rebuilds an engine that behaves exactly as the original would (same digest, and the
same events for the same later commands).

Only what commands recorded is stored; everything derived (numpy columns, queue memberships,
the waiting index, requirements, the task and worker indexes) is rebuilt. Closed tasks are
stored as the bytes the engine keeps them as, with their index keys, so that neither taking nor
restoring a snapshot decodes them. This module is the engine's serializer and reads its private
fields on purpose: the engine's logic stays in engine.py, its storage format here.

Version 2 (before closed tasks were kept as bytes) listed every task as a record, open or
closed, with the ids of the closed ones in the order they closed, and each client request id
with its task's whole payload rather than its fingerprint; it is still restored."""

from __future__ import annotations

import heapq
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import msgspec

from router.core.columns import IDLE_SINCE_MS
from router.core.engine import (
    SERVICE_RATE_SAMPLES,
    CustomerHistory,
    Engine,
    QueueCounters,
    _parse_target,
    _worker_document,
    payload_fingerprint,
)
from router.core.model import (
    QueueConfig,
    Reservation,
    RoutingPolicy,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    WorkerProfile,
    WorkerRecord,
)
from router.core.policies import CompiledPolicy
from router.core.task_index import keys_of
from router.core.task_table import ClosedTask, encode_task

SNAPSHOT_VERSION = 3
_RESTORED_VERSIONS = (2, SNAPSHOT_VERSION)


class SnapshotError(ValueError):
    """Bytes that are not a snapshot this version can restore."""


@dataclass(slots=True)
class _Counters:
    queue_id: str
    created_total: int
    offered_total: int
    assigned_total: int
    completed_total: int
    canceled_total: int
    by_status: dict[TaskStatus, int]
    assigned_ms: list[int]
    handle_ms: list[int]


@dataclass(slots=True)
class _Worker:
    profile: WorkerProfile
    row: int
    activity: str
    idle_since_ms: int
    load_by_channel: dict[str, int]
    task_ids: list[str]


@dataclass(slots=True)
class _Snapshot:
    version: int
    now_ms: int
    task_seq: int
    reservation_seq: int
    timer_seq: int
    timers_stale: int
    channels: dict[str, str]
    activities: dict[str, bool]
    channel_columns: list[str]
    skill_columns: list[str]
    language_columns: list[str]
    queues: list[QueueConfig]
    policies: list[RoutingPolicy]
    rounds: dict[str, int]
    counters: list[_Counters]
    workers: list[_Worker]
    tasks: list[TaskRecord]
    """The open tasks, in creation order (version 2: every task)."""
    reservations: list[Reservation]
    closed_reservation_ids: list[str]
    customers: list[tuple[str, CustomerHistory]]
    timers: list[tuple[int, int, str, str]]
    closed_tasks: list[ClosedTask] = field(default_factory=list)
    """The closed tasks kept, in the order they closed (version 3)."""
    request_fingerprints: list[tuple[str, str, bytes]] = field(default_factory=list)
    """(client request id, task id, payload fingerprint), oldest first (version 3)."""
    closed_task_ids: list[str] = field(default_factory=list)
    """The closed tasks among `tasks`, in the order they closed (version 2)."""
    request_ids: list[tuple[str, str, TaskSpec]] = field(default_factory=list)
    """(client request id, task id, payload), oldest first (version 2)."""


def take(engine: Engine) -> bytes:
    """The engine's state as bytes (msgpack). Take it between commands."""
    columns = engine.columns
    snapshot = _Snapshot(
        version=SNAPSHOT_VERSION,
        now_ms=engine.now_ms,
        task_seq=engine._task_seq,
        reservation_seq=engine._reservation_seq,
        timer_seq=engine._timer_seq,
        timers_stale=engine._timers_stale,
        channels=engine.channels,
        activities=engine.activities,
        channel_columns=columns.channel_index.names(),
        skill_columns=columns.skill_index.names(),
        language_columns=columns.language_index.names(),
        queues=list(engine.queues.values()),
        policies=list(engine.policies.values()),
        rounds=engine._round_due_ms,
        counters=[
            _Counters(
                queue_id,
                c.created_total,
                c.offered_total,
                c.assigned_total,
                c.completed_total,
                c.canceled_total,
                c.by_status,
                list(c.assigned_ms),
                list(c.handle_ms),
            )
            for queue_id, c in engine.counters.items()
        ],
        workers=[
            _Worker(
                w.profile,
                w.row,
                w.activity,
                w.idle_since_ms,
                w.load_by_channel,
                list(w.task_ids),
            )
            for w in engine.workers.values()
        ],
        tasks=list(engine.tasks.open.values()),
        closed_tasks=list(engine.tasks.closed.values()),
        reservations=list(engine.reservations.values()),
        closed_reservation_ids=list(engine._closed_reservations),
        request_fingerprints=[(r, t, f) for r, (t, f) in engine._request_ids.items()],
        customers=list(engine._customers.items()),
        timers=list(engine._timers),
    )
    return msgspec.msgpack.encode(snapshot)


def restore(data: bytes) -> Engine:
    """An engine in the state the snapshot was taken in."""
    try:
        snapshot = msgspec.msgpack.decode(data, type=_Snapshot)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise SnapshotError(f"not a snapshot: {error}") from None
    if snapshot.version not in _RESTORED_VERSIONS:
        raise SnapshotError(
            f"snapshot version {snapshot.version}, expected one of {_RESTORED_VERSIONS}"
        )
    if snapshot.version == 2:
        _upgrade_tasks(snapshot)
        snapshot.request_fingerprints = [
            (r, t, payload_fingerprint(spec)) for r, t, spec in snapshot.request_ids
        ]
    engine = Engine()
    _restore_configuration(engine, snapshot)
    _restore_workers(engine, snapshot.workers)
    _restore_tasks(engine, snapshot)
    engine.now_ms = snapshot.now_ms
    engine._task_seq = snapshot.task_seq
    engine._reservation_seq = snapshot.reservation_seq
    engine._timer_seq = snapshot.timer_seq
    engine._timers = list(snapshot.timers)
    heapq.heapify(engine._timers)
    engine._timers_stale = snapshot.timers_stale
    return engine


def _restore_configuration(engine: Engine, snapshot: _Snapshot) -> None:
    columns = engine.columns
    # Column numbers are kept, so that every structure keyed by them is rebuilt alike.
    for name in snapshot.channel_columns:
        columns.channel_col(name)
    for name in snapshot.skill_columns:
        columns.skill_col(name)
    for name in snapshot.language_columns:
        columns.language_col(name)
    engine.channels = dict(snapshot.channels)
    engine.activities = dict(snapshot.activities)
    for queue in snapshot.queues:
        engine.queues[queue.queue_id] = queue
        engine._queue_expressions[queue.queue_id] = _parse_target(queue.target_expression)
        engine._index_queue(queue)
        engine.membership.index_of(queue.queue_id)
    for policy in snapshot.policies:
        engine.policies[policy.policy_id] = policy
        engine._compiled[policy.policy_id] = CompiledPolicy(policy)
    engine._round_due_ms = dict(snapshot.rounds)
    for c in snapshot.counters:
        engine.counters[c.queue_id] = QueueCounters(
            c.created_total, c.offered_total, c.assigned_total, c.completed_total,
            c.canceled_total, dict(c.by_status), deque(c.assigned_ms, maxlen=SERVICE_RATE_SAMPLES),
            deque(c.handle_ms, maxlen=SERVICE_RATE_SAMPLES),
        )  # fmt: skip


def _restore_workers(engine: Engine, workers: list[_Worker]) -> None:
    columns = engine.columns
    for saved in workers:
        row = saved.row
        columns.claim_row(row)
        worker = WorkerRecord(
            saved.profile, row, saved.activity, saved.idle_since_ms,
            dict(saved.load_by_channel), dict.fromkeys(saved.task_ids),
        )  # fmt: skip
        engine.workers[saved.profile.worker_id] = worker
        engine.worker_index.add(saved.profile.worker_id, saved.activity)
        engine._worker_at_row[row] = saved.profile.worker_id
        for channel, load in saved.load_by_channel.items():
            columns.load[row, columns.channel_index.get(channel)] = load
        columns.held_tasks[row] = sum(saved.load_by_channel.values())
        columns.available[row] = engine.activities[saved.activity]
        columns.write_profile(row, saved.profile)  # prices the load, refreshes readiness
        idle_since_ms = float("inf") if saved.task_ids else saved.idle_since_ms
        columns.features[row, IDLE_SINCE_MS] = idle_since_ms
        engine.worker_attributes.set_row(row, _worker_document(saved.profile))
    columns.reclaim_free_rows()
    engine.membership.ensure_rows(columns.row_count)
    engine._refresh_step_expressions()  # its rows, evaluated over every worker
    for key, expression in engine._membership_expressions():
        members = engine._evaluate_members(expression)
        engine.membership.set_row(engine.membership.index_of(key), members)


def _upgrade_tasks(snapshot: _Snapshot) -> None:
    """Version 2's tasks as version 3 keeps them: the closed ones as bytes."""
    by_id = {task.task_id: task for task in snapshot.tasks}
    snapshot.closed_tasks = [
        (keys_of(by_id[task_id]), encode_task(by_id[task_id]))
        for task_id in snapshot.closed_task_ids
    ]
    closed = set(snapshot.closed_task_ids)
    snapshot.tasks = [task for task in snapshot.tasks if task.task_id not in closed]


def _restore_tasks(engine: Engine, snapshot: _Snapshot) -> None:
    engine.tasks.restore(snapshot.tasks, snapshot.closed_tasks)
    for task in snapshot.tasks:
        engine._derive(task)
    engine._enqueue_all(task for task in snapshot.tasks if task.status is TaskStatus.PENDING)
    engine.reservations = {r.reservation_id: r for r in snapshot.reservations}
    engine._closed_reservations = OrderedDict.fromkeys(snapshot.closed_reservation_ids)
    engine._request_ids = OrderedDict((r, (t, f)) for r, t, f in snapshot.request_fingerprints)
    engine._customers = OrderedDict(snapshot.customers)
