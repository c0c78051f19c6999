"""The timeline's projector: folds the event feed into per-customer timeline entries in Redis.

It runs on the leader only (it starts when this router takes the lead and stops when it loses
it), as an internal subscriber of the EventHub, from the cursor it stored with the entries it
last wrote: the hub reads the journal's event stream while that cursor is older than its ring,
so a new leader resumes where the old one's projector left off, with no gap. Each delivery's
entries and its cursor are written in one atomic step (a Lua script); a delivery whose write
failed comes again (at least once), and a task's entry skips the events it already folded
(`router.timeline.entries`), so nothing is duplicated either.

Open tasks' entries stay in memory (bounded; loaded back from Redis when unknown), so a task's
events cost no read. A customer whose data key is gone (erased) is skipped: nothing of it is
recreated. Sealing runs off the writer's loop when a delivery touches many entries."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Protocol

from redis.exceptions import RedisError

from router.core.errors import OutOfRange, ResourceExhausted
from router.core.feed import EventType, FeedEvent
from router.core.model import TimelineSettings
from router.obs.metrics import RouterMetrics
from router.privacy.customer_keys import CustomerKeys
from router.privacy.sealing import SealedDataError, seal
from router.stopping import cancel_until_done
from router.timeline.entries import (
    CLOSING_TYPES,
    TASK_TYPES,
    Entry,
    action_entry,
    decode_entry,
    encode_entry,
    external_entry,
    fold_task,
    new_task_entry,
    outcome_entry,
    task_entry_id,
)
from router.timeline.store import PendingWrite, TimelineStore
from router.writer.eventhub import (
    Cursor,
    Delivery,
    EventFilter,
    FeedEnded,
    Subscription,
    parse_cursor,
)
from router.writer.leadership import Role

__all__ = [
    "NOT_CUSTOMER_TASKS_MAX",
    "OPEN_ENTRIES_CACHED_MAX",
    "RETRY_AFTER_S",
    "SEAL_INLINE_MAX",
    "SWEEP_CUSTOMERS_MAX",
    "SWEEP_EVERY_S",
    "FeedSource",
    "TimelineProjector",
]  # fmt: skip

log = logging.getLogger(__name__)

OPEN_ENTRIES_CACHED_MAX: Final = 100_000
"""Open tasks' entries kept in memory (about 1 KB each); beyond it the least recently touched
is read back from Redis when its task's next event comes."""
NOT_CUSTOMER_TASKS_MAX: Final = 100_000
"""Task ids remembered as carrying no customer (so their events cost no lookup)."""
SEAL_INLINE_MAX: Final = 32
"""Entries a delivery seals on the loop; more are sealed in a thread (~10 us each)."""
SWEEP_EVERY_S: Final = 60.0
"""How often the leader purges customers whose oldest entry is past retention."""
SWEEP_CUSTOMERS_MAX: Final = 200
"""Customers one sweep purges (one pipelined round trip); the rest wait for the next."""
RETRY_AFTER_S: Final = 1.0
"""Pause after a failed write before reading again from the stored cursor."""
MS_PER_DAY: Final = 86_400_000

PROJECTED_TYPES: Final = frozenset(
    {
        *TASK_TYPES, EventType.OUTCOME_RECORDED, EventType.AGENT_ACTION_RECORDED,
        EventType.TIMELINE_ENTRY_APPENDED, EventType.CUSTOMER_PROFILE_CHANGED,
        EventType.CUSTOMER_ERASED,
    }
)  # fmt: skip


class FeedSource(Protocol):
    """Where the projector subscribes to the feed (`RouterService.subscribe`)."""

    def __call__(
        self, *, after: Cursor | None, from_oldest: bool, event_filter: EventFilter
    ) -> Awaitable[Subscription]: ...


