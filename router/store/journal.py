"""The journal: every applied batch of commands, in order, in a Redis Stream; and the latest
snapshot, behind which the stream is trimmed. Keys carry the workspace as a Redis Cluster hash
tag (`sb:{workspace}:...`), so one workspace's keys live on one shard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

READ_CHUNK_ENTRIES = 1000

_FENCED_APPEND = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED') end
return redis.call('XADD', KEYS[2], '*', 'b', ARGV[2])
"""
_FENCED_SNAPSHOT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.error_reply('FENCED') end
redis.call('HSET', KEYS[2], 'data', ARGV[2], 'through_id', ARGV[3])
redis.call('XTRIM', KEYS[3], 'MINID', ARGV[4])
return 1
"""


class FencedError(Exception):
    """A write refused because this router no longer holds the lease."""


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    data: bytes
    through_id: str
    """The last journal entry the snapshot includes."""


class RedisJournal:
    """Appends batches (one round trip each) and reads them back for recovery."""

    def __init__(self, client: aioredis.Redis, workspace: str) -> None:
        self._redis = client
        self.stream_key = f"sb:{{{workspace}}}:journal"
        self.snapshot_key = f"sb:{{{workspace}}}:snapshot"
        self.lease_key = f"sb:{{{workspace}}}:leader"

    async def append(self, batch: bytes, token: str) -> str:
        """Appends one encoded batch if `token` still holds the lease (else FencedError);
        returns its entry id once Redis has it."""
        try:
            entry_id = await self._redis.eval(
                _FENCED_APPEND, 2, self.lease_key, self.stream_key, token, batch
            )
        except ResponseError as error:
            raise _fenced_or(error) from None
        return _text(entry_id)

    async def entries_after(self, entry_id: str) -> AsyncIterator[tuple[str, bytes]]:
        """The entries after `entry_id` ("0" for all), in order."""
        start = f"({entry_id}" if entry_id != "0" else "-"
        while True:
            chunk: list[Any] = (
                await self._redis.xrange(self.stream_key, start, "+", READ_CHUNK_ENTRIES) or []
            )
            for raw_id, fields in chunk:
                yield _text(raw_id), _bytes(fields[b"b"])
            if len(chunk) < READ_CHUNK_ENTRIES:
                return
            start = f"({_text(chunk[-1][0])}"

    async def save_snapshot(self, data: bytes, through_id: str, token: str) -> None:
        """Stores a snapshot and trims the journal entries it includes, atomically, if `token`
        still holds the lease (else FencedError)."""
        milliseconds, sequence = through_id.split("-")
        keep_from = f"{milliseconds}-{int(sequence) + 1}"
        try:
            await self._redis.eval(
                _FENCED_SNAPSHOT, 3, self.lease_key, self.snapshot_key, self.stream_key,
                token, data, through_id, keep_from,
            )  # fmt: skip
        except ResponseError as error:
            raise _fenced_or(error) from None

    async def tail(self, after_id: str, block_ms: int) -> list[tuple[str, bytes]]:
        """The entries after `after_id`, waiting up to `block_ms` for the first one."""
        answer: Any = await self._redis.xread(
            {self.stream_key: after_id}, READ_CHUNK_ENTRIES, block_ms
        )
        if not answer:
            return []
        return [(_text(entry_id), _bytes(fields[b"b"])) for entry_id, fields in answer[0][1]]

    async def first_entry_id(self) -> str | None:
        first: list[Any] = await self._redis.xrange(self.stream_key, "-", "+", 1) or []
        return _text(first[0][0]) if first else None

    async def load_snapshot_through_id(self) -> str | None:
        """The last entry the stored snapshot includes, without loading the snapshot."""
        through_id = await self._redis.hget(self.snapshot_key, "through_id")
        return None if through_id is None else _text(through_id)

    async def load_snapshot(self) -> StoredSnapshot | None:
        stored: dict[Any, Any] = await self._redis.hgetall(self.snapshot_key)
        if not stored:
            return None
        return StoredSnapshot(_bytes(stored[b"data"]), _text(stored[b"through_id"]))


def _fenced_or(error: ResponseError) -> Exception:
    return FencedError("this router no longer holds the lease") if "FENCED" in str(error) else error


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"expected bytes from Redis, got {type(value).__name__}")
    return value
