"""The journal: every applied batch of commands, in order, in a Redis Stream; and the latest
snapshot, behind which the stream is trimmed. Keys carry the workspace as a Redis Cluster hash
tag (`sb:{workspace}:...`), so one workspace's keys live on one shard.

A snapshot is stored in pieces (`SNAPSHOT_CHUNK_BYTES`), one command each, into the one of two
lists (`...:snapshot:a`, `...:snapshot:b`) that the current snapshot does not use, then made
current by one fenced script that also trims the journal behind it. Redis runs one command at a
time, so a snapshot of hundreds of megabytes written as one command would hold every journal
append behind it; in pieces, appends interleave with the save."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Iterator
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from router.store.errors import Fenced, StoreUnavailable
from router.store.protocols import (
    SNAPSHOT_CHUNK_BYTES,
    EventRetention,
    StoredSnapshot,
    entry_key,
    next_entry_id,
)

__all__ = ["SNAPSHOT_CHUNK_BYTES", "RedisJournal", "StoredSnapshot", "store_errors"]

READ_CHUNK_ENTRIES = 1000
SNAPSHOT_CHUNKS_PER_READ = 32

_FENCE = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED') end\n"
# An append carries an id ('n'): redis-py sends a command again when the connection drops
# before the reply (a Redis killed between its fsync and its answer), and the first attempt may
# have landed. Replayed twice, a batch would create its tasks twice, shifting every later task
# id. The one writer's latest entry is the stream's last, so a retry finds its own there.
# Then the journal must end where this router left it (ARGV[4]; empty: unchecked). A store that
# came back from an older copy of itself may still hold this router's lease: without this check
# the router would append after the hole and never notice the entries it lost. Found elsewhere,
# the lease is given up, so that the router steps down and finds out what the store lost.
_FENCED_APPEND = (
    _FENCE
    + """
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
if last then
  local fields = last[2]
  for i = 1, #fields, 2 do
    if fields[i] == 'n' and fields[i + 1] == ARGV[3] then return last[1] end
  end
end
if ARGV[4] ~= '' then
  local function key(id)
    local ms, seq = string.match(id, '^(%d+)-?(%d*)$')
    return tonumber(ms), tonumber(seq) or 0
  end
  -- The newest entry is the last generated (entries only ever go oldest first); an emptied
  -- stream keeps the id in XINFO, which also copies entries, so it is asked only then.
  local at = '0'
  if last then
    at = last[1]
  else
    local info = redis.pcall('XINFO', 'STREAM', KEYS[2])
    if not info.err then
      for i = 1, #info, 2 do
        if info[i] == 'last-generated-id' then at = info[i + 1] end
      end
    end
  end
  local ams, aseq = key(at)
  local through = redis.call('HGET', KEYS[3], 'through_id')
  if through then
    local tms, tseq = key(through)
    if tms > ams or (tms == ams and tseq > aseq) then ams, aseq = tms, tseq end
  end
  local ems, eseq = key(ARGV[4])
  if ams ~= ems or aseq ~= eseq then
    redis.call('DEL', KEYS[1])
    return redis.error_reply('FENCED the journal ends at ' .. string.format('%d-%d', ams, aseq)
      .. ', not at ' .. ARGV[4] .. ' where this router left it')
  end
end
local id = redis.call('XADD', KEYS[2], '*', 'b', ARGV[2], 'n', ARGV[3])
-- The batch's events, under its id: kept apart (snapshots trim the journal, not them), and
-- trimmed here by count and by age (the id's milliseconds are this server's clock).
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[7], id, 'e', ARGV[5])
  local ms = tonumber(string.match(id, '^(%d+)'))
  redis.call('XTRIM', KEYS[4], 'MINID', string.format('%d', ms - tonumber(ARGV[6])))
end
return id
"""
)
_FENCED_UNLINK = _FENCE + "return redis.call('UNLINK', KEYS[2])"
_FENCED_RPUSH = _FENCE + "return redis.call('RPUSH', KEYS[2], ARGV[2])"
_COMMIT_SNAPSHOT = (
    _FENCE
    + """
if redis.call('LLEN', KEYS[3]) ~= tonumber(ARGV[2]) then
  return redis.error_reply('INCOMPLETE the snapshot list does not hold the pieces written')
end
redis.call('HDEL', KEYS[2], 'data')
redis.call('HSET', KEYS[2], 'chunks_key', KEYS[3], 'chunks', ARGV[2], 'bytes', ARGV[3],
           'through_id', ARGV[4])
