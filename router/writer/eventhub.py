"""The event feed's serving side: a ring of the latest events, filled after each durable batch,
and the subscribers reading it.

The writer's cost does not grow with the subscribers: `publish` appends a batch's events to the
ring and wakes the readers (O(events)). Each subscriber reads the ring at its own pace from its
own position; its "buffer" is how far behind the ring's head it is, bounded by
`LAG_EVENTS_MAX`, past which it is cut off (RESOURCE_EXHAUSTED, naming the cursor to resume
from). A subscriber whose cursor is older than the ring reads the journal's event stream in
pages (`Journal.events_from`), then joins the ring where the store left off: the ring holds
every event after its floor, and the store every durable event, so the switch has no gap.

Cursors are "<journal entry id>/<index in its batch>": they only grow, and a new leader, which
journals after the entries it followed, gives greater ones."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from router.core.errors import InvalidArgument, OutOfRange, ResourceExhausted
from router.core.feed import FeedEvent, decode_feed
from router.obs.metrics import RouterMetrics
from router.store.protocols import Journal, entry_key

__all__ = [
    "BATCH_EVENTS_MAX", "BATCH_LINGER_S", "CATCH_UP_PAGE_ENTRIES", "CHECKPOINT_EVERY_S",
    "CURSOR_CHARS_MAX", "LAG_EVENTS_MAX", "RING_EVENTS_MAX", "Cursor", "Delivery", "EventFilter",
    "EventHub", "FeedEnded", "Subscription", "parse_cursor",
]  # fmt: skip

RING_EVENTS_MAX = 100_000
"""Events the ring keeps (about 200 bytes each): subscribers within it never touch Redis."""
LAG_EVENTS_MAX = 50_000
"""How far behind the newest event a subscriber may fall before it is cut off (its bounded
buffer): at 1,000 events/s, 50 s of backlog."""
CATCH_UP_PAGE_ENTRIES = 256
"""Event entries (batches) read from the store at a time while catching up."""
CURSOR_CHARS_MAX = 64
"""The longest cursor a subscriber may pass (one this router gives is at most 42)."""
BATCH_EVENTS_MAX = 500
"""Most events handed to a subscriber at once (one message on its stream)."""
BATCH_LINGER_S = 0.05
"""A subscriber that was just sent a batch waits this long before the next, so that what
arrives meanwhile goes in one message: at most 20 messages a second each, whatever the rate
of batches (the cost of a subscriber is per message; 50 ms is nothing to an integration)."""
CHECKPOINT_EVERY_S = 1.0
"""A filtered subscriber past which unwanted events went gets a checkpoint this often."""
_AFTER_ENTRY = 2**31 - 1
"""An index past every event of an entry: `<entry>/2147483647` is "after that whole entry"."""


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    ms: int
    seq: int
    index: int

    @property
    def entry_id(self) -> str:
        return f"{self.ms}-{self.seq}"

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}/{self.index}"

    @classmethod
    def after_entry(cls, entry_id: str) -> Cursor:
        ms, seq = entry_key(entry_id)
        return cls(ms, seq, _AFTER_ENTRY)


def parse_cursor(text: str) -> Cursor:
    """A cursor as `str(Cursor)` wrote it; InvalidArgument naming `after_cursor` otherwise."""
    entry, _, index = text.partition("/")
    ms, _, seq = entry.partition("-")
    if not (ms.isdigit() and seq.isdigit() and index.isdigit()) or len(text) > CURSOR_CHARS_MAX:
        raise InvalidArgument("after_cursor", f"not a cursor: {text[:64]!r}")
    return Cursor(int(ms), int(seq), int(index))


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events a subscriber wants: each non-empty set must hold the event's value."""

    types: frozenset[int] = frozenset()
    queue_ids: frozenset[str] = frozenset()
    worker_ids: frozenset[str] = frozenset()
    task_ids: frozenset[str] = frozenset()
    channels: frozenset[str] = frozenset()

    def admits(self, event: FeedEvent) -> bool:
        return (
            (not self.types or event.type in self.types)
            and (not self.queue_ids or event.queue_id in self.queue_ids)
            and (not self.worker_ids or event.worker_id in self.worker_ids)
            and (not self.task_ids or event.task_id in self.task_ids)
            and (not self.channels or event.channel in self.channels)
        )

    @property
    def admits_all(self) -> bool:
        return not (self.types or self.queue_ids or self.worker_ids or self.task_ids
                    or self.channels)  # fmt: skip


@dataclass(slots=True)
class Delivery:
    """An event at its cursor, as the ring keeps it and subscribers are handed it."""

    cursor: Cursor
    event: FeedEvent | None
    """None: a checkpoint (events went by that the filter did not want)."""
    encoded: bytes | None = None
    """The API's encoding of it, made by the first subscriber it goes to and reused by the
    others (the ring hands every subscriber the same Delivery)."""


class FeedEnded(Exception):
    """This router stopped leading: the subscriber resumes at the leader."""

    def __init__(self, message: str, leader_address: str) -> None:
        super().__init__(message)
        self.message = message
        self.leader_address = leader_address


