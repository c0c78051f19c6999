"""Presence: whether each worker's agent desktop is there, and what happens when it is not.

The Connect stream is the agent's presence, but streams live at the edge: the service issues
commands when one starts (`WorkerAttached`), ends with a goodbye (`WorkerDetached`), or ends
without one or falls silent (`PresenceLost`; `AllPresenceLost` for a new leader, which holds no
streams). Everything else happens here, on core timers, so that it replays exactly:

    lost ──grace──► moved to the lost activity (default offline), pending offers rescinded
     │                and their tasks routed elsewhere at once
     └──requeue_after_disconnect_s (per channel, off by default)──► its assigned tasks of that
                      channel go back to routing, keeping their age, preferring this worker

A worker whose presence is lost receives no new offers (its pending ones wait for it through the
grace), and a reconnect (a hello) before a timer falls due cancels it. A draining worker
finishes what it holds and receives nothing new. With `missed_offers_max` set, a worker that
lets that many offers in a row time out moves to the away activity.

State is kept only for workers that have some (connected, lost, draining or missing offers),
and the digest includes this part only once it holds something, so that a journal written
before presence existed replays to the digest it had."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from router.core import commands as cmd
from router.core.errors import FailedPrecondition, InvalidArgument, quoted
from router.core.events import Event, PresenceSettingsChanged, WorkerPresenceChanged
from router.core.limits import (
    MISSED_OFFERS_MAX_LIMIT,
    PRESENCE_GRACE_S_MAX,
    PRESENCE_TIMEOUT_S_MAX,
    REQUEUE_AFTER_DISCONNECT_S_MAX,
)
from router.core.model import PresenceSettings, TaskStatus, WorkerRecord
from router.core.results import WorkerCopy
from router.core.timers import TimerKind
from router.core.validation import check_id

if TYPE_CHECKING:
    from router.core.catalog import Catalog
    from router.core.conversations import Conversations
    from router.core.lifecycle import TaskLifecycle
    from router.core.matching import Matching
    from router.core.roster import Roster
    from router.core.timers import Clock, TimerQueue

_REF_SEPARATOR = "/"
"""Between the worker and the channel in a REQUEUE timer's ref (ids never contain it)."""


class PresenceChange(Enum):
    """What `WorkerPresenceChanged.change` says happened."""

    CONNECTED = "connected"
    """A hello arrived (a reconnect within grace keeps everything)."""
    LOST = "lost"
    """The stream ended without a goodbye, or fell silent: the grace starts."""
    DISCONNECTED = "disconnected"
    """The agent said goodbye."""
    EXPIRED = "expired"
    """The grace ran out: the worker moved to the lost activity, its offers were rescinded."""
    AWAY = "away"
    """The worker let `missed_offers_max` offers in a row time out: moved to the away activity."""
    DRAINING = "draining"
    UNDRAINED = "undrained"


@dataclass(slots=True)
class WorkerPresence:
    """One worker's presence (kept only while it differs from the default: absent)."""

    connected: bool = False
    lost_ms: int = 0
    """When its stream was lost (0: not lost). A lost worker receives no new offers."""
    grace_due_ms: int = 0
    """When its grace runs out (0: not running)."""
    missed_offers: int = 0
    """Offers in a row it let time out (counted only with `missed_offers_max` set)."""
    draining: bool = False

    def is_default(self) -> bool:
        return not (
            self.connected or self.lost_ms or self.grace_due_ms or self.missed_offers
            or self.draining
        )  # fmt: skip


@dataclass(slots=True)
class PresenceShare:
    """Presence's share of a snapshot (empty in snapshots taken before presence existed)."""

    settings: PresenceSettings = field(default_factory=PresenceSettings)
    requeue_after_disconnect_s: dict[str, float] = field(default_factory=dict)
    workers: list[tuple[str, WorkerPresence]] = field(default_factory=list)
    """In the order they were added."""


