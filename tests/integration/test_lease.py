"""The leader's lease, kept by a thread of its own: an event loop that is merely busy keeps it,
a writer that makes no progress loses it to the standby, and is fenced when it comes back."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
import redis

from benchmarks.failover import start_router_on
from router.api.status import LEADER_METADATA_KEY
from router.server import ServerConfig
from router.store import lease
from router.store.lease import LEASE_TTL_S_DEFAULT
from router.writer import batches, leadership
from tests.conftest import ServerThread
from tests.e2e.raw import Stubs
from tests.integration.support import Acknowledged, Load, RedisServer, doubled, missing
from tests.integration.test_store_incidents import serving, wait_until_serving

LEASE_KEY = "sb:{default}:leader"
STUCK_AFTER_S = 1.0
"""The stuck-writer limit in the second test (10 s in production)."""
TAKEOVER_SLACK_S = 1.5
"""Beyond the documented TTL + 1 s: the keeper checks every TTL/3, the standby tries every
TTL/2 (and the machine may be slow)."""


@dataclass
class Routers:
    """An in-process leader (whose loop a test can block) and a standby process, on one Redis."""

    redis_server: RedisServer
    leader: ServerThread
    standby_address: str

    def store(self) -> redis.Redis:
        return self.redis_server.client()


@pytest.fixture
def routers(tmp_path: Path) -> Iterator[Routers]:
    redis_server = RedisServer(tmp_path / "redis").start()
    config = ServerConfig(port=0, metrics_port=None, test_clock=True, redis_url=redis_server.url)
    leader = ServerThread(config).start()
    standby, standby_address = start_router_on(redis_server.url, LEASE_TTL_S_DEFAULT)
    try:
        with grpc.insecure_channel(leader.address) as channel:
            Stubs.of(channel).queue("support")
        yield Routers(redis_server, leader, standby_address)
    finally:
        standby.terminate()
        standby.wait(timeout=15)
        leader.stop()
        redis_server.stop()


def block_loop(router: ServerThread, seconds: float) -> threading.Event:
    """Blocks the router's event loop (a callback that sleeps) from now on; returns an event
    set when the loop is free again."""
    started, ended = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        time.sleep(seconds)
        ended.set()

    router._loop.call_soon_threadsafe(block)
    assert started.wait(timeout=5), "the router's loop did not run the block"
    return ended


def lease_losses(router: ServerThread) -> float | None:
    assert router.server is not None
    return router.server.registry.get_sample_value("switchboard_lease_losses_total")


def test_a_leader_whose_loop_is_busy_past_the_lease_ttl_keeps_the_lease(routers: Routers) -> None:
    """The event loop held for longer than the lease's TTL (a large reply, a burst): the lease
    is still renewed, no standby takes over, and the leader serves on."""
    leader = routers.leader
    tenure = routers.store().get(LEASE_KEY)
    assert tenure is not None
    with (
        grpc.insecure_channel(leader.address) as leader_channel,
        grpc.insecure_channel(routers.standby_address) as standby_channel,
    ):
        assert not serving(standby_channel)
        free = block_loop(leader, LEASE_TTL_S_DEFAULT + 1.0)
        while not free.is_set():
            assert not serving(standby_channel), "the standby took over from a busy leader"
            time.sleep(0.1)
        assert routers.store().get(LEASE_KEY) == tenure  # the same tenure throughout
        assert lease_losses(leader) == 0
        assert Stubs.of(leader_channel).create("after-the-busy-spell").task.task_id
        assert serving(leader_channel) and not serving(standby_channel)


def test_a_leader_whose_writer_is_stuck_loses_the_lease_and_is_fenced(
    routers: Routers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer makes no progress past the stuck limit: the lease is no longer renewed and the
    standby takes over within about TTL + 1 s after the limit, while the old leader is still
    stuck. Unblocked, the old leader steps down and is refused; every task either router
    acknowledged is on the new leader, once."""
    monkeypatch.setattr(leadership, "WRITER_STUCK_AFTER_S", STUCK_AFTER_S)
    monkeypatch.setattr(lease, "WRITER_STUCK_AFTER_S", STUCK_AFTER_S)  # in its message
    # An idle writer shows life every IDLE_WAKE_S (1 s): well within the shortened limit.
    monkeypatch.setattr(batches, "IDLE_WAKE_S", STUCK_AFTER_S / 4)
    leader, standby_address = routers.leader, routers.standby_address
    on_leader = Load(leader.address, threads=2).start()
    on_standby = Load(standby_address, threads=2).start()
    try:
        on_leader.wait_for_acks_after(0.0, 10, timeout_s=10)
        with grpc.insecure_channel(standby_address) as standby_channel:
            # Blocked past the latest takeover allowed: any takeover seen came while it was stuck.
            block_s = STUCK_AFTER_S + LEASE_TTL_S_DEFAULT + 1.0 + TAKEOVER_SLACK_S + 0.5
            free = block_loop(leader, block_s)
            blocked_at_s = time.monotonic()
            wait_until_serving(standby_channel)
            takeover_s = time.monotonic() - blocked_at_s
            assert not free.is_set(), "the standby took over only once the leader was free"
            assert takeover_s <= STUCK_AFTER_S + LEASE_TTL_S_DEFAULT + 1.0 + TAKEOVER_SLACK_S
        assert free.wait(timeout=10)
        deadline_s = time.monotonic() + 10
        assert leader.server is not None
        while leader.server.service.is_leader:
            assert time.monotonic() < deadline_s, "the old leader did not step down"
            time.sleep(0.05)
        assert lease_losses(leader) == 1
        with grpc.insecure_channel(leader.address) as leader_channel:
            with pytest.raises(grpc.RpcError) as refused:
                Stubs.of(leader_channel).create("to-the-old-leader")
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            trailing = dict(refused.value.trailing_metadata() or ())
            assert trailing.get(LEADER_METADATA_KEY) == standby_address
        on_standby.wait_for_acks_after(time.monotonic(), 10, timeout_s=10)
    finally:
        on_leader.stop()
        on_standby.stop()
    print(f"takeover {takeover_s:.2f} s after the writer stuck")
    assert not on_leader.refusals and not on_standby.refusals
    acked = Acknowledged(tasks=on_leader.acked.tasks | on_standby.acked.tasks)
    with grpc.insecure_channel(standby_address) as channel:
        stubs = Stubs.of(channel)
        assert missing(stubs, acked) == []
        assert doubled(stubs, acked) == []
