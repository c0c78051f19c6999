"""The store fails under a router in service, for real: its embedded Redis SIGKILLed again and
again under load on a busy disk; an external Redis back from an older copy of itself, or
restarted empty, under a leader; and restarted empty under a standby. Whatever a client was told
was done must still be there, once."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.failover import start_router_on
from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router.server import ServerConfig
from router.store.lease import LEASE_TTL_S_DEFAULT
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


def test_ten_sigkills_of_the_embedded_redis_on_a_busy_disk_lose_and_double_nothing(
    tmp_path: Path,
) -> None:
    """A router on its embedded Redis, four clients creating tasks (one in two without a
    client_request_id), a process keeping the disk busy; the Redis SIGKILLed ten times, each
    time once the router serves again. Redis fsyncs each batch before it answers and a retried
    append is kept once: every task a client was told of is there with its id, none twice nor
    unasked for, and a router restarted on the folder has the same state."""
    kills = 10
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


def test_a_redis_that_keeps_nothing_restarted_empty_under_load_gets_the_state_written_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An external Redis without persistence SIGKILLed and started again empty while clients
    create tasks, workers and queues: the leader writes its whole state back and serves on.
    Whatever was answered OK is there (a batch in flight either is, or its caller was told
    UNAVAILABLE); the event is counted once and logged as an error."""
    redis_server = RedisServer(tmp_path / "redis").start()
    config = ServerConfig(port=0, metrics_port=None, test_clock=True, redis_url=redis_server.url)
    server = ServerThread(config).start()
    load = None
    try:
        assert server.server is not None
        registry = server.server.registry
        with grpc.insecure_channel(server.address) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support")
            stubs.worker("ana")
        load = Load(server.address, threads=4, mixed=True, anonymous_every=7).start()
        load.wait_for_acks_after(0.0, 40, RESUME_TIMEOUT_S)  # tasks, workers, queues
        redis_server.kill()
        redis_server.start()  # empty
        load.wait_for_acks_after(time.monotonic(), 40, RESUME_TIMEOUT_S)
        load.stop()
        assert not load.refusals
        acked = load.acked
        acked.workers.add("ana")
        acked.queues.add("support")
        assert acked.workers and acked.queues and acked.anonymous_tasks
        with grpc.insecure_channel(server.address) as channel:
            stubs = Stubs.of(channel)
            assert missing(stubs, acked) == []
            assert doubled(stubs, acked) == []
            live = stubs.admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=10)
        written_back = {"action": "written_back"}
        assert registry.get_sample_value("switchboard_store_behind_total", written_back) == 1
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("came back behind" in message for message in errors), errors
    finally:
        if load is not None:
            load.stop()
        server.stop()
    restarted = ServerThread(config).start()  # from what was written back
    try:
        with grpc.insecure_channel(restarted.address) as channel:
            stubs = Stubs.of(channel)
            replayed = stubs.admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=10)
            assert (replayed.tasks, replayed.workers, replayed.digest) == (
                live.tasks, live.workers, live.digest,
            )  # fmt: skip
    finally:
        restarted.stop()
        redis_server.stop()


REFUSAL_WATCH_S = 5.0
"""How long the standby is watched refusing: past two of its retries (every 2 s)."""


def test_a_standby_refuses_to_lead_from_a_store_that_came_back_empty(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The leader process is SIGKILLed and the Redis (without persistence) restarted empty: the
    standby, which had applied the leader's work, wins the lease on the empty store but must
    not lead from it (acknowledged work would silently vanish). It stays NOT_SERVING, counts
    and logs why, and keeps refusing. Restarting it is the documented way to accept the store
    as it is: the restarted router leads from the empty store."""
    redis_server = RedisServer(tmp_path / "redis").start()
    config = ServerConfig(port=0, metrics_port=None, test_clock=True, redis_url=redis_server.url)
    leader, leader_address = start_router_on(redis_server.url, LEASE_TTL_S_DEFAULT)
    standby = restarted = None
    try:
        with grpc.insecure_channel(leader_address) as channel:
            wait_until_serving(channel)
            stubs = Stubs.of(channel)
            stubs.queue("support")
            stubs.worker("ana", activity="break")
            task_ids = [stubs.create(f"task-{i}").task.task_id for i in range(5)]
            leader_digest = stubs.admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=10)
        standby = ServerThread(config, wait_for_lead=False).start()
        assert standby.server is not None and not standby.server.service.is_leader
        registry = standby.server.registry
        with grpc.insecure_channel(standby.address) as channel:
            stubs = Stubs.of(channel)
            deadline_s = time.monotonic() + 10
            while stubs.admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=10).digest != (
                leader_digest.digest
            ):
                assert time.monotonic() < deadline_s, "the standby did not catch up"
                time.sleep(0.05)

            leader.send_signal(signal.SIGKILL)
            leader.wait(timeout=10)
            redis_server.kill()
            redis_server.start()  # empty, and no lease in it: the standby wins it at once

            refused = {"action": "refused_to_lead"}
            deadline_s = time.monotonic() + RESUME_TIMEOUT_S
            while not registry.get_sample_value("switchboard_store_behind_total", refused):
                assert time.monotonic() < deadline_s, "the standby did not try to lead"
                assert not serving(channel), "the standby leads from the empty store"
                time.sleep(0.05)
            watch_until_s = time.monotonic() + REFUSAL_WATCH_S
            while time.monotonic() < watch_until_s:
                assert not serving(channel), "the standby leads from the empty store"
                time.sleep(0.1)
            refusals = registry.get_sample_value("switchboard_store_behind_total", refused)
            assert refusals is not None and refusals >= 2  # it tried again, and refused again
            with pytest.raises(grpc.RpcError) as refusal:
                stubs.create("after-the-loss")
            assert refusal.value.code() == grpc.StatusCode.UNAVAILABLE
            assert not standby.server.registry.get_sample_value(
                "switchboard_store_behind_total", {"action": "written_back"}
            )
        errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
        assert any("refusing to lead" in message for message in errors), errors
        standby.stop()
        standby = None

        restarted = ServerThread(config).start()  # the way out: it leads from the store as is
        with grpc.insecure_channel(restarted.address) as channel:
            assert serving(channel)
            stubs = Stubs.of(channel)
            with pytest.raises(grpc.RpcError) as gone:
                stubs.get(task_ids[0])
            assert gone.value.code() == grpc.StatusCode.NOT_FOUND
            stubs.queue("support")
            assert stubs.create("a-new-day").task.task_id
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait(timeout=10)
        for router_thread in (standby, restarted):
            if router_thread is not None:
                router_thread.stop()
        redis_server.stop()


def serving(channel: grpc.Channel) -> bool:
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def wait_until_serving(channel: grpc.Channel) -> None:
    deadline_s = time.monotonic() + RESUME_TIMEOUT_S
    while not serving(channel):
        assert time.monotonic() < deadline_s, "the router did not take the lead"
        time.sleep(0.05)
