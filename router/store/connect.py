"""Opening the store from a URL: redis:// and rediss:// (TLS) and unix:// as redis-py reads
them, and redis+sentinel://host:port[,host:port...]/service_name for Redis Sentinel, which finds
the current master (and finds the new one after a Sentinel failover)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff

SENTINEL_SCHEME = "redis+sentinel"


def open_redis(url: str, *, timeout_s: float) -> aioredis.Redis:
    """A client of the store at `url` (raises ValueError naming what is wrong with it)."""
    parts = urlsplit(url)
    if parts.scheme != SENTINEL_SCHEME:
        return aioredis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=_retry()
        )
    sentinels = [_host_port(hostport) for hostport in parts.netloc.rpartition("@")[2].split(",")]
    service_name = parts.path.strip("/")
    if not service_name:
        raise ValueError(f"{url}: name the monitored service: {SENTINEL_SCHEME}://host:port/NAME")
    password = unquote(parts.netloc.rpartition("@")[0].partition(":")[2]) or None
    sentinel = Sentinel(sentinels, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    client: aioredis.Redis = sentinel.master_for(
        service_name,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        password=password,
        retry=_retry(),
    )
    return client


def _retry() -> Retry:
    """Two quick retries ride out a dropped connection; redis-py's default backs off for
    seconds, holding callers who would rather get UNAVAILABLE and go elsewhere."""
    return Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=2)


def _host_port(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{hostport!r} is not host:port")
    return host, int(port)
