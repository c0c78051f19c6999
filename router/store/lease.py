"""Leadership: a lease in Redis that one router holds at a time, with a fencing token.

The lease key holds `epoch|address`; the epoch rises with every acquisition, so a token names one
tenure. Every journal append and snapshot checks the token atomically (`journal.py`), so a
router that lost its lease (paused past the TTL, cut off) cannot write even once.

The lease is renewed by a `LeaseKeeper` thread, not by the writer's event loop: a loop that is
merely busy (a large reply being encoded, a burst of commands) keeps its lease, while a writer
that makes no progress at all for `WRITER_STUCK_AFTER_S` stops being renewed and loses it, as
does a router cut off from the store or frozen as a whole (the thread stops with it).

This is the Redis adapter of the `Lease` contract (`router.store.protocols`): every error of
Redis or of the connection to it leaves it as `StoreUnavailable`."""

from __future__ import annotations

import logging
from collections.abc import Callable

import redis
import redis.asyncio as aioredis

from router.store.errors import StoreUnavailable
from router.store.journal import store_errors
from router.store.keeper import ThreadKeeper
from router.store.protocols import WRITER_STUCK_AFTER_S, epoch_of

__all__ = [
    "LEASE_TTL_S_DEFAULT", "WRITER_STUCK_AFTER_S", "LeaseKeeper", "RedisLease", "epoch_of",
]  # fmt: skip

log = logging.getLogger(__name__)

LEASE_TTL_S_DEFAULT = 2.0

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local epoch = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[3])
if epoch <= floor then
  epoch = floor + 1
  redis.call('SET', KEYS[2], epoch)
end
local token = epoch .. '|' .. ARGV[1]
redis.call('SET', KEYS[1], token, 'PX', ARGV[2])
return token
"""
_RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


class RedisLease:
    """One router's claim to lead a workspace, in Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        workspace: str,
        address: str,
        ttl_s: float,
        *,
        keeper_client: Callable[[], redis.Redis] | None = None,
    ) -> None:
        """`keeper_client` opens the blocking client a keeper's thread renews the lease with
        (needed only to make a `keeper`)."""
        self._redis = client
        self._keeper_client = keeper_client
        self.key = f"sb:{{{workspace}}}:leader"
        self._epoch_key = f"sb:{{{workspace}}}:epoch"
        self.address = address
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.token = ""
        """The fencing token while this router holds the lease, else empty."""
        self.highest_epoch = 0
        """The highest epoch this router has seen: a store whose epoch counter is below it lost
        data (it restarted empty or was rolled back), and acquisitions never go below it."""

    async def try_acquire(self) -> bool:
        with store_errors():
            acquired = await self._redis.eval(
                _ACQUIRE, 2, self.key, self._epoch_key, self.address, self.ttl_ms,
                self.highest_epoch,
            )  # fmt: skip
        token = _text(acquired)
        if not token:
            return False
        self.token = token
        self.highest_epoch = max(self.highest_epoch, epoch_of(token))
        return True

    async def renew(self) -> bool:
        """Extends the lease once; False when it was lost (expired, or taken by another
        router). The leader renews from a `LeaseKeeper` thread; this is for tools and tests."""
        if not self.token:
            return False
        with store_errors():
            renewed = await self._redis.eval(_RENEW, 1, self.key, self.token, self.ttl_ms)
        if not renewed:
            self.token = ""
        return bool(renewed)

    async def release(self) -> None:
        if self.token:
            with store_errors():
                await self._redis.eval(_RELEASE, 1, self.key, self.token)
            self.token = ""

    def forget(self) -> None:
        """Drops the token after the lease was lost (the keeper saw it go)."""
        self.token = ""

    async def leader_address(self) -> str:
        """The address of the router holding the lease, or empty when none does."""
        with store_errors():
            value = _text(await self._redis.get(self.key))
        if not value:
            return ""
        self.highest_epoch = max(self.highest_epoch, epoch_of(value))
        return value.split("|", 1)[1]

    async def stored_epoch(self) -> int:
        """The store's epoch counter (0 when it has none: a new or emptied store)."""
        with store_errors():
            value = _text(await self._redis.get(self._epoch_key))
        return int(value) if value.isdigit() else 0

    def keeper(
        self,
        *,
        acquired_at_s: float,
        writer_alive: Callable[[], bool],
        on_lost: Callable[[str], None],
    ) -> LeaseKeeper:
        """A keeper that renews this lease (held now) through a blocking client of its own."""
        if self._keeper_client is None:
            raise TypeError("this lease was made without a keeper_client: it cannot be kept")
        return LeaseKeeper(
            self._keeper_client(), self.key, self.token, self.ttl_ms,
            acquired_at_s=acquired_at_s, writer_alive=writer_alive, on_lost=on_lost,
        )  # fmt: skip


class LeaseKeeper(ThreadKeeper):
    """Renews a held Redis lease from a thread of its own, through a blocking client of its
    own (`router.store.keeper` says when it stops)."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        token: str,
        ttl_ms: int,
        *,
        acquired_at_s: float,
        writer_alive: Callable[[], bool],
        on_lost: Callable[[str], None],
    ) -> None:
        super().__init__(
            ttl_ms, acquired_at_s=acquired_at_s, writer_alive=writer_alive, on_lost=on_lost,
            thread_name="lease-keeper",
        )  # fmt: skip
        self._client = client
        self._key = key
        self._token = token

    def _renew_once(self) -> bool:
        try:
            ttl_ms = round(self._ttl_s * 1000)
            renewed = self._client.eval(_RENEW, 1, self._key, self._token, ttl_ms)
        except (redis.RedisError, OSError) as error:
            raise StoreUnavailable(str(error)) from error
        return bool(renewed)

    def _close(self) -> None:
        self._client.close()


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
