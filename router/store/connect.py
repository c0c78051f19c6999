"""Opening the store from a URL: redis:// and rediss:// (TLS) and unix:// as redis-py reads
them, and redis+sentinel://host:port[,host:port...]/service_name for Redis Sentinel, which finds
the current master (and finds the new one after a Sentinel failover).

Two clients come from one URL: the asyncio one the writer's loop uses, and a blocking one for
the lease keeper's thread (`router.store.lease.LeaseKeeper`), which must not wait for the loop."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

SENTINEL_SCHEME = "redis+sentinel"

StoreClient = aioredis.Redis
"""The asyncio client of the store (what `open_redis` returns), for the server's wiring."""


@dataclass(frozen=True, slots=True)
class _SentinelUrl:
    sentinels: list[tuple[str, int]]
    service_name: str
    password: str | None


def open_redis(url: str, *, timeout_s: float) -> aioredis.Redis:
    """An asyncio client of the store at `url` (raises ValueError naming what is wrong)."""
    sentinel_url = _parse_sentinel(url)
    if sentinel_url is None:
        return aioredis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=AsyncRetry(_backoff(), retries=2),
        )  # fmt: skip
    # redis-py leaves its Sentinel classes unannotated.
    sentinel = AsyncSentinel(  # type: ignore[no-untyped-call]
        sentinel_url.sentinels, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    client: aioredis.Redis = sentinel.master_for(
        sentinel_url.service_name,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        password=sentinel_url.password,
        retry=AsyncRetry(_backoff(), retries=2),
    )
    return client


def open_blocking_redis(url: str, *, timeout_s: float) -> redis.Redis:
    """A blocking client of the same store, for a thread of its own."""
    sentinel_url = _parse_sentinel(url)
    if sentinel_url is None:
        return redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=Retry(_backoff(), retries=2),
        )  # fmt: skip
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        sentinel_url.sentinels, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
    )
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        sentinel_url.service_name,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        password=sentinel_url.password,
        retry=Retry(_backoff(), retries=2),
    )
    return client


def _parse_sentinel(url: str) -> _SentinelUrl | None:
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        return None
    sentinels = [_host_port(hostport) for hostport in parts.netloc.rpartition("@")[2].split(",")]
    service_name = parts.path.strip("/")
    if not service_name:
        raise ValueError(f"{url}: name the monitored service: {SENTINEL_SCHEME}://host:port/NAME")
    password = unquote(parts.netloc.rpartition("@")[0].partition(":")[2]) or None
    return _SentinelUrl(sentinels, service_name, password)


def _backoff() -> ExponentialBackoff:
    """Two quick retries ride out a dropped connection; redis-py's default backs off for
    seconds, holding callers who would rather get UNAVAILABLE and go elsewhere."""
    return ExponentialBackoff(cap=0.2, base=0.05)


def _host_port(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{hostport!r} is not host:port")
    return host, int(port)
