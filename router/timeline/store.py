"""The timeline's Redis layout, all under the workspace's hash tag (one Cluster slot):

- `sb:{ws}:tl:{ck}`        hash: entry id -> the entry, sealed with the customer's data key;
- `sb:{ws}:tl-order:{ck}`  zset: entry id -> at_ms + n/1024 for the n-th entry of that
                           millisecond (chronological order, bounds, retention);
- `sb:{ws}:tl-customers`   zset: customer key -> its oldest entry's at_ms (retention sweeps);
- `sb:{ws}:tl-tasks`       hash: open task id -> customer key (dropped when the task closes);
- `sb:{ws}:profiles`       hash: customer key -> [updated_at_ms, the profile as the API sealed it];
- `sb:{ws}:tl-cursor`      the projector's last applied feed cursor.

Nothing here is personal in the clear: customer keys are keyed hashes, entries and profiles are
sealed. A projector's delivery is written by `write` in one atomic script (entries, order, the
bounds' purge, the open-task index and the cursor), so the cursor never runs ahead of its
entries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import msgspec
from redis.asyncio import Redis

__all__ = ["TRIM_SCRIPT", "WRITE_SCRIPT", "PendingWrite", "TimelineStore"]

_TRIM_FUNCTION: Final = """
local function trim(entries, order, customers, ck, cutoff_ms, kept_max)
  local dropped = 0
  -- cutoff_ms as the caller wrote it: Lua 5.1 would print a large number in exponent form.
  local old = redis.call('ZRANGEBYSCORE', order, '-inf', '(' .. cutoff_ms)
  for _, id in ipairs(old) do
    redis.call('HDEL', entries, id)
    redis.call('ZREM', order, id)
    dropped = dropped + 1
  end
  local excess = redis.call('ZCARD', order) - kept_max
  if excess > 0 then
    local oldest = redis.call('ZRANGE', order, 0, excess - 1)
    for _, id in ipairs(oldest) do
      redis.call('HDEL', entries, id)
      redis.call('ZREM', order, id)
      dropped = dropped + 1
    end
  end
  local first = redis.call('ZRANGE', order, 0, 0, 'WITHSCORES')
  if first[2] then
    redis.call('ZADD', customers, first[2], ck)
  else
    redis.call('ZREM', customers, ck)
    redis.call('DEL', entries)
  end
  return dropped
end
"""
"""Purges one customer's entries past retention (older than `cutoff_ms`) and beyond the count
bound (oldest first), and keeps its score in the customers' zset: the oldest entry left."""

TRIM_SCRIPT: Final = (
    _TRIM_FUNCTION
    + """
return trim(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], tonumber(ARGV[3]))
"""
)
"""The retention sweep's purge of one customer."""

