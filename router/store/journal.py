"""The journal: every applied batch of commands, in order, in a Redis Stream; and the latest
snapshot, behind which the stream is trimmed. Keys carry the workspace as a Redis Cluster hash
tag (`sb:{workspace}:...`), so one workspace's keys live on one shard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

READ_CHUNK_ENTRIES = 1000


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

    async def append(self, batch: bytes) -> str:
        """Appends one encoded batch; returns its entry id once Redis has it."""
        return _text(await self._redis.xadd(self.stream_key, {"b": batch}))

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

    async def save_snapshot(self, data: bytes, through_id: str) -> None:
        """Stores a snapshot and trims the journal entries it includes, atomically."""
        milliseconds, sequence = through_id.split("-")
        keep_from = f"{milliseconds}-{int(sequence) + 1}"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self.snapshot_key, mapping={"data": data, "through_id": through_id})
            pipe.xtrim(self.stream_key, minid=keep_from, approximate=False)
            await pipe.execute()

    async def load_snapshot(self) -> StoredSnapshot | None:
        stored: dict[Any, Any] = await self._redis.hgetall(self.snapshot_key)
        if not stored:
            return None
        return StoredSnapshot(_bytes(stored[b"data"]), _text(stored[b"through_id"]))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: object) -> bytes:
    if not isinstance(value, bytes):
        raise TypeError(f"expected bytes from Redis, got {type(value).__name__}")
    return value
