"""The store contract (`router.store.protocols`): every MUST of `Journal` and `Lease`, checked
against each implementation, the Redis one (on a real Redis server) and the in-memory one that
the simulation runs the writer on. One suite, so that the two cannot drift apart."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis

from router.store.embedded import NO_RETRY, EmbeddedRedis
from router.store.errors import Fenced, StoreUnavailable
from router.store.journal import RedisJournal
from router.store.lease import RedisLease
from router.store.memory import MemoryJournal, MemoryLease, MemoryStore, _Data
from router.store.protocols import EventRetention, Journal, Lease, entry_key, epoch_of

WORKSPACE = "contract"
TTL_S = 0.3


class Backend:
    """One store: journals and leases made on it see each other, as routers sharing it do."""

    def journal(self, event_retention: EventRetention = EventRetention()) -> Journal:  # noqa: B008
        raise NotImplementedError

    def lease(self, address: str, ttl_s: float = 30.0) -> Lease:
        raise NotImplementedError

    async def wipe(self) -> None:
        """The store restarts empty."""
        raise NotImplementedError

    def outage(self) -> None:
        """The store stops answering."""
        raise NotImplementedError

    async def close(self) -> None:
        pass


class RedisBackend(Backend):
    def __init__(self, server: EmbeddedRedis) -> None:
        self._server = server
        self._client = aioredis.from_url(server.url, socket_timeout=2, retry=None)

    def journal(self, event_retention: EventRetention = EventRetention()) -> Journal:  # noqa: B008
        return RedisJournal(self._client, WORKSPACE, event_retention=event_retention)

    def lease(self, address: str, ttl_s: float = 30.0) -> Lease:
        url = self._server.url
        return RedisLease(
            self._client, WORKSPACE, address, ttl_s,
            keeper_client=lambda: redis.Redis.from_url(url, socket_timeout=1, retry=NO_RETRY),
        )  # fmt: skip

    async def wipe(self) -> None:
        await self._client.flushall()

    def outage(self) -> None:
        self._server.stop()

    async def close(self) -> None:
        await self._client.aclose()


class MemoryBackend(Backend):
    def __init__(self) -> None:
        self.store = MemoryStore()

    def journal(self, event_retention: EventRetention = EventRetention()) -> Journal:  # noqa: B008
        return MemoryJournal(self.store, event_retention=event_retention)

    def lease(self, address: str, ttl_s: float = 30.0) -> Lease:
        return MemoryLease(self.store, address, ttl_s)

    async def wipe(self) -> None:
        self.store.restore_data(_Data())

    def outage(self) -> None:
        self.store.available = False


Scenario = Callable[[Backend], Awaitable[None]]


@dataclass
class Store:
    make: Callable[[], Backend]

    def run(self, scenario: Scenario) -> None:
        async def main() -> None:
            backend = self.make()
            try:
                await asyncio.wait_for(scenario(backend), timeout=30)
            finally:
                await backend.close()

        asyncio.run(main())


@pytest.fixture(params=["redis", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "memory":
        yield Store(MemoryBackend)
        return
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    try:
        yield Store(lambda: RedisBackend(server))
    finally:
        server.stop()


async def leader_of(backend: Backend, address: str = "a:1", ttl_s: float = 30.0) -> Lease:
    lease = backend.lease(address, ttl_s)
    assert await lease.try_acquire()
    return lease


async def entries(journal: Journal, after: str = "0") -> list[tuple[str, bytes]]:
    return [entry async for entry in journal.entries_after(after)]


async def pieces(*chunks: bytes, fail: BaseException | None = None) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
    if fail is not None:
        raise fail


# -- Journal -------------------------------------------------------------------------------------


def test_appends_are_read_back_at_once_in_order_with_ids_that_only_grow(store: Store) -> None:
    async def scenario(backend: Backend) -> None:
        journal = backend.journal()
        lease = await leader_of(backend)
        assert await entries(journal) == []
        ids = []
        for i in range(5):
            ids.append(await journal.append(f"batch-{i}".encode(), lease.token))
            # Read after append: visible at once, to another journal on the same store too.
            assert (await entries(backend.journal()))[-1] == (ids[-1], f"batch-{i}".encode())
        assert [entry_key(i) for i in ids] == sorted({entry_key(i) for i in ids})
        assert await entries(journal) == [(i, f"batch-{n}".encode()) for n, i in enumerate(ids)]
        assert [i for i, _ in await entries(journal, ids[1])] == ids[2:]
        assert [i for i, _ in await journal.tail(ids[2], 10)] == ids[3:]
        assert entry_key(await journal.position()) == entry_key(ids[-1])

    store.run(scenario)


def test_bytes_come_back_unchanged(store: Store) -> None:
    async def scenario(backend: Backend) -> None:
        journal = backend.journal()
        lease = await leader_of(backend)
        odd = bytes(range(256)) * 3 + b"\x00"
        entry_id = await journal.append(odd, lease.token)
        assert await entries(journal) == [(entry_id, odd)]

    store.run(scenario)


def test_a_deposed_token_never_writes(store: Store) -> None:
    async def scenario(backend: Backend) -> None:
        journal = backend.journal()
        old = await leader_of(backend, "old:1", ttl_s=TTL_S)
        stale = old.token
        first = await journal.append(b"one", stale)
        await asyncio.sleep(TTL_S + 0.1)  # paused past its lease
        new = await leader_of(backend, "new:2")
        assert epoch_of(new.token) > epoch_of(stale)
        with pytest.raises(Fenced):
            await journal.append(b"late write", stale)
        with pytest.raises(Fenced):
            await journal.append(b"late write", stale, after_id=first)
        with pytest.raises(Fenced):
            await journal.save_snapshot(b"stale state", first, stale)
        with pytest.raises(Fenced):
            await journal.raise_position("99999999999999-0", stale)
        with pytest.raises(Fenced):
            await journal.append(b"no token", "")
        assert not await old.renew() and old.token == ""
        assert [data for _, data in await entries(journal)] == [b"one"]
        assert await journal.load_snapshot() is None
        assert entry_key(await journal.position()) == entry_key(first)
        await journal.append(b"new leader's write", new.token, after_id=first)

    store.run(scenario)


def test_an_append_after_an_entry_the_journal_does_not_end_at_is_fenced_and_ends_the_lease(
    store: Store,
) -> None:
    async def scenario(backend: Backend) -> None:
        journal = backend.journal()
        lease = await leader_of(backend)
        first = await journal.append(b"one", lease.token, after_id="0")
        second = await journal.append(b"two", lease.token, after_id=first)
        with pytest.raises(Fenced, match=f"ends at {second}, not at {first}"):
            await journal.append(b"three", lease.token, after_id=first)
        assert await lease.leader_address() == ""  # given up
        assert [data for _, data in await entries(journal)] == [b"one", b"two"]
        with pytest.raises(Fenced):
            await journal.append(b"three", lease.token, after_id=second)
        # Unchecked (None) appends only need the lease.
        again = await leader_of(backend)
        await journal.append(b"three", again.token)

    store.run(scenario)


def test_the_journal_ends_at_its_snapshot_once_trimmed_and_where_its_position_was_raised(
    store: Store,
) -> None:
    async def scenario(backend: Backend) -> None:
        journal = backend.journal()
        lease = await leader_of(backend)
        first = await journal.append(b"one", lease.token, after_id="0")
        await journal.save_snapshot(b"state", first, lease.token)
        assert await entries(journal) == []
        second = await journal.append(b"two", lease.token, after_id=first)
        raised = f"{entry_key(second)[0] + 1000}-7"
        await journal.raise_position(raised, lease.token)
        assert entry_key(await journal.position()) == entry_key(raised)
        third = await journal.append(b"three", lease.token, after_id=raised)
        assert entry_key(third) > entry_key(raised)
        await journal.raise_position(first, lease.token)  # behind: changes nothing
        assert entry_key(await journal.position()) == entry_key(third)
        assert [i for i, _ in await entries(journal)] == [third]

    store.run(scenario)


def test_an_append_sent_again_after_a_lost_reply_is_kept_once(store: Store) -> None:
    async def scenario(backend: Backend) -> None:
        journal = backend.journal()
        lease = await leader_of(backend)
        first = await journal.append(b"create task", lease.token, append_id="a1")
        again = await journal.append(b"create task", lease.token, append_id="a1")  # the retry
        assert again == first
        # The retry is recognised even with the end check of the first attempt.
        assert await journal.append(b"create task", lease.token, append_id="a1", after_id="0") == (
            first
        )
        other = await journal.append(b"create task", lease.token)  # a new, equal batch
        assert [i for i, _ in await entries(journal)] == [first, other]

    store.run(scenario)


def test_events_are_stored_with_their_batch_and_only_with_it(store: Store) -> None:
    async def scenario(backend: Backend) -> None:
        journal = backend.journal()
        lease = await leader_of(backend)
        assert await journal.events_oldest() == "0"
        first = await journal.append(b"b1", lease.token, events=b"e1", append_id="x")
        assert await journal.append(b"b1", lease.token, events=b"e1", append_id="x") == first
        await journal.append(b"no events", lease.token)
        third = await journal.append(b"b3", lease.token, events=b"e3")
        with pytest.raises(Fenced):  # an append refused stores no events either
            await journal.append(b"b4", "0|nobody", events=b"e4")
        with pytest.raises(Fenced):
            await journal.append(b"b4", lease.token, after_id=first, events=b"e4")
        lease = await leader_of(backend)  # the refusal above gave the lease up
        assert await journal.events_from("0", 10) == [(first, b"e1"), (third, b"e3")]
        assert await journal.events_from(third, 10) == [(third, b"e3")]  # inclusive
        assert await journal.events_from(first, 1) == [(first, b"e1")]
        assert await journal.events_oldest() == first
        # Snapshots trim the journal, not the events.
        await journal.save_snapshot(b"state", third, lease.token)
        assert await journal.events_from("0", 10) == [(first, b"e1"), (third, b"e3")]

    store.run(scenario)


def test_events_are_kept_within_their_retention_by_count_and_by_age(store: Store) -> None:
    async def scenario(backend: Backend) -> None:
        by_count = backend.journal(EventRetention(entries_max=3))
        lease = await leader_of(backend)
        ids = [await by_count.append(b"b", lease.token, events=b"e%d" % i) for i in range(5)]
        assert (
            await by_count.events_from("0", 10) == [(i, b"e%d" % n) for n, i in enumerate(ids)][2:]
        )
        assert await by_count.events_oldest() == ids[2]
        by_age = backend.journal(EventRetention(age_ms=100))
        await asyncio.sleep(0.2)
        last = await by_age.append(b"b", lease.token, events=b"late")
        assert await by_age.events_from("0", 10) == [(last, b"late")]

    store.run(scenario)


def test_a_snapshot_loads_whole_and_trims_only_what_it_includes(store: Store) -> None:
    async def scenario(backend: Backend) -> None:
        journal = backend.journal()
        lease = await leader_of(backend)
        ids = [await journal.append(f"b{i}".encode(), lease.token) for i in range(5)]
        assert await journal.load_snapshot() is None
        assert await journal.load_snapshot_through_id() is None
        big = bytes(range(256)) * 5000  # more than one piece
        assert await journal.save_snapshot(big, ids[2], lease.token) == len(big)
        stored = await journal.load_snapshot()
        assert stored is not None and (stored.data, stored.through_id) == (big, ids[2])
        assert await journal.load_snapshot_through_id() == ids[2]
        assert [i for i, _ in await entries(journal)] == ids[3:]  # nothing after it dropped
        size = await journal.save_snapshot(pieces(b"ab", b"", b"cd"), ids[3], lease.token)
        stored = await journal.load_snapshot()
        assert size == 4 and stored is not None and (stored.data, stored.through_id) == (
            b"abcd", ids[3],
        )  # fmt: skip
        assert [i for i, _ in await entries(journal)] == ids[4:]
        assert entry_key(await journal.position()) == entry_key(ids[4])  # trimming keeps it

    store.run(scenario)


def test_a_snapshot_save_is_all_or_nothing(store: Store) -> None:
    async def scenario(backend: Backend) -> None:
        journal = backend.journal()
        lease = await leader_of(backend, ttl_s=TTL_S)
        ids = [await journal.append(f"b{i}".encode(), lease.token) for i in range(4)]
        await journal.save_snapshot(b"first", ids[0], lease.token)
        # The pieces fail part way (the forked child died): the first snapshot stays.
        with pytest.raises(RuntimeError, match="child died"):
            await journal.save_snapshot(
                pieces(b"half", fail=RuntimeError("child died")), ids[2], lease.token
            )
        stored = await journal.load_snapshot()
        assert stored is not None and (stored.data, stored.through_id) == (b"first", ids[0])
        assert [i for i, _ in await entries(journal)] == ids[1:]

        # The lease is lost part way: fenced, and the first snapshot stays.
        async def slow_pieces() -> AsyncIterator[bytes]:
            yield b"piece one"
            await asyncio.sleep(TTL_S + 0.1)
            await leader_of(backend, "other:2")
            yield b"piece two"

        with pytest.raises(Fenced):
            await journal.save_snapshot(slow_pieces(), ids[3], lease.token)
        stored = await journal.load_snapshot()
        assert stored is not None and (stored.data, stored.through_id) == (b"first", ids[0])
        assert [i for i, _ in await entries(journal)] == ids[1:]

    store.run(scenario)


def test_tail_waits_for_the_next_append(store: Store) -> None:
    async def scenario(backend: Backend) -> None:
        journal = backend.journal()
        lease = await leader_of(backend)
        first = await journal.append(b"one", lease.token)
        started_s = time.monotonic()
        assert await journal.tail(first, 200) == []
        assert time.monotonic() - started_s >= 0.15
        waiting = asyncio.create_task(backend.journal().tail(first, 5000))
        await asyncio.sleep(0.1)
        second = await journal.append(b"two", lease.token)
        started_s = time.monotonic()
        assert await waiting == [(second, b"two")]
        assert time.monotonic() - started_s < 2

    store.run(scenario)


def test_a_store_without_replicas_acknowledges_none(store: Store) -> None:
    async def scenario(backend: Backend) -> None:
        journal = backend.journal()
        lease = await leader_of(backend)
        await journal.append(b"one", lease.token)
        assert await journal.wait_for_replicas(0, 100) == 0
        started_s = time.monotonic()
        assert await journal.wait_for_replicas(1, 100) == 0
        assert time.monotonic() - started_s < 2

    store.run(scenario)


def test_an_unreachable_store_raises_store_unavailable(store: Store) -> None:
    async def scenario(backend: Backend) -> None:
        journal = backend.journal()
        lease = await leader_of(backend)
        await journal.append(b"one", lease.token)
        backend.outage()
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: journal.append(b"two", lease.token),
            lambda: entries(journal),
            journal.position,
            journal.load_snapshot,
            lambda: journal.save_snapshot(b"x", "1-0", lease.token),
            lease.try_acquire,
            lease.leader_address,
        ]
        for call in calls:
            with pytest.raises(StoreUnavailable):
                await call()

    store.run(scenario)


# -- Lease ---------------------------------------------------------------------------------------


def test_one_lease_at_a_time_with_epochs_that_only_grow(store: Store) -> None:
    async def scenario(backend: Backend) -> None:
        ana, ben = backend.lease("ana:1"), backend.lease("ben:2")
        assert await ana.leader_address() == ""
        assert await ana.try_acquire()
        first = epoch_of(ana.token)
        assert first > 0 and ana.highest_epoch == first
        assert not await ben.try_acquire() and ben.token == ""
        assert await ben.leader_address() == "ana:1"
        assert ben.highest_epoch == first  # seen
        assert await ana.renew()
        await ben.release()  # not its lease: changes nothing
        assert await ana.leader_address() == "ana:1"
        await ana.release()
        assert ana.token == "" and await ben.leader_address() == ""
        assert await ben.try_acquire()
        assert epoch_of(ben.token) > first
        assert await ben.stored_epoch() == epoch_of(ben.token)

    store.run(scenario)


def test_a_lease_neither_renewed_nor_released_expires(store: Store) -> None:
    async def scenario(backend: Backend) -> None:
        ana, ben = backend.lease("ana:1", TTL_S), backend.lease("ben:2")
        assert await ana.try_acquire()
        assert ana.ttl_ms == round(TTL_S * 1000)
        await asyncio.sleep(TTL_S / 2)
        assert await ana.renew()  # extended: still held past the first TTL
        await asyncio.sleep(TTL_S * 0.7)
        assert not await ben.try_acquire()
        await asyncio.sleep(TTL_S + 0.1)
        assert await ben.try_acquire()
        assert not await ana.renew() and ana.token == ""
        ana.forget()
        assert ana.token == ""

    store.run(scenario)


def test_a_store_that_restarted_empty_is_seen_and_never_gives_an_epoch_again(
    store: Store,
) -> None:
    async def scenario(backend: Backend) -> None:
        journal = backend.journal()
        ana = await leader_of(backend, "ana:1")
        await journal.append(b"one", ana.token)
        seen = ana.highest_epoch
        await ana.release()
        await backend.wipe()
        assert await journal.position() in ("0", "0-0")
        assert await ana.stored_epoch() == 0 < seen  # how a router tells
        assert await ana.try_acquire()
        assert epoch_of(ana.token) > seen

    store.run(scenario)


def test_a_keeper_renews_while_the_writer_lives_and_reports_the_loss_once(store: Store) -> None:
    async def scenario(backend: Backend) -> None:
        lease = await leader_of(backend, "ana:1", ttl_s=TTL_S)
        alive = threading.Event()
        alive.set()
        lost: list[str] = []
        reported = threading.Event()

        def on_lost(reason: str) -> None:
            lost.append(reason)
            reported.set()

        keeper = lease.keeper(
            acquired_at_s=time.monotonic(), writer_alive=alive.is_set, on_lost=on_lost
        )
        keeper.start()
        try:
            await asyncio.sleep(TTL_S * 3)
            assert lost == []
            assert await backend.lease("ben:2").leader_address() == "ana:1"  # renewed
            alive.clear()  # the writer is stuck
            assert await asyncio.to_thread(reported.wait, 5)
            await asyncio.sleep(TTL_S + 0.1)
            assert len(lost) == 1
            ben = backend.lease("ben:2")
            assert await ben.try_acquire()  # the unrenewed lease expired
            await ben.release()
        finally:
            keeper.stop()

        # A keeper whose lease is taken reports it.
        other = await leader_of(backend, "cy:3", ttl_s=TTL_S)
        taken = threading.Event()
        keeper = other.keeper(
            acquired_at_s=time.monotonic(), writer_alive=lambda: True,
            on_lost=lambda reason: taken.set(),
        )  # fmt: skip
        await other.release()
        await leader_of(backend, "dee:4")
        keeper.start()
        try:
            assert await asyncio.to_thread(taken.wait, 5)
        finally:
            keeper.stop()

    store.run(scenario)