redis.call('XTRIM', KEYS[4], 'MINID', ARGV[5])
if KEYS[5] ~= KEYS[3] then redis.call('UNLINK', KEYS[5]) end
return 1
"""
)
_RAISE_POSITION = (
    _FENCE
    + """
local info = redis.pcall('XINFO', 'STREAM', KEYS[2])
local last = '0-0'
if not info.err then
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = info[i + 1] end
  end
end
local function key(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local lms, lseq = key(last)
local tms, tseq = key(ARGV[2])
if tms > lms or (tms == lms and tseq > lseq) then
  redis.call('XADD', KEYS[2], 'MAXLEN', '0', ARGV[2], 'b', '')
end
return 1
"""
)


class RedisJournal:
    """Appends batches (one round trip each) and reads them back for recovery: the `Journal`
    contract on Redis."""

    def __init__(
        self,
        client: aioredis.Redis,
        workspace: str,
        *,
        event_retention: EventRetention = EventRetention(),  # noqa: B008 - frozen
    ) -> None:
        self._redis = client
        self._retention = event_retention
        self.stream_key = f"sb:{{{workspace}}}:journal"
        self.events_key = f"sb:{{{workspace}}}:events"
        self.snapshot_key = f"sb:{{{workspace}}}:snapshot"
        self.lease_key = f"sb:{{{workspace}}}:leader"
        self._chunk_keys = (f"{self.snapshot_key}:a", f"{self.snapshot_key}:b")

    async def append(
        self,
        batch: bytes,
        token: str,
        *,
        after_id: str | None = None,
        append_id: str = "",
        events: bytes = b"",
    ) -> str:
        """Appends one encoded batch if `token` still holds the lease and the journal ends at
        `after_id` (the last entry the writer journaled or applied; None: unchecked); returns
        its entry id once Redis has it. Raises Fenced otherwise (a journal that ends
        elsewhere also loses the writer its lease). The append is kept once even when the
        client sends it again after a lost reply: an append whose `append_id` (random by
        default) is the journal's last entry's returns that entry. `events` go to the event
        stream under the same id, in the same script."""
        append_id = append_id or secrets.token_hex(8)
        keys = (self.lease_key, self.stream_key, self.snapshot_key, self.events_key)
        retention = self._retention
        arguments = (
            token, batch, append_id, "" if after_id is None else after_id, events,
            retention.age_ms, retention.entries_max,
        )  # fmt: skip
        with store_errors():
            return _text(await self._redis.eval(_FENCED_APPEND, len(keys), *keys, *arguments))

    async def events_from(self, entry_id: str, count: int) -> list[tuple[str, bytes]]:
        start = "-" if entry_id == "0" else entry_id
        with store_errors():
            found: list[Any] = await self._redis.xrange(self.events_key, start, "+", count) or []
        return [(_text(raw_id), _bytes(fields[b"e"])) for raw_id, fields in found]

    async def events_oldest(self) -> str:
        with store_errors():
            first: list[Any] = await self._redis.xrange(self.events_key, "-", "+", 1) or []
        return _text(first[0][0]) if first else "0"

    async def wait_for_replicas(self, replicas: int, timeout_ms: int) -> int:
        """How many replicas acknowledged every write so far (Redis `WAIT`), waiting up to
        `timeout_ms` for `replicas` of them."""
        with store_errors():
            acknowledged: Any = await self._redis.wait(replicas, timeout_ms)
        return int(acknowledged)

    async def entries_after(self, entry_id: str) -> AsyncIterator[tuple[str, bytes]]:
        """The entries after `entry_id` ("0" for all), in order."""
        start = f"({entry_id}" if entry_id != "0" else "-"
        while True:
            with store_errors():
                chunk: list[Any] = (
                    await self._redis.xrange(self.stream_key, start, "+", READ_CHUNK_ENTRIES) or []
                )
            for raw_id, fields in chunk:
                yield _text(raw_id), _bytes(fields[b"b"])
            if len(chunk) < READ_CHUNK_ENTRIES:
                return
            start = f"({_text(chunk[-1][0])}"

    async def save_snapshot(
        self, data: bytes | AsyncIterable[bytes], through_id: str, token: str
    ) -> int:
        """Stores a snapshot (its bytes, or its pieces as they come) and trims the journal
        entries it includes, if `token` holds the lease throughout (else Fenced). The
        previous snapshot stays current until the new one is complete. Returns its size."""
        with store_errors():
            current = _text(await self._redis.hget(self.snapshot_key, "chunks_key"))
        key = self._chunk_keys[1] if current == self._chunk_keys[0] else self._chunk_keys[0]
        await self._fenced(_FENCED_UNLINK, key, token)
        chunks = size = 0
        async for chunk in _pieces(data):
            await self._fenced(_FENCED_RPUSH, key, token, chunk)
            chunks += 1
            size += len(chunk)
        keep_from = next_entry_id(through_id)
        keys = (self.lease_key, self.snapshot_key, key, self.stream_key, current or key)
        with store_errors():
            await self._redis.eval(
                _COMMIT_SNAPSHOT, len(keys), *keys, token, chunks, size, through_id, keep_from
            )
        return size

    async def raise_position(self, through_id: str, token: str) -> None:
        """Makes the journal's next entry id follow `through_id` (an empty stream whose last id
        is `through_id`): after a store came back behind this router, its own state, written back
        as a snapshot through `through_id`, goes on from there."""
        if through_id != "0":
            await self._fenced(_RAISE_POSITION, self.stream_key, token, through_id)

    async def tail(self, after_id: str, block_ms: int) -> list[tuple[str, bytes]]:
        """The entries after `after_id`, waiting up to `block_ms` for the first one."""
        with store_errors():
            answer: Any = await self._redis.xread(
                {self.stream_key: after_id}, READ_CHUNK_ENTRIES, block_ms
            )
        if not answer:
            return []
        return [(_text(entry_id), _bytes(fields[b"b"])) for entry_id, fields in answer[0][1]]

    async def position(self) -> str:
        """The last journal entry the store holds, or includes in its snapshot ("0" for none):
        a store that restarted empty, or came back from an older copy, is behind the routers
        that saw it further on."""
        with store_errors():
            try:
                info: Any = await self._redis.xinfo_stream(self.stream_key)
                last_id = _text(info["last-generated-id"])
            except ResponseError:  # no such key
                last_id = "0"
        through_id = await self.load_snapshot_through_id() or "0"
        return max(last_id, through_id, key=entry_key)

    async def load_snapshot_through_id(self) -> str | None:
        """The last entry the stored snapshot includes, without loading the snapshot."""
        with store_errors():
            through_id = await self._redis.hget(self.snapshot_key, "through_id")
        return None if through_id is None else _text(through_id)

    async def load_snapshot(self) -> StoredSnapshot | None:
        """The current snapshot. Its pieces are read a few at a time; if a newer snapshot
        replaced it meanwhile, the newer one is read instead."""
        with store_errors():
            return await self._load_snapshot()

    async def _load_snapshot(self) -> StoredSnapshot | None:
        while True:
            stored: dict[Any, Any] = await self._redis.hgetall(self.snapshot_key)
            if not stored:
                return None
            through_id = _text(stored[b"through_id"])
            if b"data" in stored:  # written whole, by a router of an earlier version
                return StoredSnapshot(_bytes(stored[b"data"]), through_id)
            key, chunks = _text(stored[b"chunks_key"]), int(stored[b"chunks"])
            pieces: list[bytes] = []
            while len(pieces) < chunks:
                end = min(chunks, len(pieces) + SNAPSHOT_CHUNKS_PER_READ) - 1
                pieces.extend(_bytes(p) for p in await self._redis.lrange(key, len(pieces), end))
                if len(pieces) <= end:
                    break  # the list went away: a newer snapshot replaced it
            if (
                len(pieces) == chunks
                and _text(await self._redis.hget(self.snapshot_key, "through_id")) == through_id
            ):
                return StoredSnapshot(b"".join(pieces), through_id)

    async def _fenced(self, script: str, key: str, token: str, *args: bytes | str) -> Any:
        with store_errors():
            return await self._redis.eval(script, 2, self.lease_key, key, token, *args)


async def _pieces(data: bytes | AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    if isinstance(data, bytes):
        for start in range(0, len(data), SNAPSHOT_CHUNK_BYTES):
            yield data[start : start + SNAPSHOT_CHUNK_BYTES]
        return
    async for piece in data:
        yield piece


@contextlib.contextmanager
def store_errors() -> Iterator[None]:
    """Maps what Redis and the connection to it raise into the store's errors: a script's
    FENCED reply into `Fenced`, anything else (a lost connection, a timeout, an error reply)
    into `StoreUnavailable`."""
    try:
        yield
    except ResponseError as error:
        message = str(error)
        if message.startswith("FENCED"):
            detail = message.removeprefix("FENCED").strip()
            raise Fenced(detail or "this router no longer holds the lease") from None
        raise StoreUnavailable(f"the store refused the request: {message}") from error
    except (RedisError, OSError) as error:
        raise StoreUnavailable(str(error) or type(error).__name__) from error


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"expected bytes from Redis, got {type(value).__name__}")
    return value