WRITE_SCRIPT: Final = (
    _TRIM_FUNCTION
    + """
-- KEYS: customers, tasks, profiles, cursor, then two per customer block (entries, order).
-- ARGV: cutoff_ms, kept_max, cursor, erased count, written count, then the erased customers,
-- then per written customer: ck, entry count, (entry id, at_ms, sealed, at_ms + 1) each; then
-- profiles
-- (count, (ck, value) each), opened tasks (count, (task id, ck) each), closed task ids (count,
-- ids).
local ORDER_SLOTS = 1024
local customers, tasks, profiles = KEYS[1], KEYS[2], KEYS[3]
local cutoff_ms, kept_max = ARGV[1], tonumber(ARGV[2])
local erased, written = tonumber(ARGV[4]), tonumber(ARGV[5])
local a, k, dropped = 6, 5, 0
for _ = 1, erased do
  redis.call('DEL', KEYS[k], KEYS[k + 1])
  redis.call('ZREM', customers, ARGV[a])
  redis.call('HDEL', profiles, ARGV[a])
  a, k = a + 1, k + 2
end
for _ = 1, written do
  local ck, count = ARGV[a], tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, count do
    local id, at_ms = ARGV[a], tonumber(ARGV[a + 1])
    redis.call('HSET', KEYS[k], id, ARGV[a + 2])
    if not redis.call('ZSCORE', KEYS[k + 1], id) then
      -- Entries of the same millisecond keep the order they were written in (the feed's):
      -- the n-th takes at_ms + n/1024 (exact in a double until the year 2248). Written with
      -- %.17g: Lua would print the number with 14 digits, losing the fraction.
      local same = redis.call('ZCOUNT', KEYS[k + 1], at_ms, '(' .. ARGV[a + 3])
      local score = at_ms + math.min(same, ORDER_SLOTS - 1) / ORDER_SLOTS
      redis.call('ZADD', KEYS[k + 1], string.format('%.17g', score), id)
    end
    a = a + 4
  end
  dropped = dropped + trim(KEYS[k], KEYS[k + 1], customers, ck, cutoff_ms, kept_max)
  k = k + 2
end
for _ = 1, tonumber(ARGV[a]) do
  redis.call('HSET', profiles, ARGV[a + 1], ARGV[a + 2])
  a = a + 2
end
a = a + 1
for _ = 1, tonumber(ARGV[a]) do
  redis.call('HSET', tasks, ARGV[a + 1], ARGV[a + 2])
  a = a + 2
end
a = a + 1
for _ = 1, tonumber(ARGV[a]) do
  redis.call('HDEL', tasks, ARGV[a + 1])
  a = a + 1
end
redis.call('SET', KEYS[4], ARGV[3])
return dropped
"""
)
"""One delivery of the projector, atomically: erasures first, then each customer's entries and
order with its purge, profiles, the open-task index, and the cursor. One command rather than a
MULTI of several per customer: the client's cost is per command (packing and parsing), and a
delivery may touch hundreds of customers."""

_profile_encoder = msgspec.msgpack.Encoder()
_profile_decoder = msgspec.msgpack.Decoder(tuple[int, bytes])


@dataclass(slots=True)
class PendingWrite:
    """What one delivery writes, gathered before its one script (`TimelineStore.write`)."""

    entries: dict[str, dict[str, tuple[int, bytes]]] = field(default_factory=dict)
    """customer key -> entry id -> (at_ms, sealed entry)."""
    erased: list[str] = field(default_factory=list)
    """Customers to drop entirely, before this delivery's entries are written."""
    profiles: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    opened_tasks: dict[str, str] = field(default_factory=dict)
    """task id -> customer key."""
    closed_tasks: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(
            self.entries or self.erased or self.profiles or self.opened_tasks or self.closed_tasks
        )


