"""The journal's appends on a real Redis server: each kept exactly once, in order."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from router.store.embedded import EmbeddedRedis
from router.store.errors import Fenced as FencedError
from router.store.journal import RedisJournal
from router.store.lease import RedisLease


def test_an_append_sent_again_after_a_lost_reply_is_kept_once(
    embedded_redis: EmbeddedRedis,
) -> None:
    """redis-py sends a command again when the connection drops before its reply: an append
    that had landed is not journaled twice (replayed twice, its tasks would exist twice)."""

    async def scenario() -> None:
        client = aioredis.from_url(embedded_redis.url)
        journal = RedisJournal(client, "acme")
        lease = RedisLease(client, "acme", "10.0.0.1:50051", ttl_s=30)
        assert await lease.try_acquire()
        first = await journal.append(b"create task", lease.token, append_id="a1")
        again = await journal.append(b"create task", lease.token, append_id="a1")  # the retry
        assert again == first
        other = await journal.append(b"create task", lease.token)  # a new, equal batch
        assert [i async for i, _ in journal.entries_after("0")] == [first, other]
        await client.aclose()

    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_an_append_after_an_entry_the_journal_does_not_end_at_is_refused_and_gives_up_the_lease(
    embedded_redis: EmbeddedRedis,
) -> None:
    """The writer says where it left the journal: a store that lost entries (or gained some)
    refuses the append, and the writer loses the lease, so that it steps down and looks."""

    async def scenario() -> None:
        client = aioredis.from_url(embedded_redis.url)
        journal = RedisJournal(client, "acme")
        lease = RedisLease(client, "acme", "10.0.0.1:50051", ttl_s=30)
        assert await lease.try_acquire()
        first = await journal.append(b"one", lease.token, after_id="0")
        second = await journal.append(b"two", lease.token, after_id=first)
        with pytest.raises(FencedError, match=f"ends at {second}, not at {first}"):
            await journal.append(b"three", lease.token, after_id=first)  # one entry short
        assert await lease.leader_address() == ""  # given up
        assert [data async for _, data in journal.entries_after("0")] == [b"one", b"two"]
        await client.aclose()

    asyncio.run(asyncio.wait_for(scenario(), 30))
