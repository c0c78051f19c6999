"""Snapshots of the engine: its recorded state in a compact, versioned document, from which
`restore` rebuilds an engine that behaves exactly as the original would (same digest, and the
same events for the same later commands).

Only what commands recorded is stored; everything derived (numpy columns, queue memberships,
the waiting index, requirements, the task and worker indexes) is rebuilt. Closed tasks are
stored as the bytes the engine keeps them as, with their index keys, so that neither taking nor
restoring a snapshot decodes them. Each part of the engine saves and restores its own share
(`save`, `restore`); this module lays the shares out in the document, whose layout is the
format: the field order below is the MessagePack map's.

Version 2 (before closed tasks were kept as bytes) listed every task as a record, open or
closed, with the ids of the closed ones in the order they closed, and each client request id
with its task's whole payload rather than its fingerprint; it is still restored."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from router.core.catalog import CatalogShare
from router.core.conversations import ConversationsShare
from router.core.customers import CustomersShare
from router.core.engine import Engine
from router.core.histories import CustomerHistory, HistoriesShare, payload_fingerprint
from router.core.lifecycle import TasksShare
from router.core.model import QueueConfig, Reservation, RoutingPolicy, TaskRecord, TaskSpec
from router.core.offers import OffersShare
from router.core.presence import PresenceShare
from router.core.roster import RosterShare, SavedWorker
from router.core.statistics import SavedCounters
from router.core.task_index import keys_of
from router.core.task_table import ClosedTask, encode_task
from router.core.timers import Timer, TimerShare
from router.core.windows import WindowsShare

SNAPSHOT_VERSION = 3
_RESTORED_VERSIONS = (2, SNAPSHOT_VERSION)


class SnapshotError(ValueError):
    """Bytes that are not a snapshot this version can restore."""


class _Versioned(msgspec.Struct):
    """The one field every version has, read before the rest."""

    version: int


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
    counters: list[SavedCounters]
    workers: list[SavedWorker]
    tasks: list[TaskRecord]
    """The open tasks, in creation order (version 2: every task)."""
    reservations: list[Reservation]
    closed_reservation_ids: list[str]
    customers: list[tuple[str, CustomerHistory]]
    timers: list[Timer]
    closed_tasks: list[ClosedTask] = field(default_factory=list)
    """The closed tasks kept, in the order they closed (version 3)."""
    request_fingerprints: list[tuple[str, str, bytes]] = field(default_factory=list)
    """(client request id, task id, payload fingerprint), oldest first (version 3)."""
    closed_task_ids: list[str] = field(default_factory=list)
    """The closed tasks among `tasks`, in the order they closed (version 2)."""
    request_ids: list[tuple[str, str, TaskSpec]] = field(default_factory=list)
    """(client request id, task id, payload), oldest first (version 2)."""
    windows: WindowsShare = field(default_factory=WindowsShare)
    """The windowed statistics (empty in snapshots taken before they were kept)."""
    id_key: bytes = b""
    """The key ids are derived with (`identifiers.py`); empty in snapshots taken before ids
    were keyed, whose journals go on giving sequential ids until the writer seeds them."""
    conversations: ConversationsShare = field(default_factory=ConversationsShare)
    """Transfers, pauses and participants (empty in snapshots taken before they existed)."""
    presence: PresenceShare = field(default_factory=PresenceShare)
    """Presence settings and per-worker presence (empty before presence existed)."""
    customer_contexts: CustomersShare = field(default_factory=CustomersShare)
    """Customers' routing contexts and the timeline settings (empty before they existed)."""


