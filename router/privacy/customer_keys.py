"""Customers' data keys, kept wrapped in Redis (`sb:{workspace}:customer-keys`, one hash field
per customer key) and unwrapped into a bounded cache on the router that leads.

A data key is created the first time something of the customer is sealed, before the command
that carries the sealed bytes is journaled: the key's write precedes the journal append on the
same Redis (and in its replication stream), so a journaled command never names a key that a
crash could lose. Erasing a customer deletes its field: every value sealed with that key, in the
journal, snapshots, events and the timeline, no longer opens anywhere.

The cache must not outlive a change of leader (a router that led, lost the lease and leads again
could otherwise hold a key erased meanwhile): `forget_all` on every change of role."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from redis.asyncio import Redis

from router.privacy.keyring import Keyring
from router.privacy.sealing import (
    SealedDataError,
    customer_key,
    new_dek,
    open_sealed,
    seal,
    unwrap_dek,
    wrap_dek,
    wrapped_kek_id,
)

__all__ = [
    "DEK_CACHE_MAX", "REWRAP_PAGE", "REWRAP_YIELD_EVERY", "CustomerKeys", "MemoryWrappedKeys",
    "RedisWrappedKeys", "Rewrapped", "WrappedKeys",
]  # fmt: skip

DEK_CACHE_MAX: Final = 100_000
"""Unwrapped data keys kept in memory (32 bytes each, ~200 bytes with the map): beyond it the
least recently used is unwrapped again from Redis when next needed."""
REWRAP_PAGE: Final = 500
"""Wrapped keys read per HSCAN page while rewrapping under a new KEK."""
REWRAP_YIELD_EVERY: Final = 64
"""Data keys rewrapped between two turns of the loop (an unwrap and a wrap each, ~10 us)."""


@dataclass(slots=True)
class Rewrapped:
    """What a rewrap did, and where it left the data keys."""

    rewrapped: int
    """Data keys wrapped by an older KEK, now by the active one."""
    by_kek: dict[str, int]
    """Data keys per KEK id after the pass (HSCAN may count a key twice while keys are added)."""
    unreadable: int
    """Data keys wrapped by a KEK the keyring no longer has (left as they are)."""

    def count(self, key_id: str, *, unreadable: bool = False) -> None:
        self.by_kek[key_id] = self.by_kek.get(key_id, 0) + 1
        self.unreadable += unreadable


class WrappedKeys(Protocol):
    """Where wrapped data keys are kept, one per customer key."""

    async def get(self, customer: str) -> bytes | None: ...
    async def get_many(self, customers: Sequence[str]) -> list[bytes | None]: ...
    async def put_if_absent(self, customer: str, wrapped: bytes) -> bytes | None:
        """Stores `wrapped` unless the customer has a key; returns the key stored now (another
        router's, when it won), None if an erase came between."""
        ...

    async def delete(self, customer: str) -> bool: ...
    def scan(self) -> AsyncIterator[tuple[str, bytes]]: ...
    async def replace(self, customer: str, old: bytes, new: bytes) -> bool:
        """Sets `new` only if the stored value is still `old` (an erase meanwhile wins)."""
        ...

    async def replace_many(self, swaps: Sequence[tuple[str, bytes, bytes]]) -> list[bool]:
        """`replace` of each (customer, old, new), in one round trip."""
        ...


class RedisWrappedKeys:
    """The durable router's: a Redis hash under the workspace's hash tag."""

    def __init__(self, client: Redis, workspace: str) -> None:
        self._client = client
        self.redis_key = f"sb:{{{workspace}}}:customer-keys"

    async def get(self, customer: str) -> bytes | None:
        value = await self._client.hget(self.redis_key, customer)
        return None if value is None else _bytes(value)

    async def get_many(self, customers: Sequence[str]) -> list[bytes | None]:
        values = await self._client.hmget(self.redis_key, list(customers))
        return [None if v is None else _bytes(v) for v in values]

    async def put_if_absent(self, customer: str, wrapped: bytes) -> bytes | None:
        # One round trip (MULTI: nothing runs between the two): a new customer's first contact
        # waits for one write and its fsync, not a write and then a read.
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.hsetnx(self.redis_key, customer, wrapped)
            pipe.hget(self.redis_key, customer)
            _, stored = await pipe.execute()
        return None if stored is None else _bytes(stored)

    async def delete(self, customer: str) -> bool:
        return bool(await self._client.hdel(self.redis_key, customer))

    async def scan(self) -> AsyncIterator[tuple[str, bytes]]:
        cursor = 0
        while True:
            cursor, page = await self._client.hscan(self.redis_key, cursor, count=REWRAP_PAGE)
            assert isinstance(page, dict)  # HSCAN without NOVALUES: field -> value
            for field, value in page.items():
                yield (field.decode() if isinstance(field, bytes) else str(field)), _bytes(value)
            if cursor == 0:
                return

    async def replace(self, customer: str, old: bytes, new: bytes) -> bool:
        swapped = await self._client.eval(_COMPARE_AND_SET, 1, self.redis_key, customer, old, new)
        return bool(swapped)

    async def replace_many(self, swaps: Sequence[tuple[str, bytes, bytes]]) -> list[bool]:
        async with self._client.pipeline(transaction=False) as pipe:
            for customer, old, new in swaps:
                pipe.eval(_COMPARE_AND_SET, 1, self.redis_key, customer, old, new)
            return [bool(swapped) for swapped in await pipe.execute()]


class MemoryWrappedKeys:
    """The in-memory router's (`--no-durable`): its state, keys included, ends with it."""

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}

    async def get(self, customer: str) -> bytes | None:
        return self._keys.get(customer)

    async def get_many(self, customers: Sequence[str]) -> list[bytes | None]:
        return [self._keys.get(c) for c in customers]

    async def put_if_absent(self, customer: str, wrapped: bytes) -> bytes | None:
        return self._keys.setdefault(customer, wrapped)

    async def delete(self, customer: str) -> bool:
        return self._keys.pop(customer, None) is not None

    async def scan(self) -> AsyncIterator[tuple[str, bytes]]:
        for item in list(self._keys.items()):
            yield item

    async def replace(self, customer: str, old: bytes, new: bytes) -> bool:
        if self._keys.get(customer) != old:
            return False
        self._keys[customer] = new
        return True

    async def replace_many(self, swaps: Sequence[tuple[str, bytes, bytes]]) -> list[bool]:
        return [await self.replace(customer, old, new) for customer, old, new in swaps]


