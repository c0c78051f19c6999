"""Leadership: a lease in Redis that one router holds at a time, with a fencing token.

The lease key holds `epoch|address`; the epoch rises with every acquisition, so a token names one
tenure. Every journal append and snapshot checks the token atomically (`journal.py`), so a
router that lost its lease (paused past the TTL, cut off) cannot write even once."""

from __future__ import annotations

import redis.asyncio as aioredis

LEASE_TTL_S_DEFAULT = 2.0

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local epoch = redis.call('INCR', KEYS[2])
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


class Lease:
    """One router's claim to lead a workspace."""

    def __init__(self, client: aioredis.Redis, workspace: str, address: str, ttl_s: float) -> None:
        self._redis = client
        self.key = f"sb:{{{workspace}}}:leader"
        self._epoch_key = f"sb:{{{workspace}}}:epoch"
        self.address = address
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self.token = ""
        """The fencing token while this router holds the lease, else empty."""

    async def try_acquire(self) -> bool:
        token = await self._redis.eval(
            _ACQUIRE, 2, self.key, self._epoch_key, self.address, self.ttl_ms
        )
        if not token:
            return False
        self.token = token.decode() if isinstance(token, bytes) else str(token)
        return True

    async def renew(self) -> bool:
        """Extends the lease; False when it was lost (expired, or taken by another router)."""
        if not self.token:
            return False
        renewed = await self._redis.eval(_RENEW, 1, self.key, self.token, self.ttl_ms)
        if not renewed:
            self.token = ""
        return bool(renewed)

    async def release(self) -> None:
        if self.token:
            await self._redis.eval(_RELEASE, 1, self.key, self.token)
            self.token = ""

    async def leader_address(self) -> str:
        """The address of the router holding the lease, or empty when none does."""
        value = await self._redis.get(self.key)
        if not value:
            return ""
        text = value.decode() if isinstance(value, bytes) else str(value)
        return text.split("|", 1)[1]