class Subscription:
    """One subscriber's reading of the feed: `deliveries()` in order, and `stopped`, a future
    the hub sets with the error that ends it (ResourceExhausted when it fell too far behind,
    FeedEnded when the router stops leading), even while a send to it is blocked."""

    def __init__(self, hub: EventHub, position: Cursor, event_filter: EventFilter) -> None:
        self._hub = hub
        self.position = position
        """The last event read (or skipped), or where reading starts."""
        self.offset: int | None = None
        """Where it reads the ring (None while it reads the store)."""
        self.filter = event_filter
        self.stopped: asyncio.Future[Exception] = asyncio.get_running_loop().create_future()

    def stop(self, error: Exception) -> None:
        if not self.stopped.done():
            self.stopped.set_result(error)

    def deliveries(self) -> AsyncGenerator[list[Delivery]]:
        return self._hub.read(self)

    @property
    def lag_events(self) -> int:
        """Events published that it has not read yet (while it reads the store: at least the
        ring's length), for an internal subscriber's lag metric."""
        return self._hub.lag_of(self)


class EventHub:
    """The ring of recent events and its subscribers, for one leadership at a time."""

    def __init__(
        self,
        metrics: RouterMetrics,
        journal: Journal | None,
        *,
        ring_events_max: int = RING_EVENTS_MAX,
        lag_events_max: int = LAG_EVENTS_MAX,
    ) -> None:
        assert lag_events_max < ring_events_max
        self._metrics = metrics
        self._journal = journal
        self._ring_max = ring_events_max
        self._lag_max = lag_events_max
        self._ring: list[Delivery] = []
        self._base = 0
        """The offset (count of events ever put in the ring) of `_ring[0]`."""
        self._floor = Cursor.after_entry("0")
        """The ring holds every event after this cursor."""
        self.newest = self._floor
        self._wake = asyncio.Event()
        self._unjournaled_seq = 0
        self._subscriptions: set[Subscription] = set()
        metrics.event_subscribers.set_function(lambda: len(self._subscriptions))
        metrics.event_subscriber_lag.set_function(self._lag_max_now)

    def _lag_max_now(self) -> int:
        head = self._base + len(self._ring)
        offsets = [s.offset for s in list(self._subscriptions) if s.offset is not None]
        return head - min(offsets) if offsets else 0

    def lag_of(self, subscription: Subscription) -> int:
        if subscription.offset is None:
            return len(self._ring)
        return self._base + len(self._ring) - subscription.offset

    def lead(self, last_entry_id: str) -> None:
        """This router leads from `last_entry_id` on: the ring starts empty after it."""
        self._base += len(self._ring)
        self._ring.clear()
        self._floor = self.newest = Cursor.after_entry(last_entry_id)

    def end_all(self, leader_address: str) -> None:
        """Ends every subscriber UNAVAILABLE, naming the leader when known."""
        to_leader = f" at {leader_address}" if leader_address else ""
        message = (
            f"this router stopped leading; resume from your last cursor at the leader{to_leader}"
        )
        for subscription in self._subscriptions:
            subscription.stop(FeedEnded(message, leader_address))
        self._wake_readers()

    def publish(self, entry_id: str, feed: list[FeedEvent]) -> None:
        """A durable batch's events (`entry_id` empty: a router that journals nothing numbers
        its batches itself). O(events + subscribers): the ring grows, the readers too far
        behind are stopped, the others woken."""
        if not entry_id:
            self._unjournaled_seq += 1
            entry_id = f"0-{self._unjournaled_seq}"
        ms, seq = entry_key(entry_id)
        ring = self._ring
        ring.extend(Delivery(Cursor(ms, seq, index), event) for index, event in enumerate(feed))
        self.newest = ring[-1].cursor
        head = self._base + len(ring)
        floor = self._floor
        for subscription in self._subscriptions:
            offset = subscription.offset
            if offset is not None:
                lag = head - offset
            elif subscription.position < floor:
                # Still reading the store (perhaps blocked sending): it is behind at least the
                # whole ring.
                lag = len(ring)
            else:  # about to find its place in the ring
                continue
            if lag > self._lag_max and not subscription.stopped.done():
                self._metrics.event_subscribers_cut_off.inc()
                subscription.stop(
                    ResourceExhausted(
                        f"this subscriber fell {lag} events or more behind the newest (at "
                        f"most {self._lag_max} are kept for it): resume after cursor "
                        f"{subscription.position}"
                    )
                )
        excess = len(ring) - self._ring_max
        if excess >= self._ring_max // 4:  # trimmed in slices: amortised O(1) per event
            self._floor = ring[excess - 1].cursor
            del ring[:excess]
            self._base += excess
        self._metrics.events_published.inc(len(feed))
        self._wake_readers()

    def _wake_readers(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def subscribe(
        self, *, after: Cursor | None, from_oldest: bool, event_filter: EventFilter
    ) -> Subscription:
        """A subscription to the events after `after` (None: from the oldest held, or from
        now) that the filter admits; OutOfRange when `after` is outside what is held."""
        if after is not None:
            await self._check_range(after)
            position = after
        elif from_oldest and self._journal is not None:
            oldest = await self._journal.events_oldest()
            position = Cursor.after_entry("0") if oldest == "0" else Cursor(*entry_key(oldest), -1)
        elif from_oldest:
            position = self._floor
        else:
            position = self.newest
        return Subscription(self, position, event_filter)

    async def read(self, subscription: Subscription) -> AsyncGenerator[list[Delivery]]:
        """The subscription's events, then the new ones as they come, in batches of those ready
        (at most `BATCH_EVENTS_MAX`: one message each, so that a subscriber costs the writer's
        loop a send per wake-up, not per event), until it is stopped (raised)."""
        self._subscriptions.add(subscription)
        try:
            async for delivery in self._read(subscription):
                yield delivery
        finally:
            self._subscriptions.discard(subscription)

    async def _read(self, subscription: Subscription) -> AsyncIterator[list[Delivery]]:
        admits = subscription.filter.admits
        admits_all = subscription.filter.admits_all
        stopped = subscription.stopped
        sent_s = time.monotonic()
        skipped = False
        while True:
            if stopped.done():
                raise stopped.result()
            if subscription.position < self._floor:  # older than the ring: from the store
                subscription.offset = None
                # The position moves past a batch once it is written (the generator resumes):
                # a cut-off's resume cursor never skips a batch still being sent.
                batch: list[Delivery] = []
                last = subscription.position
                async for cursor, event in self._from_store(subscription.position):
                    last = cursor
                    if event is not None and admits(event):
                        batch.append(Delivery(cursor, event))
                    elif event is not None:
                        skipped = True
                    if len(batch) == BATCH_EVENTS_MAX:
                        yield batch
                        batch = []
                        sent_s, skipped = time.monotonic(), False
                    if not batch:
                        subscription.position = cursor
                if batch:
                    yield batch
                    sent_s, skipped = time.monotonic(), False
                subscription.position = last
                continue
            offset = subscription.offset
            if offset is None:
                found = bisect.bisect_right(
                    self._ring, subscription.position, key=lambda d: d.cursor
                )
                offset = subscription.offset = self._base + found
            ring, base = self._ring, self._base
            end = base + len(ring)
            while offset < end and not stopped.done():
                upto = min(end, offset + BATCH_EVENTS_MAX)
                chunk = ring[offset - base : upto - base]
                offset = subscription.offset = upto  # read: its lag no longer counts them
                batch = (
                    chunk
                    if admits_all
                    else [d for d in chunk if d.event is not None and admits(d.event)]
                )
                if len(batch) < len(chunk):
                    skipped = True
                if batch:
                    yield batch
                    sent_s, skipped = time.monotonic(), False
                subscription.position = chunk[-1].cursor
                ring, base = self._ring, self._base
                end = base + len(ring)
                if offset < base:  # trimmed past it while it wrote: read the store
                    subscription.offset = None
                    break
            if stopped.done() or offset < self._base + len(self._ring):
                continue
            wake = self._wake
            if skipped and time.monotonic() - sent_s >= CHECKPOINT_EVERY_S:
                yield [Delivery(subscription.position, None)]
                sent_s, skipped = time.monotonic(), False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), CHECKPOINT_EVERY_S if skipped else None)
            linger_s = sent_s + BATCH_LINGER_S - time.monotonic()
            if linger_s > 0 and not stopped.done():
                await asyncio.sleep(linger_s)

    async def _from_store(self, position: Cursor) -> AsyncIterator[tuple[Cursor, FeedEvent | None]]:
        """The stored events after `position`, a page at a time, until the store has no more
        (then every event up to the ring's floor has been read: the store holds them all; the
        floor comes last, with no event)."""
        journal = self._journal
        if journal is None:  # a ring without a store reaches back to the start
            raise ResourceExhausted(
                f"this subscriber fell behind the events kept in memory: resume after {position}"
            )
        while True:
            page = await journal.events_from(position.entry_id, CATCH_UP_PAGE_ENTRIES)
            for entry_id, data in page:
                ms, seq = entry_key(entry_id)
                for index, event in enumerate(decode_feed(data)):
                    cursor = Cursor(ms, seq, index)
                    if cursor > position:
                        position = cursor
                        yield cursor, event
            if len(page) < CATCH_UP_PAGE_ENTRIES:
                if position < self._floor:
                    yield self._floor, None
                return

    async def _check_range(self, after: Cursor) -> None:
        if after > self.newest:
            raise OutOfRange(
                f"cursor {after} is ahead of the newest event ({self.newest}): it comes from "
                "a store that has since lost data, or from another workspace"
            )
        if self._journal is None:
            if after >= self._floor:
                return
            oldest = "0"
        else:  # the store's window, even where the ring still holds more
            oldest = await self._journal.events_oldest()
        if oldest == "0" or after < Cursor(*entry_key(oldest), 0):
            held = f"the oldest cursor held is {oldest}/0" if oldest != "0" else "none is held"
            raise OutOfRange(
                f"cursor {after} is older than the events kept (the retention window): {held}; "
                "subscribe with from_oldest to start there"
            )