class CustomerKeys:
    def __init__(self, store: WrappedKeys, workspace: str, keyring: Keyring) -> None:
        self._store = store
        self._workspace = workspace
        self.keyring = keyring
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._creating: dict[str, asyncio.Future[bytes]] = {}
        self._rewrapping = asyncio.Lock()

    def key_of(self, customer_id: str) -> str:
        """The customer key (keyed hash) routing knows `customer_id` by."""
        return customer_key(self.keyring.hash_key, self._workspace, customer_id)

    def forget_all(self) -> None:
        """Drops every cached data key (on a change of role)."""
        self._cache.clear()

    async def seal(self, customer: str, plaintext: bytes) -> bytes:
        """`plaintext` sealed with the customer's data key, created (and stored) if new."""
        return seal(await self._dek_or_create(customer), customer, plaintext)

    async def ensure(self, customer: str) -> None:
        """Makes the customer's data key if it has none, before a command naming the customer
        is journaled with nothing sealed: the timeline's projector seals its entries with that
        key and never makes one (it cannot tell a customer it never knew from an erased one)."""
        await self._dek_or_create(customer)

    async def data_key(self, customer: str) -> bytes | None:
        """The customer's data key (None when it has none), for opening many values off the
        event loop with `sealing.open_sealed`."""
        return await self._dek(customer)

    async def data_keys(self, customers: Sequence[str]) -> dict[str, bytes]:
        """The data keys of those customers that have one, reading the keys it lacks in one
        round trip."""
        await self._load_missing(customers)
        return {c: self._cache[c] for c in customers if c in self._cache}

    async def open(self, customer: str, sealed: bytes) -> bytes | None:
        """The plaintext, or None when the customer's key is gone (erased). Raises
        `SealedDataError` when the bytes were not sealed with this customer's key."""
        dek = await self._dek(customer)
        return None if dek is None else open_sealed(dek, customer, sealed)

    async def open_many(self, items: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        """Opens many (customer key, sealed) pairs, reading the keys it lacks in one round trip;
        None for a pair whose key is gone or that does not open."""
        await self._load_missing([c for c, _ in items])
        opened: list[bytes | None] = []
        for customer, sealed in items:
            dek = self._cache.get(customer)
            try:
                opened.append(None if dek is None else open_sealed(dek, customer, sealed))
            except SealedDataError:
                opened.append(None)
        return opened

    async def exists(self, customer: str) -> bool:
        return customer in self._cache or await self._store.get(customer) is not None

    async def erase(self, customer: str) -> bool:
        """Destroys the customer's data key; True when there was one."""
        self._cache.pop(customer, None)
        return await self._store.delete(customer)

    async def rewrap_all(self) -> int:
        """Rewraps every data key wrapped by an older KEK with the active one, a page at a time
        (after a rotation, so that the old KEK can be retired); returns how many changed."""
        return (await self.rewrap()).rewrapped

    async def rewrap(self) -> Rewrapped:
        """`rewrap_all`, reporting the data keys per KEK id after the pass. One pass at a time
        (a second waits for the first). The keys of a page are swapped in one round trip, and
        the loop gets a turn every `REWRAP_YIELD_EVERY` keys, so that a router stays responsive
        however many customers there are."""
        report = Rewrapped(0, {}, 0)
        swaps: list[tuple[str, bytes, bytes]] = []
        async with self._rewrapping:
            async for scanned, (customer, wrapped) in _enumerate(self._store.scan(), 1):
                key_id = wrapped_kek_id(wrapped)
                if key_id == self.keyring.active:
                    report.count(key_id)
                else:
                    try:
                        dek = unwrap_dek(self.keyring, customer, wrapped)
                    except SealedDataError:  # its KEK left the keyring: it stays as it is
                        report.count(key_id, unreadable=True)
                    else:
                        swaps.append((customer, wrapped, wrap_dek(self.keyring, customer, dek)))
                if len(swaps) >= REWRAP_PAGE:
                    await self._swap(swaps, report)
                if scanned % REWRAP_YIELD_EVERY == 0:
                    await asyncio.sleep(0)
            await self._swap(swaps, report)
        report.by_kek = dict(sorted(report.by_kek.items()))
        return report

    async def _swap(self, swaps: list[tuple[str, bytes, bytes]], report: Rewrapped) -> None:
        """Stores the rewrapped keys of `swaps` (those not erased or changed meanwhile)."""
        if not swaps:
            return
        for swapped in await self._store.replace_many(swaps):
            if swapped:  # else erased (or rewrapped) meanwhile: no longer counted
                report.rewrapped += 1
                report.count(self.keyring.active)
        swaps.clear()

    async def _load_missing(self, customers: Sequence[str]) -> None:
        """Caches the data keys of `customers` it lacks, read in one round trip. A customer
        without one (erased), or whose key's KEK left the keyring, stays uncached: as if
        erased."""
        missing = sorted({c for c in customers if c not in self._cache})
        if not missing:
            return
        for customer, wrapped in zip(missing, await self._store.get_many(missing), strict=True):
            if wrapped is None:
                continue
            try:
                self._remember(customer, unwrap_dek(self.keyring, customer, wrapped))
            except SealedDataError:
                continue

    async def _dek(self, customer: str) -> bytes | None:
        dek = self._cache.get(customer)
        if dek is not None:
            self._cache.move_to_end(customer)
            return dek
        wrapped = await self._store.get(customer)
        if wrapped is None:
            return None
        dek = unwrap_dek(self.keyring, customer, wrapped)
        self._remember(customer, dek)
        return dek

    async def _dek_or_create(self, customer: str) -> bytes:
        # Not cached: straight to the store's put-if-absent, which answers with the key stored
        # either way (one round trip, where a read first cost a new customer two).
        dek = self._cache.get(customer)
        if dek is not None:
            self._cache.move_to_end(customer)
            return dek
        pending = self._creating.get(customer)
        if pending is not None:  # another call is creating it: share its result
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._creating[customer] = future
        try:
            # Another router (a deposed leader's last call) may have won: use what is stored.
            wrapped = wrap_dek(self.keyring, customer, new_dek())
            stored = await self._store.put_if_absent(customer, wrapped)
            if stored is None:
                raise SealedDataError(f"customer {customer}: its data key vanished as it was made")
            dek = unwrap_dek(self.keyring, customer, stored)
            self._remember(customer, dek)
            future.set_result(dek)
            return dek
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning when nobody shared it
            raise
        finally:
            del self._creating[customer]

    def _remember(self, customer: str, dek: bytes) -> None:
        self._cache[customer] = dek
        self._cache.move_to_end(customer)
        while len(self._cache) > DEK_CACHE_MAX:
            self._cache.popitem(last=False)


async def _enumerate(
    items: AsyncIterator[tuple[str, bytes]], start: int
) -> AsyncIterator[tuple[int, tuple[str, bytes]]]:
    number = start
    async for item in items:
        yield number, item
        number += 1


def _bytes(value: object) -> bytes:
    """A Redis reply as bytes (the store's clients do not decode replies)."""
    if not isinstance(value, bytes):
        raise TypeError(f"expected bytes from Redis, got {type(value).__name__}")
    return value


_COMPARE_AND_SET: Final = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  return 1
end
return 0
"""
