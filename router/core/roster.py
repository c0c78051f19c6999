"""The workers: their records, their numpy columns (skills, capacity, load, availability) and
attribute columns, the index of their ids by activity, and the holding and release of capacity
as tasks are offered to them and end."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from router.core import commands as cmd
from router.core.catalog import found
from router.core.columns import IDLE_SINCE_MS, WorkerColumns
from router.core.errors import FailedPrecondition, InvalidArgument, ResourceExhausted, quoted
from router.core.events import Event, WorkerActivityChanged, WorkerRemoved, WorkerUpserted
from router.core.expressions import MATCH_ALL, AttributeColumns, Expression
from router.core.limits import SKILLS_PER_WORKSPACE_MAX, WORKERS_MAX
from router.core.model import (
    NEW_WORKER_ACTIVITY,
    ReservationStatus,
    TaskRecord,
    TaskStatus,
    WorkerProfile,
    WorkerRecord,
)
from router.core.results import UpsertedWorker, WorkerCopy, WorkerPage
from router.core.validation import validate_worker
from router.core.worker_index import WorkerIndex

if TYPE_CHECKING:
    from router.core.catalog import Catalog
    from router.core.conversations import Conversations
    from router.core.lifecycle import TaskLifecycle
    from router.core.matching import Matching
    from router.core.offers import Offers
    from router.core.presence import Presence
    from router.core.routing import Routing
    from router.core.statistics import Statistics
    from router.core.timers import Clock


@dataclass(slots=True)
class SavedWorker:
    """A worker as a snapshot keeps it."""

    profile: WorkerProfile
    row: int
    activity: str
    idle_since_ms: int
    load_by_channel: dict[str, int]
    task_ids: list[str]


@dataclass(frozen=True, slots=True)
class RosterShare:
    """The workers' share of a snapshot: the column names in the order they were numbered
    (so that every structure keyed by column number is rebuilt alike), and the workers."""

    channel_columns: list[str]
    skill_columns: list[str]
    language_columns: list[str]
    workers: list[SavedWorker]


class Roster:
    def __init__(self, channels: Iterable[str]) -> None:
        self.workers: dict[str, WorkerRecord] = {}
        self.worker_index = WorkerIndex()
        """Worker ids in order, overall and per activity."""
        self.worker_at_row: dict[int, str] = {}
        self.columns = WorkerColumns()
        for name in channels:
            self.columns.channel_col(name)
        self.attributes = AttributeColumns()

    def connect(
        self,
        *,
        clock: Clock,
        events: list[Event],
        catalog: Catalog,
        lifecycle: TaskLifecycle,
        offers: Offers,
        routing: Routing,
        matching: Matching,
        statistics: Statistics,
    ) -> None:
        self._clock = clock
        self._events = events
        self._catalog = catalog
        self._lifecycle = lifecycle
        self._offers = offers
        self._routing = routing
        self._matching = matching
        self._stats = statistics

    def connect_presence(self, presence: Presence) -> None:
        self._presence = presence

    def connect_conversations(self, conversations: Conversations) -> None:
        self._conversations = conversations

    # -- reads ------------------------------------------------------------------------------

    def worker(self, worker_id: str) -> WorkerRecord:
        return found("worker_id", "worker", self.workers, worker_id)

    def eligible(self, worker: WorkerRecord) -> bool:
        """Whether the worker may be offered work (its `available` column): its activity is an
        available one, and it is neither draining nor lost (`presence.py`)."""
        return self._catalog.activities[worker.activity] and not self._presence.held_back(
            worker.worker_id
        )

    def copy(self, worker: WorkerRecord) -> WorkerCopy:
        return WorkerCopy(worker.snapshot(), self._catalog.activities[worker.activity])

    def list_workers(self, *, activity: str, after_worker_id: str, count_max: int) -> WorkerPage:
        """Copies of up to `count_max` workers after `after_worker_id` in id order (of one
        activity unless it is empty): O(log n + count_max)."""
        worker_ids, more = self.worker_index.after(
            after_worker_id, activity=activity, count_max=count_max
        )
        return WorkerPage([self.copy(self.workers[worker_id]) for worker_id in worker_ids], more)

    def workers_by_activity(self) -> dict[str, int]:
        return {a: self.worker_index.count(a) for a in self._catalog.activities}

    def evaluate(self, expression: Expression) -> npt.NDArray[np.bool_]:
        """Which live workers' attributes match an expression (a membership row)."""
        rows = self.columns.row_count
        mask = np.zeros(rows, dtype=bool)
        if expression is MATCH_ALL:
            mask[:] = True
        else:
            evaluated = expression.mask(self.attributes)
            count = min(rows, evaluated.size)
            mask[:count] = evaluated[:count]
        return mask & self.columns.alive[:rows]

    def rows_of(self, worker_ids: frozenset[str]) -> list[int]:
        workers = self.workers
        return [workers[w].row for w in sorted(worker_ids) if w in workers]

    # -- commands ---------------------------------------------------------------------------

    def upsert_worker(self, command: cmd.UpsertWorker) -> UpsertedWorker:
        profile = command.profile
        catalog = self._catalog
        activities = catalog.activities
        validate_worker(profile, catalog.channels)
        if profile.activity is not None and profile.activity not in activities:
            unknown = f"unknown activity {quoted(profile.activity)}"
            raise InvalidArgument("worker.activity", unknown)
        existing = self.workers.get(profile.worker_id)
        if existing is None and len(self.workers) >= WORKERS_MAX:
            raise ResourceExhausted(f"a workspace may have at most {WORKERS_MAX} workers")
        if existing is not None:
            _check_capacity_covers_load(existing, profile)
        self.check_new_skills(profile.skills)

        if existing is None:
            row = self.columns.allocate_row()
            catalog.membership.ensure_rows(self.columns.row_count)
            activity = profile.activity or NEW_WORKER_ACTIVITY
            worker = WorkerRecord(profile, row, activity, idle_since_ms=self._clock.now_ms)
            self.workers[profile.worker_id] = worker
            self.worker_index.add(worker.worker_id, activity)
            self.worker_at_row[row] = profile.worker_id
            was_available = False
        else:
            worker = existing
            was_available = self.eligible(worker)
            if profile.activity is not None and profile.activity != worker.activity:
                self._record_activity_change(worker, profile.activity)
        worker.profile = replace(profile, activity=None)
        available = self.eligible(worker)
        self.columns.available[worker.row] = available
        self.columns.write_profile(worker.row, profile)
        document = worker_document(profile)
        self.attributes.set_row(worker.row, document)
        membership = catalog.membership
        for key, expression in catalog.membership_expressions():
            slot = membership.index_of(key)
            membership.set_cell(slot, worker.row, expression.evaluate(document))
        self._stats.staffing_changed()
        # Before what it sets off (offers to it), as subscribers expect.
        self._events.append(WorkerUpserted(worker.worker_id, worker.activity, existing is None))
        if existing is None:
            self._routing.repin(worker.worker_id)
        if available != was_available:
            self.availability_changed(worker, was_available)
        else:  # new skills or capacity may make waiting tasks eligible
            self._matching.serve_worker(worker)
        return UpsertedWorker(self.copy(worker), existing is None)

    def check_new_skills(self, skills: Iterable[str]) -> None:
        index = self.columns.skill_index
        new = sum(1 for skill in skills if skill not in index)
        if new and len(index) + new > SKILLS_PER_WORKSPACE_MAX:
            raise ResourceExhausted(
                f"a workspace may use at most {SKILLS_PER_WORKSPACE_MAX} distinct skills"
            )

    def remove_worker(self, command: cmd.RemoveWorker) -> None:
        worker = self.worker(command.worker_id)
        open_tasks = self._lifecycle.tasks.open
        held = [
            task_id
            for task_id in worker.task_ids
            if open_tasks[task_id].status is not TaskStatus.RESERVED
        ]
        if held:
            raise FailedPrecondition(
                f"worker {worker.worker_id!r} holds tasks {', '.join(held)}; complete them first"
            )
        # Unavailable first, so that a rescinded task is not offered straight back.
        self.columns.available[worker.row] = False
        self.columns.refresh(worker.row)
        self.rescind_offers(worker)
        self.columns.release_row(worker.row)
        self.attributes.clear_row(worker.row)
        self._catalog.membership.clear_column(worker.row)
        self._stats.staffing_changed()
        pinned = self._matching.waiting.task_ids_pinned_to(worker.row)
        del self.worker_at_row[worker.row]
        del self.workers[worker.worker_id]
        self.worker_index.remove(worker.worker_id, worker.activity)
        for task_id in pinned:  # its row may go to another worker: they now wait for nobody
            self._routing.rederive_waiting(open_tasks[task_id])
        self._presence.worker_removed(worker.worker_id)
        self._events.append(WorkerRemoved(worker.worker_id, worker.activity))

    def set_activity(self, command: cmd.SetActivity) -> WorkerCopy:
        worker = self.worker(command.worker_id)
        activities = self._catalog.activities
        if command.activity not in activities:
            raise InvalidArgument("activity", f"unknown activity {quoted(command.activity)}")
        if command.activity != worker.activity:
            self.move_activity(worker, command.activity, self.eligible(worker))
        return self.copy(worker)

    def move_activity(self, worker: WorkerRecord, activity: str, was_available: bool) -> None:
        """Moves a worker to another (known) activity; `was_available`: its eligibility before
        this command changed anything."""
        self._record_activity_change(worker, activity)
        self.availability_changed(worker, was_available)

    def _record_activity_change(self, worker: WorkerRecord, activity: str) -> None:
        self._events.append(WorkerActivityChanged(worker.worker_id, activity, worker.activity))
        self.worker_index.move(worker.worker_id, worker.activity, activity)
        worker.activity = activity

    def availability_changed(
        self, worker: WorkerRecord, was_available: bool, *, rescind: bool = True
    ) -> None:
        """Acts on a worker whose eligibility (activity, drain, presence) may have changed:
        serves it when it became eligible, else rescinds its pending offers (unless `rescind`
        is False: a lost worker's offers wait for it through its grace)."""
        available = self.eligible(worker)
        self.columns.available[worker.row] = available
        self.columns.refresh(worker.row)
        if available == was_available:
            return
        self._stats.staffing_changed()
        if available:
            if not worker.task_ids:
                self._set_idle(worker)
            self._matching.serve_worker(worker)
        elif rescind:
            self.rescind_offers(worker)

    def rescind_offers(self, worker: WorkerRecord) -> None:
        """The worker is no longer eligible: its pending offers, and its consult offers (failing
        the warm transfers they served), are withdrawn."""
        offers = self._offers
        open_tasks = self._lifecycle.tasks.open
        for task_id in list(worker.task_ids):
            reservation = offers.offer_to(open_tasks[task_id], worker.worker_id)
            if reservation is not None:
                offers.end_offer(reservation, ReservationStatus.RESCINDED, exclude=False)
        self._conversations.rescind_invites(worker)

    # -- capacity ---------------------------------------------------------------------------

    def hold(self, worker: WorkerRecord, task: TaskRecord) -> None:
        """The worker takes a share of its capacity for the task (offered to it)."""
        channel = task.spec.channel
        worker.task_ids[task.task_id] = None
        worker.load_by_channel[channel] = worker.load_by_channel.get(channel, 0) + 1
        columns = self.columns
        columns.add_load(worker.row, columns.channel_index.get(channel), 1)

    def release(self, worker: WorkerRecord, task: TaskRecord) -> None:
        """The task's share of the worker's capacity is free again."""
        channel = task.spec.channel
        del worker.task_ids[task.task_id]
        worker.load_by_channel[channel] -= 1
        if not worker.load_by_channel[channel]:
            del worker.load_by_channel[channel]
        columns = self.columns
        columns.add_load(worker.row, columns.channel_index.get(channel), -1)
        if not worker.task_ids:
            self._set_idle(worker)

    def _set_idle(self, worker: WorkerRecord) -> None:
        now_ms = self._clock.now_ms
        worker.idle_since_ms = now_ms
        self.columns.features[worker.row, IDLE_SINCE_MS] = now_ms

    # -- snapshot and digest ----------------------------------------------------------------

    def save(self) -> RosterShare:
        columns = self.columns
        return RosterShare(
            channel_columns=columns.channel_index.names(),
            skill_columns=columns.skill_index.names(),
            language_columns=columns.language_index.names(),
            workers=[
                SavedWorker(
                    w.profile,
                    w.row,
                    w.activity,
                    w.idle_since_ms,
                    w.load_by_channel,
                    list(w.task_ids),
                )
                for w in self.workers.values()
            ],
        )

    def restore_columns(self, share: RosterShare) -> None:
        """The column numbers, first: the configuration's restore may add columns."""
        columns = self.columns
        for name in share.channel_columns:
            columns.channel_col(name)
        for name in share.skill_columns:
            columns.skill_col(name)
        for name in share.language_columns:
            columns.language_col(name)

    def restore_workers(self, share: RosterShare) -> None:
        columns = self.columns
        for saved in share.workers:
            row = saved.row
            columns.claim_row(row)
            worker = WorkerRecord(
                saved.profile, row, saved.activity, saved.idle_since_ms,
                dict(saved.load_by_channel), dict.fromkeys(saved.task_ids),
            )  # fmt: skip
            self.workers[saved.profile.worker_id] = worker
            self.worker_index.add(saved.profile.worker_id, saved.activity)
            self.worker_at_row[row] = saved.profile.worker_id
            for channel, load in saved.load_by_channel.items():
                columns.load[row, columns.channel_index.get(channel)] = load
            columns.held_tasks[row] = sum(saved.load_by_channel.values())
            columns.available[row] = self.eligible(worker)
            columns.write_profile(row, saved.profile)  # prices the load, refreshes readiness
            idle_since_ms = float("inf") if saved.task_ids else saved.idle_since_ms
            columns.features[row, IDLE_SINCE_MS] = idle_since_ms
            self.attributes.set_row(row, worker_document(saved.profile))
        columns.reclaim_free_rows()

    def digest_state(self) -> list[list[Any]]:
        return [
            [w.profile, w.row, w.activity, w.idle_since_ms, w.load_by_channel, list(w.task_ids)]
            for w in self.workers.values()
        ]


def _check_capacity_covers_load(worker: WorkerRecord, profile: WorkerProfile) -> None:
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


def worker_document(profile: WorkerProfile) -> dict[str, Any]:
    """What a target expression sees of a worker: its attributes and the reserved keys."""
    return {
        **profile.attributes,
        "skills": dict(profile.skills),
        "languages": list(profile.languages),
        "empathy": profile.empathy,
        "worker_id": profile.worker_id,
    }