class TimelineProjector:
    """Folds the feed into the timeline store while this router leads."""

    def __init__(
        self,
        feed: FeedSource,
        store: TimelineStore,
        customer_keys: CustomerKeys,
        metrics: RouterMetrics,
        *,
        now_ms: Callable[[], int],
        bounds: Callable[[], TimelineSettings] = TimelineSettings,
        sweep_every_s: float = SWEEP_EVERY_S,
    ) -> None:
        """`feed`: the router's `RouterService.subscribe`; `now_ms`: the router's time (the
        engine's clock), for retention; `bounds`: the workspace's timeline settings as they
        are now (the engine's)."""
        self._feed = feed
        self._now_ms = now_ms
        self._store = store
        self._keys = customer_keys
        self._metrics = metrics
        self._bounds = bounds
        self._sweep_every_s = sweep_every_s
        self._open: OrderedDict[str, Entry] = OrderedDict()
        self._not_customer: OrderedDict[str, None] = OrderedDict()
        self._loaded_closed: dict[tuple[str, str], Entry] = {}
        """Closed tasks' entries read back for the delivery at hand (outcomes, actions)."""
        self._task: asyncio.Task[None] | None = None
        self._lag = 0
        self.position: Cursor | None = None
        """The last cursor written (None before the first)."""
        metrics.timeline_projector_lag.set_function(lambda: self._lag)

    # -- lifecycle ------------------------------------------------------------------------------

    async def follow_role(self, role: Role) -> None:
        """A role listener: runs while this router leads."""
        if role is Role.LEADER:
            self.start()
        else:
            await self.stop()

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="timeline-projector"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            await cancel_until_done(task)
        self._forget()

    def _forget(self) -> None:
        self._open.clear()
        self._not_customer.clear()

    async def _run(self) -> None:
        sweeper = asyncio.create_task(self._sweep_forever(), name="timeline-sweep")
        try:
            while True:
                try:
                    await self._follow_feed()
                    return
                except FeedEnded:
                    return
                except ResourceExhausted as error:  # fell behind the ring: read the store
                    log.info("the timeline projector reads the journal again: %s", error)
                except (RedisError, OSError, SealedDataError) as error:
                    log.warning("the timeline projector failed (%s); it resumes from its cursor",
                                error)  # fmt: skip
                    self._forget()  # what memory folded may not have been written
                    await asyncio.sleep(RETRY_AFTER_S)
        finally:
            await cancel_until_done(sweeper)

    async def _follow_feed(self) -> None:
        stored = await self._store.cursor()
        after = parse_cursor(stored) if stored else None
        event_filter = EventFilter(types=frozenset(int(t) for t in PROJECTED_TYPES))
        try:
            subscription = await self._feed(
                after=after, from_oldest=True, event_filter=event_filter
            )
        except OutOfRange as error:
            # Older than the journal keeps (or from a store that lost data): from the oldest
            # held; what fell out of the window is lost to the timeline.
            log.warning("the timeline projector restarts from the oldest event held: %s", error)
            subscription = await self._feed(after=None, from_oldest=True, event_filter=event_filter)
        self.position = after
        async for deliveries in subscription.deliveries():
            await self.apply(deliveries)
            self._lag = subscription.lag_events

    # -- folding --------------------------------------------------------------------------------

    async def apply(self, deliveries: Sequence[Delivery]) -> None:
        """Folds one delivery and writes it with its cursor (one atomic script)."""
        if not deliveries:
            return
        events = [(d.cursor, d.event) for d in deliveries if d.event is not None]
        self._loaded_closed = {}
        await self._load_tasks([e for _, e in events])
        pending = PendingWrite()
        touched: dict[tuple[str, str], Entry] = {}
        for cursor, event in events:
            self._fold(cursor, event, pending, touched)
        written = await self._seal_into(pending, touched)
        bounds = self._bounds()
        last = deliveries[-1].cursor
        cutoff_ms = self._now_ms() - bounds.retention_days * MS_PER_DAY
        purged = await self._store.write(
            pending, str(last), cutoff_ms=cutoff_ms, kept_max=bounds.entries_per_customer_max
        )
        self.position = last
        self._metrics.timeline_entries_written.inc(written)
        if purged:
            self._metrics.timeline_entries_purged.inc(purged)

    def _fold(
        self,
        cursor: Cursor,
        event: FeedEvent,
        pending: PendingWrite,
        touched: dict[tuple[str, str], Entry],
    ) -> None:
        kind = event.type
        at = (cursor.ms, cursor.seq, cursor.index)
        if kind in TASK_TYPES:
            if kind in CLOSING_TYPES:
                # Out of the open-task index even when its entry is gone (purged by retention
                # while it was open): HDEL of an id it never held costs nothing.
                pending.closed_tasks.add(event.task_id)
            entry = self._open_entry(event, pending)
            if entry is None or at <= entry.through:  # not a customer's, or delivered again
                return
            fold_task(entry, event)
            entry.through = at
            touched[(entry.customer_key, entry.entry_id)] = entry
            if kind in CLOSING_TYPES:
                self._open.pop(event.task_id, None)
                pending.opened_tasks.pop(event.task_id, None)
            return
        customer = event.customer_key
        if not customer:
            return
        if kind == EventType.CUSTOMER_ERASED:
            self._erase(customer, pending, touched)
            return
        if kind == EventType.CUSTOMER_PROFILE_CHANGED:
            pending.profiles[customer] = (event.at_ms, event.sealed)
            return
        if kind == EventType.TIMELINE_ENTRY_APPENDED:
            entry = external_entry(event, event.entry_id or f"ext:{cursor}")
            touched[(customer, entry.entry_id)] = entry
            return
        task_entry = self._known_task_entry(event, touched)
        channel = task_entry.channel if task_entry is not None else event.channel
        if kind == EventType.OUTCOME_RECORDED:
            entry = outcome_entry(event, event.entry_id or f"outcome:{cursor}", channel)
            if task_entry is not None and task_entry.task is not None and at > task_entry.through:
                task_entry.through = at
                task_entry.task.disposition = event.disposition
                task_entry.task.resolution = event.resolution
                task_entry.tags = list(event.tags)
                touched[(customer, task_entry.entry_id)] = task_entry
        else:  # AGENT_ACTION_RECORDED
            entry = action_entry(event, event.entry_id or f"action:{cursor}", channel)
        touched[(customer, entry.entry_id)] = entry

    def _open_entry(self, event: FeedEvent, pending: PendingWrite) -> Entry | None:
        task_id = event.task_id
        entry = self._open.get(task_id)
        if entry is not None:
            self._open.move_to_end(task_id)
            return entry
        if event.type != EventType.TASK_CREATED:
            return None
        if not event.customer_key:  # its later events cost no lookup
            self._remember_not_customer(task_id)
            return None
        entry = new_task_entry(event)
        self._keep_open(entry)
        pending.opened_tasks[task_id] = event.customer_key
        return entry

    def _known_task_entry(
        self, event: FeedEvent, touched: dict[tuple[str, str], Entry]
    ) -> Entry | None:
        key = (event.customer_key, task_entry_id(event.task_id))
        entry = (
            self._open.get(event.task_id)
            or touched.get(key)
            or self._loaded_closed.get((event.customer_key, event.task_id))
        )
        return entry if entry is not None and entry.customer_key == event.customer_key else None

    def _erase(
        self, customer: str, pending: PendingWrite, touched: dict[tuple[str, str], Entry]
    ) -> None:
        for key in [k for k in touched if k[0] == customer]:
            del touched[key]
        for task_id in [t for t, e in self._open.items() if e.customer_key == customer]:
            del self._open[task_id]
            pending.closed_tasks.add(task_id)
        for task_id in [t for t, c in pending.opened_tasks.items() if c == customer]:
            del pending.opened_tasks[task_id]
        pending.profiles.pop(customer, None)
        pending.erased.append(customer)

    def _keep_open(self, entry: Entry) -> None:
        self._open[entry.task_id] = entry
        self._open.move_to_end(entry.task_id)
        while len(self._open) > OPEN_ENTRIES_CACHED_MAX:
            self._open.popitem(last=False)  # still in Redis, and in the open-task index

    # -- reading back what memory lacks ---------------------------------------------------------

    async def _load_tasks(self, events: Sequence[FeedEvent]) -> None:
        """Loads the entries of the tasks these events name that memory lacks: open tasks from
        the index (one HMGET), and the entries of the tasks outcomes and actions are about
        (closed ones included), in at most three round trips."""
        unknown: list[str] = []
        about: set[tuple[str, str]] = set()
        created = {e.task_id for e in events if e.type == EventType.TASK_CREATED}
        for event in events:
            task_id = event.task_id
            if event.type in TASK_TYPES:
                if (
                    task_id not in self._open
                    and task_id not in self._not_customer
                    and task_id not in created
                ):
                    unknown.append(task_id)
            elif (
                event.type in (EventType.OUTCOME_RECORDED, EventType.AGENT_ACTION_RECORDED)
                and task_id
                and event.customer_key
                and task_id not in self._open
                and task_id not in created  # its entry is made in this delivery
            ):
                about.add((event.customer_key, task_id))
        unknown = list(dict.fromkeys(unknown))
        customers = await self._store.task_customers(unknown)
        wanted: dict[tuple[str, str], bool] = {}
        for task_id, customer in zip(unknown, customers, strict=True):
            if customer is None:
                self._remember_not_customer(task_id)
            else:
                wanted[(customer, task_id)] = True
        for pair in about:
            wanted.setdefault(pair, False)
        if not wanted:
            return
        pairs = list(wanted)
        sealed = await self._store.sealed_entries([(c, task_entry_id(t)) for c, t in pairs])
        found = [(pair, blob) for pair, blob in zip(pairs, sealed, strict=True) if blob]
        opened = await self._keys.open_many([(c, blob) for (c, _), blob in found])
        for ((customer, task_id), _), plaintext in zip(found, opened, strict=True):
            if plaintext is None:  # erased meanwhile: nothing of it is recreated
                self._remember_not_customer(task_id)
                continue
            entry = decode_entry(plaintext)
            if wanted[(customer, task_id)]:
                self._keep_open(entry)
            else:  # a closed task's entry, for this delivery's outcomes
                self._loaded_closed[(customer, task_id)] = entry
        for (customer, task_id), blob in zip(pairs, sealed, strict=True):
            if blob is None and wanted[(customer, task_id)]:
                self._remember_not_customer(task_id)

    def _remember_not_customer(self, task_id: str) -> None:
        self._not_customer[task_id] = None
        while len(self._not_customer) > NOT_CUSTOMER_TASKS_MAX:
            self._not_customer.popitem(last=False)

    # -- sealing and time -----------------------------------------------------------------------

    async def _seal_into(self, pending: PendingWrite, touched: dict[tuple[str, str], Entry]) -> int:
        """Seals the touched entries into `pending` (skipping customers without a data key);
        returns how many."""
        keys = await self._keys.data_keys(sorted({c for c, _ in touched} | set(pending.profiles)))
        for customer in set(pending.profiles) - set(keys):
            del pending.profiles[customer]
        items = [(c, e) for (c, _), e in touched.items() if c in keys]

        def seal_all() -> list[bytes]:
            return [seal(keys[c], c, encode_entry(e)) for c, e in items]

        sealed = seal_all() if len(items) <= SEAL_INLINE_MAX else await asyncio.to_thread(seal_all)
        for (customer, entry), blob in zip(items, sealed, strict=True):
            pending.entries.setdefault(customer, {})[entry.entry_id] = (entry.at_ms, blob)
        return len(items)

    # -- retention ------------------------------------------------------------------------------

    async def sweep_once(self) -> tuple[int, int]:
        """Purges customers past retention (at most `SWEEP_CUSTOMERS_MAX`); returns (customers,
        entries dropped)."""
        bounds = self._bounds()
        swept, dropped = await self._store.sweep(
            cutoff_ms=self._now_ms() - bounds.retention_days * MS_PER_DAY,
            kept_max=bounds.entries_per_customer_max,
            customers_max=SWEEP_CUSTOMERS_MAX,
        )
        if dropped:
            self._metrics.timeline_entries_purged.inc(dropped)
        return swept, dropped

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self._sweep_every_s)
            started_s = time.monotonic()
            with contextlib.suppress(RedisError, OSError):
                swept, dropped = await self.sweep_once()
                if swept:
                    log.info("retention: %d entries of %d customers purged in %.3f s",
                             dropped, swept, time.monotonic() - started_s)  # fmt: skip