def take(engine: Engine) -> bytes:
    """The engine's state as bytes (msgpack). Take it between commands."""
    tasks = engine.lifecycle.save()
    offers = engine.offers.save()
    timers = engine.timers.save()
    catalog = engine.catalog.save()
    roster = engine.roster.save()
    histories = engine.histories.save()
    snapshot = _Snapshot(
        version=SNAPSHOT_VERSION,
        now_ms=engine.now_ms,
        task_seq=tasks.task_seq,
        reservation_seq=offers.reservation_seq,
        timer_seq=timers.timer_seq,
        timers_stale=timers.timers_stale,
        channels=catalog.channels,
        activities=catalog.activities,
        channel_columns=roster.channel_columns,
        skill_columns=roster.skill_columns,
        language_columns=roster.language_columns,
        queues=catalog.queues,
        policies=catalog.policies,
        rounds=engine.matching.save_rounds(),
        counters=engine.statistics.save(),
        workers=roster.workers,
        tasks=tasks.open_tasks,
        closed_tasks=tasks.closed_tasks,
        reservations=offers.reservations,
        closed_reservation_ids=offers.closed_reservation_ids,
        request_fingerprints=histories.request_fingerprints,
        customers=histories.customers,
        timers=timers.timers,
        id_key=engine.identifiers.key,
        windows=engine.windows.save(),
        conversations=engine.conversations.save(),
        presence=engine.presence.save(),
        customer_contexts=engine.customers.save(),
    )
    return msgspec.msgpack.encode(snapshot)


def restore(data: bytes) -> Engine:
    """An engine in the state the snapshot was taken in. Refused (SnapshotError) when the
    bytes are not a snapshot, or one of a version this code cannot read."""
    try:
        version = msgspec.msgpack.decode(data, type=_Versioned).version
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise SnapshotError(f"not a snapshot: {error}") from None
    if version not in _RESTORED_VERSIONS:
        raise SnapshotError(
            f"snapshot version {version} cannot be restored by this router, which reads "
            f"versions {', '.join(map(str, _RESTORED_VERSIONS))}"
        )
    try:
        snapshot = msgspec.msgpack.decode(data, type=_Snapshot)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise SnapshotError(f"not a version {version} snapshot: {error}") from None
    if snapshot.version == 2:
        _upgrade_tasks(snapshot)
        snapshot.request_fingerprints = [
            (r, t, payload_fingerprint(spec)) for r, t, spec in snapshot.request_ids
        ]
    engine = Engine()
    engine.identifiers.key = snapshot.id_key
    roster = RosterShare(
        snapshot.channel_columns, snapshot.skill_columns, snapshot.language_columns,
        snapshot.workers,
    )  # fmt: skip
    # Column numbers first, so that every structure keyed by them is rebuilt alike; then the
    # configuration, the workers and their membership, and the tasks routed over them.
    engine.roster.restore_columns(roster)
    engine.catalog.restore(
        CatalogShare(snapshot.channels, snapshot.activities, snapshot.queues, snapshot.policies)
    )
    engine.matching.restore_rounds(snapshot.rounds)
    engine.presence.restore(snapshot.presence)  # before the workers: it holds some back
    engine.statistics.restore(snapshot.counters)
    engine.roster.restore_workers(roster)
    # Before the tasks: a conversation may hold its task to a cold transfer's expression.
    engine.conversations.restore(snapshot.conversations)
    engine.catalog.restore_membership()
    engine.lifecycle.restore(TasksShare(snapshot.task_seq, snapshot.tasks, snapshot.closed_tasks))
    engine.offers.restore(
        OffersShare(
            snapshot.reservation_seq, snapshot.reservations, snapshot.closed_reservation_ids
        )
    )
    engine.histories.restore(HistoriesShare(snapshot.customers, snapshot.request_fingerprints))
    engine.windows.restore(snapshot.windows)
    engine.customers.restore(snapshot.customer_contexts)
    engine.now_ms = snapshot.now_ms
    try:
        engine.timers.restore(
            TimerShare(snapshot.timer_seq, snapshot.timers_stale, snapshot.timers)
        )
    except ValueError as error:
        raise SnapshotError(f"not a version {version} snapshot: {error}") from None
    return engine


def _upgrade_tasks(snapshot: _Snapshot) -> None:
    """Version 2's tasks as version 3 keeps them: the closed ones as bytes."""
    by_id = {task.task_id: task for task in snapshot.tasks}
    snapshot.closed_tasks = [
        (keys_of(by_id[task_id]), encode_task(by_id[task_id]))
        for task_id in snapshot.closed_task_ids
    ]
    closed = set(snapshot.closed_task_ids)
    snapshot.tasks = [task for task in snapshot.tasks if task.task_id not in closed]
