"""The store in memory: a journal and a lease that keep the contract of `router.store.protocols`
(fencing, ordered ids, the writer's end check, append-id dedupe, all-or-nothing snapshots,
trimming, expiry) without a server, for the simulation and the writer's unit tests.

One `MemoryStore` is the shared "server": journals and leases made on the same store see each
other's writes, as routers sharing one Redis do. Time comes from `clock_ms` (the lease's
expiry, the entry ids), so that a simulation in virtual time controls both. The store is safe
to use from several threads (a keeper may renew from its own), but `tail` waits on the event
loop of whoever calls it."""

from __future__ import annotations

import asyncio
import bisect
import copy
import secrets
import threading
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass, field

from router.store.errors import Fenced, StoreUnavailable
from router.store.keeper import ThreadKeeper
from router.store.protocols import EventRetention, StoredSnapshot, entry_key, epoch_of

__all__ = ["MemoryJournal", "MemoryKeeper", "MemoryLease", "MemoryStore"]


def _monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


@dataclass(slots=True)
class _Entry:
    entry_id: str
    batch: bytes
    append_id: str


@dataclass(slots=True)
class _Data:
    """What a Redis server would hold (copied whole by `MemoryStore.copy_data`)."""

    entries: list[_Entry] = field(default_factory=list)
    events: list[tuple[str, bytes]] = field(default_factory=list)
    """The event stream: (entry id, events), oldest first."""
    last_id: str = "0"
    """The last id given (an emptied journal remembers it)."""
    snapshot: StoredSnapshot | None = None
    lease_value: str = ""
    lease_expires_ms: int = 0
    epoch: int = 0


class MemoryStore:
    """The shared state of in-memory journals and leases (one "server")."""

    def __init__(self, clock_ms: Callable[[], int] = _monotonic_ms) -> None:
        self.clock_ms = clock_ms
        self.data = _Data()
        self.available = True
        """Set False to make every call fail with StoreUnavailable (an outage)."""
        self.lock = threading.Lock()
        self._appended: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def check(self) -> None:
        if not self.available:
            raise StoreUnavailable("the in-memory store is down")

    def copy_data(self) -> _Data:
        """A copy of everything stored, to come back to with `restore_data` (a store that
        restarts from an older copy of itself)."""
        with self.lock:
            return copy.deepcopy(self.data)

    def restore_data(self, data: _Data) -> None:
        with self.lock:
            self.data = copy.deepcopy(data)

    def lease_holder(self) -> str:
        """The lease's value (`epoch|address`), empty when none holds it (call under lock)."""
        data = self.data
        if data.lease_value and self.clock_ms() >= data.lease_expires_ms:
            data.lease_value = ""
        return data.lease_value

    def fence(self, token: str) -> None:
        """Raises Fenced unless `token` holds the lease (call under lock)."""
        if not token or self.lease_holder() != token:
            raise Fenced("this router no longer holds the lease")

    def next_id(self) -> str:
        """A new entry id after every one given (call under lock)."""
        now_ms = self.clock_ms()
        last_ms, last_seq = entry_key(self.data.last_id)
        entry_id = f"{now_ms}-0" if now_ms > last_ms else f"{last_ms}-{last_seq + 1}"
        self.data.last_id = entry_id
        return entry_id

    def waiter(self) -> asyncio.Event:
        event = asyncio.Event()
        self._appended.append((asyncio.get_running_loop(), event))
        return event

    def drop_waiter(self, event: asyncio.Event) -> None:
        self._appended = [(loop, e) for loop, e in self._appended if e is not event]

    def wake_waiters(self) -> None:
        for loop, event in self._appended:
            loop.call_soon_threadsafe(event.set)