class TimelineStore:
    """The timeline's keys of one workspace on the store's Redis."""

    def __init__(self, client: Redis, workspace: str) -> None:
        self._client = client
        self._prefix = f"sb:{{{workspace}}}:"
        self.customers_key = self._prefix + "tl-customers"
        self.tasks_key = self._prefix + "tl-tasks"
        self.profiles_key = self._prefix + "profiles"
        self.cursor_key = self._prefix + "tl-cursor"
        self._trim = client.register_script(TRIM_SCRIPT)
        self._write = client.register_script(WRITE_SCRIPT)

    def entries_key(self, customer: str) -> str:
        return f"{self._prefix}tl:{customer}"

    def order_key(self, customer: str) -> str:
        return f"{self._prefix}tl-order:{customer}"

    # -- the projector --------------------------------------------------------------------------

    async def cursor(self) -> str:
        """The projector's last applied cursor ("" before its first write)."""
        value = await self._client.get(self.cursor_key)
        return "" if value is None else _text(value)

    async def task_customers(self, task_ids: Sequence[str]) -> list[str | None]:
        """The customer key of each open task (None: not a customer's, or not open)."""
        if not task_ids:
            return []
        values = await self._client.hmget(self.tasks_key, list(task_ids))
        return [None if v is None else _text(v) for v in values]

    async def sealed_entries(self, items: Sequence[tuple[str, str]]) -> list[bytes | None]:
        """The sealed entries of (customer key, entry id) pairs, in one round trip."""
        if not items:
            return []
        pipe = self._client.pipeline(transaction=False)
        for customer, entry_id in items:
            pipe.hget(self.entries_key(customer), entry_id)
        return [None if v is None else _bytes(v) for v in await pipe.execute()]

    async def write(
        self, pending: PendingWrite, cursor: str, *, cutoff_ms: int, kept_max: int
    ) -> int:
        """Writes one delivery and its cursor atomically (`WRITE_SCRIPT`); purges the customers
        it touched to the bounds (retention before `cutoff_ms`, at most `kept_max` entries).
        Returns how many entries the purge dropped."""
        keys = [self.customers_key, self.tasks_key, self.profiles_key, self.cursor_key]
        args: list[str | int | bytes] = [
            str(cutoff_ms), kept_max, cursor, len(pending.erased), len(pending.entries),
        ]  # fmt: skip
        for customer in pending.erased:
            keys += [self.entries_key(customer), self.order_key(customer)]
            args.append(customer)
        for customer, entries in pending.entries.items():
            keys += [self.entries_key(customer), self.order_key(customer)]
            args += [customer, len(entries)]
            for entry_id, (at_ms, sealed) in entries.items():
                args += [entry_id, at_ms, sealed, at_ms + 1]
        args.append(len(pending.profiles))
        for customer, profile in pending.profiles.items():
            args += [customer, _profile_encoder.encode(profile)]
        args.append(len(pending.opened_tasks))
        for task_id, customer in pending.opened_tasks.items():
            args += [task_id, customer]
        args.append(len(pending.closed_tasks))
        args += sorted(pending.closed_tasks)
        dropped = await self._write(keys=keys, args=args)
        return int(dropped)

    def _queue_trim(self, pipe: Any, customer: str, cutoff_ms: int, kept_max: int) -> None:
        keys = [self.entries_key(customer), self.order_key(customer), self.customers_key]
        pipe.scripts.add(self._trim)  # loaded (SCRIPT LOAD) before the pipeline runs
        pipe.evalsha(self._trim.sha, len(keys), *keys, customer, str(cutoff_ms), kept_max)

    def _queue_erase(self, pipe: Any, customer: str) -> None:
        pipe.hlen(self.entries_key(customer))
        pipe.hexists(self.profiles_key, customer)
        pipe.delete(self.entries_key(customer), self.order_key(customer))
        pipe.zrem(self.customers_key, customer)
        pipe.hdel(self.profiles_key, customer)

    # -- retention ------------------------------------------------------------------------------

    async def sweep(self, *, cutoff_ms: int, kept_max: int, customers_max: int) -> tuple[int, int]:
        """Purges at most `customers_max` customers whose oldest entry is older than
        `cutoff_ms`; returns (customers swept, entries dropped)."""
        due = await self._client.zrangebyscore(
            self.customers_key, "-inf", f"({cutoff_ms}", start=0, num=customers_max
        )
        if not due:
            return 0, 0
        pipe = self._client.pipeline(transaction=False)
        for customer in due:
            self._queue_trim(pipe, _text(customer), cutoff_ms, kept_max)
        dropped = sum(int(n) for n in await pipe.execute())
        return len(due), dropped

    # -- reads and erasure ----------------------------------------------------------------------

    async def order(self, customer: str) -> list[tuple[float, str]]:
        """Every entry of the customer as (order score, entry id), oldest first: the score is
        its at_ms plus a fraction below 1 that keeps entries of the same millisecond in the
        order they were written."""
        pairs = await self._client.zrange(self.order_key(customer), 0, -1, withscores=True)
        return [(float(pair[1]), _text(pair[0])) for pair in pairs]

    async def entries(self, customer: str, entry_ids: Sequence[str]) -> list[bytes | None]:
        if not entry_ids:
            return []
        values = await self._client.hmget(self.entries_key(customer), list(entry_ids))
        return [None if v is None else _bytes(v) for v in values]

    async def profile(self, customer: str) -> tuple[int, bytes] | None:
        """(updated_at_ms, the profile as the API sealed it), or None."""
        value = await self._client.hget(self.profiles_key, customer)
        return None if value is None else _profile_decoder.decode(_bytes(value))

    async def erase(self, customer: str) -> tuple[int, bool]:
        """Deletes the customer's timeline, order, index entry and profile in one MULTI;
        returns (entries erased, whether a profile was)."""
        pipe = self._client.pipeline(transaction=True)
        self._queue_erase(pipe, customer)
        results = await pipe.execute()
        entries, had_profile = results[0], results[1]
        return int(entries), bool(had_profile)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"expected bytes from Redis, got {type(value).__name__}")
    return value
