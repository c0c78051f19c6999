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
    "DEK_CACHE_MAX", "REWRAP_PAGE", "CustomerKeys", "MemoryWrappedKeys", "RedisWrappedKeys",
    "WrappedKeys",
]  # fmt: skip

DEK_CACHE_MAX: Final = 100_000
"""Unwrapped data keys kept in memory (32 bytes each, ~200 bytes with the map): beyond it the
least recently used is unwrapped again from Redis when next needed."""
REWRAP_PAGE: Final = 500
"""Wrapped keys read per HSCAN page while rewrapping under a new KEK."""


class WrappedKeys(Protocol):
    """Where wrapped data keys are kept, one per customer key."""

    async def get(self, customer: str) -> bytes | None: ...
    async def get_many(self, customers: Sequence[str]) -> list[bytes | None]: ...
    async def put_if_absent(self, customer: str, wrapped: bytes) -> None: ...
    async def delete(self, customer: str) -> bool: ...
    def scan(self) -> AsyncIterator[tuple[str, bytes]]: ...
    async def replace(self, customer: str, old: bytes, new: bytes) -> bool:
        """Sets `new` only if the stored value is still `old` (an erase meanwhile wins)."""
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

    async def put_if_absent(self, customer: str, wrapped: bytes) -> None:
        await self._client.hsetnx(self.redis_key, customer, wrapped)

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


class MemoryWrappedKeys:
    """The in-memory router's (`--no-durable`): its state, keys included, ends with it."""

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}

    async def get(self, customer: str) -> bytes | None:
        return self._keys.get(customer)

    async def get_many(self, customers: Sequence[str]) -> list[bytes | None]:
        return [self._keys.get(c) for c in customers]

    async def put_if_absent(self, customer: str, wrapped: bytes) -> None:
        self._keys.setdefault(customer, wrapped)

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


class CustomerKeys:
    def __init__(self, store: WrappedKeys, workspace: str, keyring: Keyring) -> None:
        self._store = store
        self._workspace = workspace
        self.keyring = keyring
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._creating: dict[str, asyncio.Future[bytes]] = {}

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
        missing = sorted({c for c in customers if c not in self._cache})
        if missing:
            for customer, wrapped in zip(missing, await self._store.get_many(missing), strict=True):
                if wrapped is not None:
                    self._remember(customer, unwrap_dek(self.keyring, customer, wrapped))
        return {c: self._cache[c] for c in customers if c in self._cache}

    async def open(self, customer: str, sealed: bytes) -> bytes | None:
        """The plaintext, or None when the customer's key is gone (erased). Raises
        `SealedDataError` when the bytes were not sealed with this customer's key."""
        dek = await self._dek(customer)
        return None if dek is None else open_sealed(dek, customer, sealed)

    async def open_many(self, items: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        """Opens many (customer key, sealed) pairs, reading the keys it lacks in one round trip;
        None for a pair whose key is gone or that does not open."""
        missing = sorted({c for c, _ in items if c not in self._cache})
        if missing:
            for customer, wrapped in zip(missing, await self._store.get_many(missing), strict=True):
                if wrapped is not None:
                    self._remember(customer, unwrap_dek(self.keyring, customer, wrapped))
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
        changed = 0
        async for customer, wrapped in self._store.scan():
            if wrapped_kek_id(wrapped) == self.keyring.active:
                continue
            rewrapped = wrap_dek(
                self.keyring, customer, unwrap_dek(self.keyring, customer, wrapped)
            )
            changed += await self._store.replace(customer, wrapped, rewrapped)
        return changed

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
        dek = await self._dek(customer)
        if dek is not None:
            return dek
        pending = self._creating.get(customer)
        if pending is not None:  # another call is creating it: share its result
            return await asyncio.shield(pending)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._creating[customer] = future
        try:
            await self._store.put_if_absent(customer, wrap_dek(self.keyring, customer, new_dek()))
            # Another router (a deposed leader's last call) may have won: use what is stored.
            stored = await self._store.get(customer)
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