class MemoryJournal:
    """The `Journal` contract in memory."""

    def __init__(
        self,
        store: MemoryStore,
        *,
        replicas: int = 0,
        event_retention: EventRetention = EventRetention(),  # noqa: B008 - frozen
    ) -> None:
        self.store = store
        self._retention = event_retention
        self.replicas = replicas
        """How many replicas `wait_for_replicas` reports (a store without any: 0)."""

    async def append(
        self,
        batch: bytes,
        token: str,
        *,
        after_id: str | None = None,
        append_id: str = "",
        events: bytes = b"",
    ) -> str:
        store = self.store
        store.check()
        append_id = append_id or secrets.token_hex(8)
        with store.lock:
            store.fence(token)
            data = store.data
            last = data.entries[-1] if data.entries else None
            if last is not None and last.append_id == append_id:
                return last.entry_id
            if after_id is not None:
                at = last.entry_id if last is not None else data.last_id
                if data.snapshot is not None and entry_key(data.snapshot.through_id) > entry_key(
                    at
                ):
                    at = data.snapshot.through_id
                if entry_key(at) != entry_key(after_id):
                    data.lease_value = ""  # given up: the writer steps down
                    ms, seq = entry_key(at)
                    raise Fenced(
                        f"the journal ends at {ms}-{seq}, not at {after_id} where this router "
                        "left it"
                    )
            entry = _Entry(store.next_id(), batch, append_id)
            data.entries.append(entry)
            if events:
                self._append_events(data, entry.entry_id, events)
        store.wake_waiters()
        return entry.entry_id

    def _append_events(self, data: _Data, entry_id: str, events: bytes) -> None:
        """As the Redis script does: append, then trim by count and by age (exactly)."""
        data.events.append((entry_id, events))
        retention = self._retention
        min_key = (entry_key(entry_id)[0] - retention.age_ms, 0)
        drop = max(0, len(data.events) - retention.entries_max)
        while drop < len(data.events) and entry_key(data.events[drop][0]) < min_key:
            drop += 1
        del data.events[:drop]

    async def events_from(self, entry_id: str, count: int) -> list[tuple[str, bytes]]:
        self.store.check()
        start = entry_key(entry_id)
        with self.store.lock:
            held = self.store.data.events
            at = bisect.bisect_left(held, start, key=lambda e: entry_key(e[0]))
            return held[at : at + count]

    async def events_oldest(self) -> str:
        self.store.check()
        with self.store.lock:
            held = self.store.data.events
            return held[0][0] if held else "0"

    async def wait_for_replicas(self, replicas: int, timeout_ms: int) -> int:
        self.store.check()
        if self.replicas < replicas:
            await asyncio.sleep(timeout_ms / 1000)
        return self.replicas

    async def entries_after(self, entry_id: str) -> AsyncIterator[tuple[str, bytes]]:
        self.store.check()
        for entry_id_found, batch in self._after(entry_id):
            yield entry_id_found, batch

    def _after(self, entry_id: str) -> list[tuple[str, bytes]]:
        after = entry_key(entry_id)
        with self.store.lock:
            return [
                (e.entry_id, e.batch)
                for e in self.store.data.entries
                if entry_key(e.entry_id) > after
            ]

    async def tail(self, after_id: str, block_ms: int) -> list[tuple[str, bytes]]:
        store = self.store
        store.check()
        waiter = store.waiter()
        try:
            found = self._after(after_id)
            if found or block_ms <= 0:
                return found
            try:
                await asyncio.wait_for(waiter.wait(), block_ms / 1000)
            except TimeoutError:
                return []
            store.check()
            return self._after(after_id)
        finally:
            store.drop_waiter(waiter)

    async def save_snapshot(
        self, data: bytes | AsyncIterable[bytes], through_id: str, token: str
    ) -> int:
        store = self.store
        store.check()
        with store.lock:
            store.fence(token)
        pieces: list[bytes] = []
        if isinstance(data, bytes):
            pieces.append(data)
        else:
            async for piece in data:
                store.check()
                with store.lock:
                    store.fence(token)  # each piece is a fenced write in Redis
                pieces.append(piece)
        store.check()
        joined = b"".join(pieces)
        with store.lock:
            store.fence(token)
            state = store.data
            state.snapshot = StoredSnapshot(joined, through_id)
            through = entry_key(through_id)
            state.entries = [e for e in state.entries if entry_key(e.entry_id) > through]
        return len(joined)

    async def load_snapshot(self) -> StoredSnapshot | None:
        self.store.check()
        with self.store.lock:
            return self.store.data.snapshot

    async def load_snapshot_through_id(self) -> str | None:
        snapshot = await self.load_snapshot()
        return None if snapshot is None else snapshot.through_id

    async def position(self) -> str:
        self.store.check()
        with self.store.lock:
            data = self.store.data
            position = data.last_id
            if data.snapshot is not None:
                position = max(position, data.snapshot.through_id, key=entry_key)
            ms, seq = entry_key(position)
            return "0" if (ms, seq) == (0, 0) else f"{ms}-{seq}"

    async def raise_position(self, through_id: str, token: str) -> None:
        store = self.store
        store.check()
        if through_id == "0":
            return
        with store.lock:
            store.fence(token)
            if entry_key(through_id) > entry_key(store.data.last_id):
                store.data.last_id = through_id
                store.data.entries.clear()  # as Redis' XADD MAXLEN 0 leaves it


