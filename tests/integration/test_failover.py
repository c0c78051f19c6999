"""Failover with real processes: routers sharing one Redis, the leader SIGKILLed several times
under load, and Redis itself SIGKILLed and restarted from its append-only file. Nothing
acknowledged may be lost, duplicated or assigned twice. The harness is the failover benchmark's
(`benchmarks/failover.py`), run here in a small size."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.failover import (
    CREATES_PER_S,
    Observed,
    Routers,
    create_load,
    list_tasks,
    run_failover,
    setup_center,
)
from router.store.embedded import EmbeddedRedis

LEASE_TTL_S = 1.0


@pytest.fixture
def shared_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_killing_the_leader_under_load_loses_and_doubles_nothing(
    shared_redis: EmbeddedRedis,
) -> None:
    result = run_failover(shared_redis.url, kills=3, interval_s=2.5, lease_ttl_s=LEASE_TTL_S)
    print(f"failover: {result}")
    assert result.kills == 3
    assert result.acked_tasks > 3 * CREATES_PER_S, "the load did not get through"
    assert result.completed_tasks > 0
    assert (result.lost_tasks, result.duplicate_tasks, result.double_assignments) == (0, 0, 0)
    assert result.lost_completions == 0
    assert result.standby_converged
    assert len(result.takeovers_s) == 3


def test_redis_killed_and_restarted_from_its_append_only_file_loses_no_acknowledged_task(
    shared_redis: EmbeddedRedis,
) -> None:
    routers = Routers(shared_redis.url, LEASE_TTL_S)
    observed = Observed()
    try:
        address = routers.start()
        routers.leader()
        setup_center(address, agents=0)

        async def scenario() -> None:
            stop = asyncio.Event()
            loader = asyncio.create_task(create_load([address], observed, stop, channel="voice"))
            await asyncio.sleep(2)
            process = shared_redis._process
            assert process is not None
            process.kill()  # SIGKILL: no shutdown, only what the append-only file holds
            process.wait()
            await asyncio.sleep(1)
            await asyncio.to_thread(shared_redis.start)
            restarted_at_s = time.monotonic()
            while not observed.acked_at_s or observed.acked_at_s[-1] < restarted_at_s:
                await asyncio.sleep(0.1)  # until the router serves again (the outer timeout)
            await asyncio.sleep(1)
            stop.set()
            await loader

        asyncio.run(asyncio.wait_for(scenario(), timeout=60))
        tasks = list_tasks(routers.leader())
    finally:
        routers.stop_all()
    kept = {task.client_request_id: task.task_id for task in tasks}
    acked = observed.acked_creates
    print(f"redis restart: {len(acked)} creates acknowledged, {len(tasks)} tasks kept")
    assert acked, "the load did not get through"
    lost = {r: t for r, t in acked.items() if kept.get(r) != t}
    assert not lost, f"acknowledged tasks lost: {lost}"
    assert len(kept) == len(tasks), "a request id was used twice"
