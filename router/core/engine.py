"""The routing engine: the whole state of one workspace and the only code that changes it.

Pure: no I/O, no wall clock, no global randomness. Time enters with each command (`now_ms`), and
timers fire at their due time before the command is applied, so the same commands at the same
times always give the same state and the same events (`digest()` proves it).

`Engine` is a thin face: it dispatches commands and answers reads, and the work is done by its
parts, each owning its state and its share of the snapshot and of the digest:

    timers.py      the clock and the timer queue (offer expiry, wrap-up, ttl, steps, rounds)
    catalog.py     channels, activities, queues, policies, and queue membership
    roster.py      workers, their numpy columns, and the holding and release of capacity
    lifecycle.py   tasks and the moves of their status (`transitions.py`, one table)
    offers.py      reservations: offering, accepting, rejecting, expiry
    presence.py    whether agents are there: grace, re-queue after a disconnect, drain, away
    routing.py     arrival at a queue, routing steps, exception and wait-time rules
    matching.py    who gets what: routing a task, serving a worker, assignment rounds
    statistics.py  per-queue counters, wait estimates and queue statistics
    histories.py   customers and client request ids, bounded
    customers.py   customers' routing context (`customer.*`) and the timeline settings
    identifiers.py task and reservation ids, unguessable and replayable
    conversations.py  transfers, pause and resume, participants (consults, monitors)
    audit.py       the invariants and the digest"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Never, TypeVar

from router.core import commands as cmd
from router.core.audit import Audit
from router.core.catalog import Catalog
from router.core.columns import WorkerColumns
from router.core.conversation_model import ConversationView
from router.core.conversations import Conversations
from router.core.customers import Customers, CustomerView
from router.core.errors import NotFound
from router.core.events import Event
from router.core.histories import Histories
from router.core.identifiers import Identifiers
from router.core.lifecycle import TaskLifecycle
from router.core.matching import Matching
from router.core.model import (
    DEFAULT_CHANNELS,
    QueueConfig,
    Reservation,
    RoutingPolicy,
    TaskRecord,
    WorkerRecord,
)
from router.core.offers import Offers
from router.core.presence import Presence
from router.core.results import (
    CreatedTask,
    QueueStats,
    UpsertedPolicy,
    UpsertedQueue,
    UpsertedWorker,
    WorkerCopy,
    WorkerPage,
)
from router.core.roster import Roster
from router.core.routing import Routing
from router.core.statistics import OfferRate, QueueCounters, Statistics
from router.core.task_index import SEQ, TASK_ID, TaskFilter
from router.core.task_table import TaskCopy, TaskPage, TaskTable
from router.core.timers import Clock, TimerKind, TimerQueue
from router.core.validation import check_id
from router.core.waiting import WaitingIndex
from router.core.windows import MINUTE_MS, Windows

__all__ = [
    "CreatedTask",
    "Engine",
    "QueueStats",
    "UpsertedPolicy",
    "UpsertedQueue",
    "UpsertedWorker",
    "WorkerCopy",
    "WorkerPage",
]

R = TypeVar("R")


class Engine:
    """One workspace's routing state. Apply commands with `apply`; read between commands."""

    def __init__(self) -> None:
        self._clock = Clock()
        self._events: list[Event] = []
        self.timers = TimerQueue()
        self.histories = Histories()
        self.identifiers = Identifiers()
        self.statistics = Statistics()
        self.windows = Windows()
        self._pruned_minute = 0
        self.catalog = Catalog()
        self.roster = Roster(DEFAULT_CHANNELS)
        self.lifecycle = TaskLifecycle()
        self.offers = Offers()
        self.routing = Routing()
        self.matching = Matching()
        self.conversations = Conversations()
        self.presence = Presence()
        self.customers = Customers()
        self._connect()
        self.audit = Audit(
            clock=self._clock, timers=self.timers, catalog=self.catalog, roster=self.roster,
            lifecycle=self.lifecycle, offers=self.offers, routing=self.routing,
            matching=self.matching, statistics=self.statistics, histories=self.histories,
            identifiers=self.identifiers, conversations=self.conversations,
            presence=self.presence, customers=self.customers,
        )  # fmt: skip
        self._handlers: dict[type, Callable[[Any], Any]] = {}
        catalog, roster, lifecycle, offers = self.catalog, self.roster, self.lifecycle, self.offers
        self._on(cmd.UpsertChannel, self._upsert_channel)
        self._on(cmd.UpsertActivity, catalog.upsert_activity)
        self._on(cmd.UpsertQueue, catalog.upsert_queue)
        self._on(cmd.DeleteQueue, catalog.delete_queue)
        self._on(cmd.UpsertRoutingPolicy, catalog.upsert_policy)
        self._on(cmd.DeleteRoutingPolicy, catalog.delete_policy)
        self._on(cmd.UpsertWorker, roster.upsert_worker)
        self._on(cmd.RemoveWorker, roster.remove_worker)
        self._on(cmd.SetActivity, roster.set_activity)
        self._on(cmd.CreateTask, lifecycle.create_task)
        self._on(cmd.UpdateTask, lifecycle.update_task)
        self._on(cmd.CancelTask, lifecycle.cancel_task)
        self._on(cmd.CompleteTask, lifecycle.complete_task)
        self._on(cmd.WrapUpTask, lifecycle.wrap_up_task)
        self._on(cmd.AcceptOffer, self._accept_offer)
        self._on(cmd.RejectOffer, self._reject_offer)
        conversations = self.conversations
        self._on(cmd.TransferTask, conversations.transfer_task)
        self._on(cmd.CancelTransfer, conversations.cancel_transfer)
        self._on(cmd.PauseTask, conversations.pause_task)
        self._on(cmd.ResumeTask, conversations.resume_task)
        self._on(cmd.AddParticipant, conversations.add_participant)
        self._on(cmd.RemoveParticipant, conversations.remove_participant)
        self._on(cmd.HandOverTask, conversations.hand_over_task)
        self._on(cmd.SeedIds, self.identifiers.seed)
        self._on(cmd.Tick, _tick)
        presence = self.presence
        self._on(cmd.WorkerAttached, presence.worker_attached)
        self._on(cmd.PresenceLost, presence.presence_lost)
        self._on(cmd.AllPresenceLost, presence.all_presence_lost)
        self._on(cmd.WorkerDetached, presence.worker_detached)
        self._on(cmd.SetDraining, presence.set_draining)
        self._on(cmd.UpsertPresenceSettings, presence.upsert_settings)
        customers = self.customers
        self._on(cmd.RecordOutcome, customers.record_outcome)
        self._on(cmd.RecordAgentAction, customers.record_agent_action)
        self._on(cmd.AppendTimelineEntry, customers.append_entry)
        self._on(cmd.UpsertCustomerProfile, customers.upsert_profile)
        self._on(cmd.EraseCustomer, customers.erase)
        self._on(cmd.UpsertTimelineSettings, customers.upsert_settings)
        timers, routing = self.timers, self.routing
        timers.handle(TimerKind.OFFER, live=offers.offer_live, fire=offers.expire)
        timers.handle(TimerKind.WRAPUP, live=lifecycle.wrapup_live, fire=lifecycle.wrapup_ended)
        timers.handle(TimerKind.TTL, live=lifecycle.ttl_live, fire=lifecycle.expire)
        timers.handle(TimerKind.STEP, live=routing.step_live, fire=routing.step_timed_out)
        timers.handle(TimerKind.WAIT, live=routing.wait_live, fire=routing.wait_rule_due)
        timers.handle(TimerKind.ROUND, live=self.matching.round_live, fire=self.matching.round_due)
        timers.handle(
            TimerKind.CONSULT, live=conversations.consult_live, fire=conversations.consult_expired
        )
        timers.handle(
            TimerKind.PAUSE, live=conversations.pause_live, fire=conversations.pause_ran_out
        )
        timers.handle(
            TimerKind.HANDOFF_WRAPUP,
            live=conversations.wrapup_live,
            fire=conversations.wrapup_ended,
        )
        timers.handle(TimerKind.PRESENCE_GRACE, live=presence.grace_live, fire=presence.grace_over)
        timers.handle(TimerKind.REQUEUE, live=presence.requeue_live, fire=presence.requeue_due)

    def _connect(self) -> None:
        """Gives each part the others it works with."""
        clock, events, timers = self._clock, self._events, self.timers
        catalog, roster, lifecycle = self.catalog, self.roster, self.lifecycle
        offers, routing, matching = self.offers, self.routing, self.matching
        statistics, histories, identifiers = self.statistics, self.histories, self.identifiers
        catalog.connect(
            events=events, roster=roster, lifecycle=lifecycle, routing=routing,
            matching=matching, statistics=statistics,
        )  # fmt: skip
        roster.connect(
            clock=clock, events=events, catalog=catalog, lifecycle=lifecycle, offers=offers,
            routing=routing, matching=matching, statistics=statistics,
        )  # fmt: skip
        lifecycle.connect(
            clock=clock, events=events, timers=timers, catalog=catalog, roster=roster,
            offers=offers, routing=routing, matching=matching, statistics=statistics,
            histories=histories, identifiers=identifiers, conversations=self.conversations,
        )  # fmt: skip
        self.conversations.connect(
            clock=clock, events=events, timers=timers, catalog=catalog, roster=roster,
            lifecycle=lifecycle, offers=offers, routing=routing, matching=matching,
            statistics=statistics, histories=histories, identifiers=identifiers,
        )  # fmt: skip
        offers.connect(
            clock=clock, events=events, timers=timers, catalog=catalog, roster=roster,
            lifecycle=lifecycle, routing=routing, matching=matching, statistics=statistics,
            histories=histories, identifiers=identifiers,
        )  # fmt: skip
        routing.connect(
            clock=clock, events=events, timers=timers, catalog=catalog, roster=roster,
            lifecycle=lifecycle, matching=matching, conversations=self.conversations,
        )  # fmt: skip
        matching.connect(
            clock=clock, events=events, timers=timers, catalog=catalog, roster=roster,
            lifecycle=lifecycle, offers=offers, routing=routing, histories=histories,
        )  # fmt: skip
        self.presence.connect(
            clock=clock, events=events, timers=timers, catalog=catalog, roster=roster,
            lifecycle=lifecycle, matching=matching, conversations=self.conversations,
        )  # fmt: skip
        self.customers.connect(
            clock=clock, events=events, lifecycle=lifecycle, histories=histories,
            identifiers=identifiers,
        )  # fmt: skip
        lifecycle.connect_customers(self.customers)
        routing.connect_customers(self.customers)
        roster.connect_presence(self.presence)
        roster.connect_conversations(self.conversations)
        offers.connect_presence(self.presence)
        offers.connect_conversations(self.conversations)
        statistics.connect(
            clock=clock, queues=catalog.queues, membership=catalog.membership,
            columns=roster.columns, waiting=matching.waiting, task_routing=routing.of_task,
            open_tasks=lifecycle.tasks.open,
        )  # fmt: skip

    def _upsert_channel(self, command: cmd.UpsertChannel) -> str:
        """A channel, with its re-queue delay after a disconnect (kept by presence)."""
        self.presence.check_channel_requeue(command)
        display_name = self.catalog.upsert_channel(command)
        self.presence.set_channel_requeue(command)
        return display_name

    def _on(self, kind: type[cmd.Command[R]], handler: Callable[[Never], R]) -> None:
        """Routes commands of one type to their handler, which returns the command's R."""
        self._handlers[kind] = handler

    # == applying commands =====================================================================

    @property
    def now_ms(self) -> int:
        """The time of the latest command (or timer) applied."""
        return self._clock.now_ms

    @now_ms.setter
    def now_ms(self, now_ms: int) -> None:
        self._clock.now_ms = now_ms

    def apply(self, command: cmd.Command[R], now_ms: int) -> R:
        """Fires the timers due by `now_ms`, then applies the command. Raises a CoreError (and
        changes nothing but the timers) when the command is refused."""
        clock = self._clock
        if now_ms < clock.now_ms:
            raise ValueError(f"time went backwards: {now_ms} < {clock.now_ms}")
        if now_ms // MINUTE_MS != self._pruned_minute:
            self._pruned_minute = now_ms // MINUTE_MS
            self.windows.prune(now_ms)
        first_event = len(self._events)
        try:
            self.timers.fire_due(now_ms, clock)
            clock.now_ms = now_ms
            result: R = self._handlers[type(command)](command)
        finally:  # a refused command may follow timers that fired
            self.windows.observe(self._events[first_event:], clock.now_ms)
        return result

    def _accept_offer(self, command: cmd.AcceptOffer) -> TaskCopy:
        """An offer's acceptance; a consult offer's goes to the conversations."""
        if command.reservation_id in self.conversations.invites:
            copy: TaskCopy = self.conversations.accept_consult(command)
            return copy
        return self.offers.accept_offer(command)

    def _reject_offer(self, command: cmd.RejectOffer) -> None:
        if command.reservation_id in self.conversations.invites:
            self.conversations.reject_consult(command)
        else:
            self.offers.reject_offer(command)

    def take_events(self) -> list[Event]:
        """The events emitted since the last call, in order."""
        events = self._events.copy()
        self._events.clear()
        return events

    def next_timer_ms(self) -> int | None:
        """When the earliest timer falls due (the service ticks then), or None."""
        return self.timers.next_due_ms()

    # == reads =================================================================================

    @property
    def channels(self) -> dict[str, str]:
        return self.catalog.channels

    @property
    def activities(self) -> dict[str, bool]:
        return self.catalog.activities

    @property
    def queues(self) -> dict[str, QueueConfig]:
        return self.catalog.queues

    @property
    def policies(self) -> dict[str, RoutingPolicy]:
        return self.catalog.policies

    @property
    def workers(self) -> dict[str, WorkerRecord]:
        return self.roster.workers

    @property
    def columns(self) -> WorkerColumns:
        return self.roster.columns

    @property
    def tasks(self) -> TaskTable:
        return self.lifecycle.tasks

    @property
    def reservations(self) -> dict[str, Reservation]:
        return self.offers.reservations

    @property
    def waiting(self) -> WaitingIndex:
        return self.matching.waiting

    @property
    def counters(self) -> dict[str, QueueCounters]:
        return self.statistics.counters

    def get_task(self, task_id: str) -> TaskRecord:
        """The task (a closed task's is a decoded copy)."""
        return self.lifecycle.task(task_id)

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
        scan = self.lifecycle.tasks.index.scan(
            task_filter, after_seq=after_seq, count_max=count_max, scan_max=scan_max
        )
        rates: dict[tuple[str, str], OfferRate | None] = {}  # read once per queue and channel
        copies = [self._copy(keys[TASK_ID], rates) for keys in scan.found]
        return TaskPage([copy for copy in copies if copy is not None], scan.resume_after_seq)

    def _copy(
        self, task_id: str, rates: dict[tuple[str, str], OfferRate | None]
    ) -> TaskCopy | None:
        tasks = self.lifecycle.tasks
        task = tasks.open.get(task_id)
        if task is not None:
            return self.statistics.copy(task, rates)
        closed = tasks.closed.get(task_id)
        if closed is None:
            return None
        keys, data = closed
        return TaskCopy(keys[SEQ], None, data)

    def conversation_of(self, task_id: str) -> ConversationView:
        """A copy of the task's conversation: primary, participants, transfers, pauses."""
        return self.conversations.view(task_id)

    def get_worker(self, worker_id: str) -> WorkerRecord:
        return self.roster.worker(worker_id)

    def list_workers(self, *, activity: str, after_worker_id: str, count_max: int) -> WorkerPage:
        """Copies of up to `count_max` workers after `after_worker_id` in id order (of one
        activity unless it is empty): O(log n + count_max)."""
        return self.roster.list_workers(
            activity=activity, after_worker_id=after_worker_id, count_max=count_max
        )

    def workers_by_activity(self) -> dict[str, int]:
        return self.roster.workers_by_activity()

    def get_queue(self, queue_id: str) -> QueueConfig:
        return self.catalog.queue(queue_id)

    def get_policy(self, policy_id: str) -> RoutingPolicy:
        return self.catalog.policy(policy_id)

    def queue_position(self, task_id: str) -> int:
        """0-based position of a pending task in its queue (0 when not waiting)."""
        waiting = self.matching.waiting
        return waiting.position(task_id) if task_id in waiting else 0

    def estimated_wait_ms(self, task_id: str) -> int | None:
        """Time until the task is offered (see `Statistics.estimated_wait_ms`)."""
        return self.statistics.estimated_wait_ms(task_id)

    def queue_stats(self, queue_id: str) -> QueueStats:
        return self.statistics.queue_stats(queue_id)

    def customer_context(self, customer_key: str) -> CustomerView | None:
        """What routing knows of the customer now (None: nothing): O(contacts kept)."""
        return self.customers.view(customer_key)

    # == audit =================================================================================

    def check_invariants(self) -> None:
        """Raises AssertionError when the state breaks a rule that must always hold (see
        `Audit.check_invariants`). O(state): for tests."""
        self.audit.check_invariants()

    def digest(self) -> str:
        """A hash of the whole routing state: equal states give equal digests, whether live,
        replayed from the journal or restored from a snapshot. It reads everything (about a
        second at 100k tasks of 8 KB attributes): take it off the writer's loop."""
        return self.audit.digest()

    def digest_state(self) -> dict[str, Any]:
        """The state that `digest` hashes, part by part (to see which part two states differ
        in). Values are the records themselves: the digest encodes them with sorted sets and
        dict keys, so that neither hash seeds nor insertion orders that do not matter show."""
        return self.audit.digest_state()


def _tick(_: cmd.Tick) -> None:
    """A Tick only fires the timers due (which `apply` does before every command)."""