class MemoryLease:
    """The `Lease` contract in memory."""

    def __init__(self, store: MemoryStore, address: str, ttl_s: float) -> None:
        self.store = store
        self.address = address
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.token = ""
        self.highest_epoch = 0

    async def try_acquire(self) -> bool:
        store = self.store
        store.check()
        with store.lock:
            if store.lease_holder():
                return False
            data = store.data
            data.epoch = max(data.epoch + 1, self.highest_epoch + 1)
            token = f"{data.epoch}|{self.address}"
            data.lease_value = token
            data.lease_expires_ms = store.clock_ms() + self.ttl_ms
        self.token = token
        self.highest_epoch = max(self.highest_epoch, epoch_of(token))
        return True

    async def renew(self) -> bool:
        if not self.token:
            return False
        self.store.check()
        renewed = self.renew_now(self.token)
        if not renewed:
            self.token = ""
        return renewed

    def renew_now(self, token: str) -> bool:
        """Extends the lease `token` holds (from any thread); False when it does not."""
        store = self.store
        with store.lock:
            if store.lease_holder() != token:
                return False
            store.data.lease_expires_ms = store.clock_ms() + self.ttl_ms
            return True

    async def release(self) -> None:
        if self.token:
            self.store.check()
            with self.store.lock:
                if self.store.lease_holder() == self.token:
                    self.store.data.lease_value = ""
            self.token = ""

    def forget(self) -> None:
        self.token = ""

    async def leader_address(self) -> str:
        self.store.check()
        with self.store.lock:
            value = self.store.lease_holder()
        if not value:
            return ""
        self.highest_epoch = max(self.highest_epoch, epoch_of(value))
        return value.split("|", 1)[1]

    async def stored_epoch(self) -> int:
        self.store.check()
        with self.store.lock:
            return self.store.data.epoch

    def keeper(
        self,
        *,
        acquired_at_s: float,
        writer_alive: Callable[[], bool],
        on_lost: Callable[[str], None],
    ) -> MemoryKeeper:
        return MemoryKeeper(
            self, self.token, acquired_at_s=acquired_at_s, writer_alive=writer_alive,
            on_lost=on_lost,
        )  # fmt: skip


class MemoryKeeper(ThreadKeeper):
    """Renews an in-memory lease from a thread of its own, as the Redis keeper does
    (`router.store.keeper` says when it stops)."""

    def __init__(
        self,
        lease: MemoryLease,
        token: str,
        *,
        acquired_at_s: float,
        writer_alive: Callable[[], bool],
        on_lost: Callable[[str], None],
    ) -> None:
        super().__init__(
            lease.ttl_ms, acquired_at_s=acquired_at_s, writer_alive=writer_alive, on_lost=on_lost,
            thread_name="memory-lease-keeper",
        )  # fmt: skip
        self._lease = lease
        self._token = token

    def _renew_once(self) -> bool:
        if not self._lease.store.available:
            raise StoreUnavailable("the in-memory store is down")
        return self._lease.renew_now(self._token)

    def _close(self) -> None:
        pass  # renewals hold no connection