class Presence:
    """Per-worker presence, the workspace's presence settings and the channels' re-queue
    delays."""

    def __init__(self) -> None:
        self.settings = PresenceSettings()
        self.requeue_after_disconnect_s: dict[str, float] = {}
        """Channel -> seconds (channels without a delay are absent)."""
        self.workers: dict[str, WorkerPresence] = {}

    def connect(
        self,
        *,
        clock: Clock,
        events: list[Event],
        timers: TimerQueue,
        catalog: Catalog,
        roster: Roster,
        lifecycle: TaskLifecycle,
        matching: Matching,
        conversations: Conversations,
    ) -> None:
        self._clock = clock
        self._events = events
        self._timers = timers
        self._catalog = catalog
        self._roster = roster
        self._lifecycle = lifecycle
        self._matching = matching
        self._conversations = conversations

    # -- reads ------------------------------------------------------------------------------

    def of(self, worker_id: str) -> WorkerPresence:
        """The worker's presence (a default one, not kept, when it has none)."""
        return self.workers.get(worker_id) or WorkerPresence()

    def held_back(self, worker_id: str) -> bool:
        """Whether the worker must receive no new offers whatever its activity: it is draining
        or its stream is lost."""
        state = self.workers.get(worker_id)
        return state is not None and (state.draining or state.lost_ms != 0)

    def connected_count(self) -> int:
        return sum(1 for state in self.workers.values() if state.connected)

    # -- commands ---------------------------------------------------------------------------

    def worker_attached(self, command: cmd.WorkerAttached) -> WorkerCopy:
        worker = self._roster.worker(command.worker_id)
        if command.activity:
            self._check_activity("hello.activity", command.activity)
        was_eligible = self._roster.eligible(worker)
        state = self._state(worker.worker_id)
        if state.grace_due_ms or state.lost_ms:
            self._timers.ended()  # the grace (or re-queue) timer it cancels
        state.connected = True
        state.lost_ms = 0
        state.grace_due_ms = 0
        self._emit(worker, PresenceChange.CONNECTED, activity=command.activity)
        self._move(worker, command.activity or worker.activity, was_eligible)
        return self._roster.copy(worker)

    def presence_lost(self, command: cmd.PresenceLost) -> None:
        worker = self._roster.worker(command.worker_id)
        state = self.workers.get(worker.worker_id)
        if state is None or not state.connected:
            raise FailedPrecondition(f"worker {worker.worker_id!r} is not connected")
        self._lose(worker, state)

    def all_presence_lost(self, command: cmd.AllPresenceLost) -> int:
        workers = self._roster.workers
        lost = [
            (worker_id, state)
            for worker_id, state in sorted(self.workers.items())
            if state.connected
        ]
        for worker_id, state in lost:
            self._lose(workers[worker_id], state)
        return len(lost)

    def _lose(self, worker: WorkerRecord, state: WorkerPresence) -> None:
        """Starts the grace of a connected worker (and the re-queue timers of the channels it
        holds assigned tasks of); it receives nothing new meanwhile, its offers wait."""
        was_eligible = self._roster.eligible(worker)
        now_ms = self._clock.now_ms
        state.connected = False
        state.lost_ms = now_ms
        state.grace_due_ms = now_ms + round(self.settings.presence_grace_s * 1000)
        worker_id = worker.worker_id
        self._timers.add(state.grace_due_ms, TimerKind.PRESENCE_GRACE, worker_id)
        for channel in sorted(self._assigned_channels(worker)):
            delay_s = self.requeue_after_disconnect_s.get(channel, 0.0)
            if delay_s > 0:
                due_ms = now_ms + round(delay_s * 1000)
                self._timers.add(due_ms, TimerKind.REQUEUE, worker_id + _REF_SEPARATOR + channel)
        self._emit(worker, PresenceChange.LOST)
        self._roster.availability_changed(worker, was_eligible, rescind=False)

    def _assigned_channels(self, worker: WorkerRecord) -> set[str]:
        open_tasks = self._lifecycle.tasks.open
        return {
            task.spec.channel
            for task in (open_tasks[task_id] for task_id in worker.task_ids)
            if task.status is TaskStatus.ASSIGNED
        }

    def worker_detached(self, command: cmd.WorkerDetached) -> WorkerCopy:
        worker = self._roster.worker(command.worker_id)
        activity = command.activity or self.settings.lost_activity
        self._check_activity("goodbye.activity", activity)
        if self._catalog.activities[activity]:
            raise InvalidArgument(
                "goodbye.activity", f"{quoted(activity)} is available: a goodbye leaves for an "
                "unavailable activity (or the workspace's lost activity when empty)",
            )  # fmt: skip
        was_eligible = self._roster.eligible(worker)
        state = self._state(worker.worker_id)
        if state.grace_due_ms or state.lost_ms:
            self._timers.ended()
        state.connected = False
        state.lost_ms = 0
        state.grace_due_ms = 0
        self._forget_if_default(worker.worker_id)
        self._emit(worker, PresenceChange.DISCONNECTED, activity=activity)
        self._move(worker, activity, was_eligible)
        return self._roster.copy(worker)

    def set_draining(self, command: cmd.SetDraining) -> WorkerCopy:
        worker = self._roster.worker(command.worker_id)
        state = self._state(worker.worker_id)
        if state.draining != command.draining:
            was_eligible = self._roster.eligible(worker)
            state.draining = command.draining
            self._forget_if_default(worker.worker_id)
            change = PresenceChange.DRAINING if command.draining else PresenceChange.UNDRAINED
            self._emit(worker, change)
            self._roster.availability_changed(worker, was_eligible)
        else:
            self._forget_if_default(worker.worker_id)
        return self._roster.copy(worker)

    def upsert_settings(self, command: cmd.UpsertPresenceSettings) -> PresenceSettings:
        """Replaces the settings. A lost or away activity that does not exist yet is created,
        unavailable; one that exists must be unavailable. Timers already running keep their
        due times."""
        settings = command.settings
        _check_seconds("presence_timeout_s", settings.presence_timeout_s, PRESENCE_TIMEOUT_S_MAX)
        if settings.presence_timeout_s <= 0:
            raise InvalidArgument("presence_timeout_s", "must be above 0")
        _check_seconds("presence_grace_s", settings.presence_grace_s, PRESENCE_GRACE_S_MAX)
        if not 0 <= settings.missed_offers_max <= MISSED_OFFERS_MAX_LIMIT:
            raise InvalidArgument(
                "missed_offers_max",
                f"must be between 0 and {MISSED_OFFERS_MAX_LIMIT}, "
                f"got {settings.missed_offers_max}",
            )
        activities = self._catalog.activities
        for name, activity in (
            ("lost_activity", settings.lost_activity),
            ("away_activity", settings.away_activity),
        ):
            check_id(name, activity)
            if activities.get(activity, False):
                raise InvalidArgument(name, f"{quoted(activity)} is an available activity")
        for activity in (settings.lost_activity, settings.away_activity):
            if activity not in activities:
                self._catalog.upsert_activity(cmd.UpsertActivity(activity, available=False))
        self.settings = settings
        if settings.missed_offers_max == 0:
            for worker_id, state in list(self.workers.items()):
                if state.missed_offers:
                    state.missed_offers = 0
                    self._forget_if_default(worker_id)
        self._events.append(PresenceSettingsChanged())
        return settings

    def check_channel_requeue(self, command: cmd.UpsertChannel) -> None:
        """Refuses a bad `requeue_after_disconnect_s` before the channel changes."""
        delay_s = command.requeue_after_disconnect_s
        if delay_s is not None:
            _check_seconds("channel.requeue_after_disconnect_s", delay_s,
                           REQUEUE_AFTER_DISCONNECT_S_MAX)  # fmt: skip

    def set_channel_requeue(self, command: cmd.UpsertChannel) -> None:
        """Applies an upserted channel's `requeue_after_disconnect_s` (None: kept). Workers
        lost already keep the timers they have."""
        delay_s = command.requeue_after_disconnect_s
        if delay_s is None or delay_s == self.requeue_after_disconnect_s.get(command.channel_id, 0):
            return
        if delay_s > 0:
            self.requeue_after_disconnect_s[command.channel_id] = float(delay_s)
        else:
            del self.requeue_after_disconnect_s[command.channel_id]
        self._events.append(PresenceSettingsChanged(command.channel_id))

    # -- hooks from the other parts ---------------------------------------------------------

    def offer_timed_out(self, worker_id: str) -> None:
        """Counts a missed offer; at `missed_offers_max` in a row the worker goes away."""
        limit = self.settings.missed_offers_max
        worker = self._roster.workers.get(worker_id)
        if limit <= 0 or worker is None:
            return
        state = self._state(worker_id)
        state.missed_offers += 1
        if state.missed_offers < limit:
            return
        state.missed_offers = 0
        self._forget_if_default(worker_id)
        away = self.settings.away_activity
        reason = f"{limit} offers in a row timed out"
        self._emit(worker, PresenceChange.AWAY, activity=away, reason=reason)
        self._move(worker, away, self._roster.eligible(worker))

    def offer_answered(self, worker_id: str) -> None:
        """An accept or a reject ends a run of missed offers."""
        state = self.workers.get(worker_id)
        if state is not None and state.missed_offers:
            state.missed_offers = 0
            self._forget_if_default(worker_id)

    def worker_removed(self, worker_id: str) -> None:
        state = self.workers.pop(worker_id, None)
        if state is not None and state.lost_ms:
            self._timers.ended()

    # -- timers -----------------------------------------------------------------------------

    def grace_live(self, due_ms: int, worker_id: str) -> bool:
        state = self.workers.get(worker_id)
        return state is not None and state.grace_due_ms == due_ms

    def grace_over(self, worker_id: str) -> None:
        """The worker did not come back in time: it moves to the lost activity and its pending
        offers are rescinded, their tasks routed elsewhere at once."""
        state = self.workers[worker_id]
        state.grace_due_ms = 0
        worker = self._roster.workers[worker_id]
        lost_activity = self.settings.lost_activity
        if lost_activity not in self._catalog.activities:  # never: settings create it
            lost_activity = worker.activity
        self._emit(worker, PresenceChange.EXPIRED, activity=lost_activity)
        self._move(worker, lost_activity, self._roster.eligible(worker))
        self._roster.rescind_offers(worker)

    def requeue_live(self, due_ms: int, ref: str) -> bool:
        worker_id, _, channel = ref.partition(_REF_SEPARATOR)
        state = self.workers.get(worker_id)
        if state is None or not state.lost_ms:
            return False
        delay_s = self.requeue_after_disconnect_s.get(channel, 0.0)
        return delay_s > 0 and state.lost_ms + round(delay_s * 1000) == due_ms

    def requeue_due(self, ref: str) -> None:
        """The worker has been lost for its channel's delay: its assigned tasks of that
        channel go back to routing."""
        worker_id, _, channel = ref.partition(_REF_SEPARATOR)
        worker = self._roster.workers[worker_id]
        open_tasks = self._lifecycle.tasks.open
        held = [open_tasks[task_id] for task_id in worker.task_ids]
        for task in held:
            if task.spec.channel != channel or task.status is not TaskStatus.ASSIGNED:
                continue
            if task.worker_id == worker_id:
                self._lifecycle.requeue(task)
            else:  # a consult on another agent's task
                serve_worker = self._matching.serve_worker
                for freed in self._conversations.participant_lost(task, worker_id):
                    serve_worker(freed)

    # -- helpers ----------------------------------------------------------------------------

    def _move(self, worker: WorkerRecord, activity: str, was_eligible: bool) -> None:
        """Moves the worker to `activity` (if another) and acts on its eligibility."""
        if activity != worker.activity:
            self._roster.move_activity(worker, activity, was_eligible)
        else:
            self._roster.availability_changed(worker, was_eligible)

    def _state(self, worker_id: str) -> WorkerPresence:
        state = self.workers.get(worker_id)
        if state is None:
            state = self.workers[worker_id] = WorkerPresence()
        return state

    def _forget_if_default(self, worker_id: str) -> None:
        state = self.workers.get(worker_id)
        if state is not None and state.is_default():
            del self.workers[worker_id]

    def _check_activity(self, field_name: str, activity: str) -> None:
        if activity not in self._catalog.activities:
            raise InvalidArgument(field_name, f"unknown activity {quoted(activity)}")

    def _emit(
        self, worker: WorkerRecord, change: PresenceChange, *, activity: str = "", reason: str = ""
    ) -> None:
        self._events.append(
            WorkerPresenceChanged(
                worker.worker_id, change.value, activity or worker.activity, reason
            )
        )

    # -- snapshot and digest ----------------------------------------------------------------

    def save(self) -> PresenceShare:
        return PresenceShare(
            self.settings, dict(self.requeue_after_disconnect_s), list(self.workers.items())
        )

    def restore(self, share: PresenceShare) -> None:
        self.settings = share.settings
        self.requeue_after_disconnect_s = dict(share.requeue_after_disconnect_s)
        self.workers = dict(share.workers)

    def holds_something(self) -> bool:
        return bool(
            self.workers or self.requeue_after_disconnect_s or self.settings != PresenceSettings()
        )

    def digest_state(self) -> list[Any]:
        return [self.settings, self.requeue_after_disconnect_s, list(self.workers.items())]


def _check_seconds(field_name: str, value: float, value_max: float) -> None:
    if not math.isfinite(value) or not 0 <= value <= value_max:
        raise InvalidArgument(field_name, f"must be between 0 and {value_max:g}, got {value!r}")
