"""The store fails under a router in service, for real: its embedded Redis SIGKILLed again and
again under load on a busy disk, an external Redis that keeps nothing restarted empty under a
leader, and under a standby. Whatever a client was told was done must still be there."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import grpc
import pytest

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router.server import ServerConfig
from tests.conftest import ServerThread
from tests.e2e.raw import Stubs
from tests.integration.support import (
    Acknowledged,
    DiskHog,
    Load,
    RedisServer,
    doubled,
    missing,
)

RESUME_TIMEOUT_S = 20.0
"""Longest wait for acknowledgements after a kill: the restarted Redis keeps the dead leader's
lease until it expires (2 s), and the router follows before it leads again."""


def sigkill_the_embedded_redis_under_load(tmp_path: Path, kills: int) -> None:
    """A router on its embedded Redis, four clients creating tasks (one in two without a
    client_request_id), a process keeping the disk busy; the Redis SIGKILLed `kills` times, each
    time once the router serves again. Every acknowledged task must be there, none twice nor
    unasked for, and the router restarted on the same folder must have the same state."""
    config = ServerConfig(port=0, metrics_port=None, test_clock=True, data_dir=tmp_path / "data")
    hog = DiskHog(tmp_path / "busy-disk.bin")
    server = ServerThread(config).start()
    load = None
    try:
        assert server.server is not None and server.server._embedded is not None
        embedded, registry = server.server._embedded, server.server.registry
        with grpc.insecure_channel(server.address) as channel:
            Stubs.of(channel).queue("support")
        load = Load(server.address, threads=4, anonymous_every=2).start()
        load.wait_for_acks_after(0.0, 20, RESUME_TIMEOUT_S)
        for kill in range(1, kills + 1):
            killed_pid = embedded.pid
            assert killed_pid is not None
            os.kill(killed_pid, signal.SIGKILL)  # in the middle of the load
            # The router's supervisor restarts it (and counts it once it answers)...
            deadline_s = time.monotonic() + RESUME_TIMEOUT_S
            while registry.get_sample_value("switchboard_store_restarts_total") != kill:
                assert time.monotonic() < deadline_s, "the embedded Redis was not restarted"
                time.sleep(0.01)
            assert embedded.pid != killed_pid
            # ...and the clients are served again.
            load.wait_for_acks_after(time.monotonic(), 10, RESUME_TIMEOUT_S)
        load.stop()
        assert not load.refusals
        # Fsynced before each answer, the store never came back behind the router (with
        # `appendfsync everysec` it does, and the router has to write its state back).
        behind = {"action": "written_back"}
        assert not registry.get_sample_value("switchboard_store_behind_total", behind)
        acked = load.acked
        print(f"{kills} kills: {len(acked.tasks)} tasks acknowledged, {load.retries} retries")
        with grpc.insecure_channel(server.address) as channel:
            stubs = Stubs.of(channel)
            assert missing(stubs, acked) == []
            assert doubled(stubs, acked) == []
            live = stubs.admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=10)
    finally:
        if load is not None:
            load.stop()
        server.stop()
        hog.stop()
    restarted = ServerThread(config).start()
    try:
        with grpc.insecure_channel(restarted.address) as channel:
            stubs = Stubs.of(channel)
            assert missing(stubs, acked) == []
            assert doubled(stubs, acked) == []
            # A batch journaled twice (a retried append that had landed) replays twice.
            replayed = stubs.admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=10)
            assert (replayed.tasks, replayed.digest) == (live.tasks, live.digest)
    finally:
        restarted.stop()


@pytest.mark.timeout(120)
def test_ten_sigkills_of_the_embedded_redis_on_a_busy_disk_lose_and_double_nothing(
    tmp_path: Path,
) -> None:
    """Redis writes and fsyncs each batch before it answers, even with the disk busy, and the
    router's retried appends are kept once: ten SIGKILLs of its Redis under load, and every task
    a client was told of is there, with its id, once."""
    sigkill_the_embedded_redis_under_load(tmp_path, kills=10)


def create_until_acknowledged(stubs: Stubs, request_id: str) -> str:
    """CreateTask retried with the same request id while the router answers UNAVAILABLE."""
    deadline_s = time.monotonic() + RESUME_TIMEOUT_S
    while True:
        try:
            return stubs.create(request_id).task.task_id
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            assert time.monotonic() < deadline_s, "the router did not serve again"
            time.sleep(0.05)


def test_a_redis_back_from_an_older_copy_that_still_holds_the_lease_gets_the_state_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis restarted from an older copy of itself (an RDB saved a moment before) still holds
    the leader's lease. The leader must not append after the hole as if nothing happened: it
    finds the journal short of where it left it, writes its state back and leads on."""
    redis_server = RedisServer(tmp_path / "redis").start()
    # A long lease, so that the old copy's lease is surely still live when it comes back.
    config = ServerConfig(port=0, metrics_port=None, test_clock=True,
                          redis_url=redis_server.url, lease_ttl_s=30)  # fmt: skip
    server = ServerThread(config).start()
    try:
        assert server.server is not None
        registry = server.server.registry
        with grpc.insecure_channel(server.address) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support")
            acked = {f"before-{i}": stubs.create(f"before-{i}").task.task_id for i in range(5)}
            assert redis_server.client().save()  # the older copy, lease included
            acked |= {f"after-{i}": stubs.create(f"after-{i}").task.task_id for i in range(5)}
            redis_server.kill()
            redis_server.start()  # from the copy: the five "after" tasks are not in it
            with caplog.at_level(logging.ERROR, logger="router.service"):
                acked["again"] = create_until_acknowledged(stubs, "again")
            assert missing(stubs, Acknowledged(tasks=acked)) == []
            assert doubled(stubs, Acknowledged(tasks=acked)) == []
            written_back = {"action": "written_back"}
            assert registry.get_sample_value("switchboard_store_behind_total", written_back) == 1
            assert any("came back behind" in r.getMessage() for r in caplog.records)
            live = stubs.admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=10)
    finally:
        server.stop()
    restarted = ServerThread(config).start()  # the written-back state is the store's now
    try:
        with grpc.insecure_channel(restarted.address) as channel:
            stubs = Stubs.of(channel)
            assert missing(stubs, Acknowledged(tasks=acked)) == []
            replayed = stubs.admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=10)
            assert (replayed.tasks, replayed.digest) == (live.tasks, live.digest)
    finally:
        restarted.stop()
        redis_server.stop()
