"""Durability against real parts: the journal on a real Redis server, a router process killed
with SIGKILL and restarted, and a store outage in the middle of service."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from pathlib import Path

import grpc
import pytest
import redis
import redis.asyncio as aioredis
from grpc_health.v1 import health_pb2, health_pb2_grpc

from benchmarks.failover import start_router_on
from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router.api.status import LEADER_METADATA_KEY
from router.server import ServerConfig
from router.store.embedded import NO_RETRY, EmbeddedRedis
from router.store.errors import Fenced as FencedError
from router.store.journal import RedisJournal
from router.store.lease import LEASE_TTL_S_DEFAULT, RedisLease
from tests.conftest import ServerThread
from tests.e2e.raw import RawAgent, Stubs


def test_the_journal_keeps_order_and_trims_behind_a_snapshot(
    embedded_redis: EmbeddedRedis,
) -> None:
    async def scenario() -> None:
        client = aioredis.from_url(embedded_redis.url)
        journal = RedisJournal(client, "acme")
        lease = RedisLease(client, "acme", "10.0.0.1:50051", ttl_s=30)
        assert await lease.try_acquire()
        ids = [await journal.append(f"batch-{i}".encode(), lease.token) for i in range(5)]
        assert [b async for _, b in journal.entries_after("0")] == [
            f"batch-{i}".encode() for i in range(5)
        ]
        assert await journal.load_snapshot() is None
        await journal.save_snapshot(b"state-through-2", ids[2], lease.token)
        stored = await journal.load_snapshot()
        assert stored is not None
        assert (stored.data, stored.through_id) == (b"state-through-2", ids[2])
        assert [i async for i, _ in journal.entries_after(ids[2])] == ids[3:]
        assert await client.xlen(journal.stream_key) == 2  # the snapshot covers the rest
        assert journal.stream_key == "sb:{acme}:journal"  # a Redis Cluster hash tag
        await client.aclose()

    asyncio.run(scenario())


def test_a_deposed_leader_cannot_write_even_once(embedded_redis: EmbeddedRedis) -> None:
    async def scenario() -> None:
        client = aioredis.from_url(embedded_redis.url)
        journal = RedisJournal(client, "acme")
        old = RedisLease(client, "acme", "old:1", ttl_s=0.2)
        new = RedisLease(client, "acme", "new:2", ttl_s=30)
        assert await old.try_acquire()
        stale_token = old.token
        assert not await new.try_acquire()  # held
        assert await new.leader_address() == "old:1"
        await asyncio.sleep(0.3)  # the old leader paused past its lease
        assert await new.try_acquire()
        assert new.token.split("|")[0] > stale_token.split("|")[0]  # a later epoch
        with pytest.raises(FencedError):
            await journal.append(b"late write", stale_token)
        with pytest.raises(FencedError):
            await journal.save_snapshot(b"stale state", "1-0", stale_token)
        assert not await old.renew()
        assert [b async for _, b in journal.entries_after("0")] == []
        await journal.append(b"new leader's write", new.token)
        await client.aclose()

    asyncio.run(scenario())


def start_router(data_dir: Path) -> tuple[subprocess.Popen[str], str]:
    return start_router_on(None, LEASE_TTL_S_DEFAULT, "--data-dir", str(data_dir))


def wait_until_serving(channel: grpc.Channel, deadline_s: float) -> None:
    """Waits for the router to lead (its health says SERVING)."""
    health = health_pb2_grpc.HealthStub(channel)
    while health.Check(health_pb2.HealthCheckRequest(), timeout=5).status != (
        health_pb2.HealthCheckResponse.SERVING
    ):
        assert time.monotonic() < deadline_s, "the router did not take the lead in time"
        time.sleep(0.05)


def digest_of(stubs: Stubs) -> apb.GetStateDigestResponse:
    return stubs.admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=5)


def test_a_router_killed_with_sigkill_comes_back_with_the_same_state(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first, address = start_router(data_dir)
    second = None
    try:
        with grpc.insecure_channel(address) as channel:
            wait_until_serving(channel, deadline_s=time.monotonic() + 15)
            stubs = Stubs.of(channel)
            stubs.queue("support", wrapup_s=60)
            stubs.worker("ana", skills={"billing": 5})
            stubs.worker("ben", skills={"billing": 3}, activity="break")
            created = [stubs.create(required_skills={"billing": 1}, priority=p) for p in (0, 5, 1)]
            assigned = stubs.get(created[0].task.task_id)
            agent = RawAgent(stubs, "ana")
            offer = agent.next_of("offer").offer
            agent.close()
            accept = wpb.AcceptOfferRequest(worker_id="ana", reservation_id=offer.reservation_id)
            stubs.workers.AcceptOffer(accept, timeout=5)
            stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(task_id=offer.task_id), timeout=5)
            before = digest_of(stubs)
        assert assigned.status == pb.TASK_STATUS_RESERVED
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)

        killed_at_s = time.monotonic()
        second, address = start_router(data_dir)
        with grpc.insecure_channel(address) as channel:
            stubs = Stubs.of(channel)
            after = digest_of(stubs)  # a standby answers this: its copy is already complete
            assert (after.digest, after.tasks, after.workers) == (
                before.digest, before.tasks, before.workers,
            )  # fmt: skip
            # The dead leader's lease must expire first: within the TTL, plus some slack.
            wait_until_serving(channel, deadline_s=killed_at_s + LEASE_TTL_S_DEFAULT + 5)
            waiting = [
                t for t in created if stubs.get(t.task.task_id).status == pb.TASK_STATUS_PENDING
            ]
            assert len(waiting) == 2  # ana is wrapping up, ben is on break: routing resumes...
            stubs.workers.SetActivity(wpb.SetActivityRequest(worker_id="ben", activity="available"))
            offered = stubs.get(created[1].task.task_id)  # ...the priority 5 task goes first
            assert (offered.status, offered.worker_id) == (pb.TASK_STATUS_RESERVED, "ben")
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=15) == 0
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
        EmbeddedRedis(data_dir).stop()  # the Redis a killed router leaves running


def test_a_store_outage_refuses_writes_and_recovers_by_itself(
    embedded_redis: EmbeddedRedis,
) -> None:
    """A Redis the router does not own goes away: creates are refused UNAVAILABLE, and the
    router serves again by itself once it is back, with nothing half-kept."""
    server = ServerThread(
        ServerConfig(port=0, metrics_port=None, test_clock=True, redis_url=embedded_redis.url)
    ).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support")
            kept = stubs.create().task.task_id
            embedded_redis.stop()
            with pytest.raises(grpc.RpcError) as raised:
                stubs.create()
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
            embedded_redis.start()
            deadline_s = time.monotonic() + 15
            while True:
                try:
                    again = stubs.create()
                    break
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                    assert time.monotonic() < deadline_s, "the router did not recover"
                    time.sleep(0.2)
            listed = stubs.tasks.ListTasks(tpb.ListTasksRequest(), timeout=5).tasks
            assert [t.task_id for t in listed] == [kept, again.task.task_id]  # nothing half-kept
    finally:
        server.stop()


def test_the_router_restarts_its_embedded_redis_when_it_dies(tmp_path: Path) -> None:
    """The embedded Redis SIGKILLed: the router starts it again on the same folder, counts it,
    and serves on with everything it had acknowledged; it stops its Redis on the way out."""
    server = ServerThread(
        ServerConfig(port=0, metrics_port=None, test_clock=True, data_dir=tmp_path / "data")
    ).start()
    try:
        assert server.server is not None and server.server._embedded is not None
        store = server.server._embedded
        with grpc.insecure_channel(server.address) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support")
            kept = [stubs.create().task.task_id for _ in range(5)]
            killed_pid = store.pid
            assert killed_pid is not None
            os.kill(killed_pid, signal.SIGKILL)
            deadline_s = time.monotonic() + 20
            while True:
                try:
                    kept.append(stubs.create().task.task_id)
                    break
                except grpc.RpcError as error:
                    assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                    assert time.monotonic() < deadline_s, "the router did not resume"
                    time.sleep(0.1)
            assert store.pid not in (None, killed_pid)
            restarts = server.server.registry.get_sample_value("switchboard_store_restarts_total")
            assert restarts == 1
            listed = stubs.tasks.ListTasks(tpb.ListTasksRequest(), timeout=5).tasks
            assert [t.task_id for t in listed] == kept
    finally:
        server.stop()
        with pytest.raises(redis.RedisError):  # the router stopped its Redis on the way out
            redis.Redis(
                unix_socket_path=str(tmp_path / "data" / "redis.sock"), retry=NO_RETRY
            ).ping()


def serving(channel: grpc.Channel) -> bool:
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
    return reply.status == health_pb2.HealthCheckResponse.SERVING


def test_a_paused_leader_is_replaced_and_fenced_when_it_wakes(
    embedded_redis: EmbeddedRedis,
) -> None:
    ttl_s = 1.0
    processes: list[subprocess.Popen[str]] = []
    try:
        first, first_address = start_router_on(embedded_redis.url, ttl_s)
        processes.append(first)
        with grpc.insecure_channel(first_address) as channel:
            wait_until_serving(channel, deadline_s=time.monotonic() + 10)
        second, second_address = start_router_on(embedded_redis.url, ttl_s)
        processes.append(second)
        with (
            grpc.insecure_channel(first_address) as first_channel,
            grpc.insecure_channel(second_address) as second_channel,
        ):
            leader, standby = Stubs.of(first_channel), Stubs.of(second_channel)
            leader.queue("support")
            kept = leader.create().task.task_id
            assert not serving(second_channel)
            with pytest.raises(grpc.RpcError) as refused:
                standby.create()
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert first_address in (refused.value.details() or "")  # clients are pointed on

            leader.worker("ana")
            agent = RawAgent(leader, "ana")  # an agent desktop attached to the leader
            assert agent.next().WhichOneof("kind") == "attached"

            first.send_signal(signal.SIGSTOP)  # paused past its lease
            paused_at_s = time.monotonic()
            # How fast is the failover benchmark's to measure; here, only that it happens.
            wait_until_serving(second_channel, deadline_s=paused_at_s + ttl_s + 10)
            created_by_new_leader = standby.create().task.task_id

            first.send_signal(signal.SIGCONT)  # wakes up believing it leads, until the fence
            deadline_s = time.monotonic() + 10
            while serving(first_channel):
                assert time.monotonic() < deadline_s, "the deposed leader did not step down"
                time.sleep(0.05)
            with pytest.raises(grpc.RpcError) as refused:
                leader.create()
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            with pytest.raises(grpc.RpcError) as ended:  # never OK: the desktop reconnects...
                while True:  # past what it was sent before (the offer of the waiting task)
                    agent.next(timeout_s=10)
            assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
            trailing = dict(ended.value.trailing_metadata() or ())  # type: ignore[attr-defined]
            assert trailing.get(LEADER_METADATA_KEY) == second_address  # ...to the new leader
            agent.close()
            deadline_s = time.monotonic() + 10
            while digest_of(leader).digest != digest_of(standby).digest:
                assert time.monotonic() < deadline_s, "the deposed leader did not catch up"
                time.sleep(0.05)
            ids = [t.task_id for t in standby.tasks.ListTasks(tpb.ListTasksRequest()).tasks]
            assert ids == [kept, created_by_new_leader]
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
            process.wait(timeout=15)


def test_a_command_that_hits_a_bug_is_not_journaled(
    embedded_redis: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug must not become a poison entry in the journal that every recovery hits again."""
    from router.core.engine import Engine

    original_apply = Engine.apply

    def apply_with_a_bug(self: Engine, command: object, now_ms: int) -> object:
        if getattr(command, "reason", "") == "trigger the bug":
            raise RuntimeError("a bug")
        return original_apply(self, command, now_ms)  # type: ignore[arg-type]

    server = ServerThread(
        ServerConfig(port=0, metrics_port=None, test_clock=True, redis_url=embedded_redis.url)
    ).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support")
            task_id = stubs.create().task.task_id
            monkeypatch.setattr(Engine, "apply", apply_with_a_bug)
            request = tpb.CancelTaskRequest(task_id=task_id, reason="trigger the bug")
            with pytest.raises(grpc.RpcError) as raised:
                stubs.tasks.CancelTask(request, timeout=10)
            assert raised.value.code() == grpc.StatusCode.INTERNAL
            monkeypatch.setattr(Engine, "apply", original_apply)
            assert stubs.get(task_id).status == pb.TASK_STATUS_PENDING
            stubs.create()  # the router goes on
            live = digest_of(stubs).digest
    finally:
        server.stop()
    restarted = ServerThread(
        ServerConfig(port=0, metrics_port=None, test_clock=True, redis_url=embedded_redis.url)
    ).start()
    try:
        with grpc.insecure_channel(restarted.address) as channel:
            assert digest_of(Stubs.of(channel)).digest == live  # the recovery replays cleanly
    finally:
        restarted.stop()


def test_clients_given_only_a_standby_find_the_leader(embedded_redis: EmbeddedRedis) -> None:
    """The standby names the leader (trailing metadata); the SDK goes there by itself."""
    from workers import AgentSession, TaskClient

    config = ServerConfig(port=0, metrics_port=None, test_clock=True, redis_url=embedded_redis.url)
    leader = ServerThread(config).start()
    standby = ServerThread(config, wait_for_lead=False).start()
    try:
        assert standby.server is not None and not standby.server.service.is_leader
        with grpc.insecure_channel(leader.address) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support")
            stubs.worker("ana")

        async def scenario() -> None:
            async with (
                AgentSession(standby.address, "ana", reconnect_backoff_s=(0.05, 0.2)) as agent,
                TaskClient(standby.address, retry_backoff_s=(0.05, 0.2)) as tasks,
            ):
                assert agent.address == leader.address
                offers = agent.offers()
                created = await tasks.create_task(queue_id="support", channel="voice")
                assert tasks.address == leader.address
                offer = await asyncio.wait_for(anext(offers), 5)
                assert offer.task_id == created.task.task_id

        asyncio.run(asyncio.wait_for(scenario(), 20))
    finally:
        standby.stop()
        leader.stop()


class _Cycle:
    """Cyclic garbage once dropped: only the cycle collector can free it."""

    def __init__(self) -> None:
        self.me = self


def test_periodic_snapshots_restore_and_the_heap_freeze_keeps_no_garbage(
    embedded_redis: EmbeddedRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The router snapshots every N journaled commands (in a forked child, saved in the
    background) and freezes its heap (gc.freeze) every few: a restart recovers from snapshot plus
    journal to the same state, and cyclic garbage made before a freeze is collected, not frozen
    with the state."""
    import gc
    import weakref

    from router.writer import housekeeping

    monkeypatch.setattr(housekeeping, "FREEZE_EVERY_COMMANDS", 5)
    config = ServerConfig(port=0, metrics_port=None, test_clock=True,
                          redis_url=embedded_redis.url, snapshot_every_commands=40)  # fmt: skip
    server = ServerThread(config).start()
    assert server.server is not None
    registry = server.server.registry
    try:
        with grpc.insecure_channel(server.address) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support")
            cycle = _Cycle()
            died = weakref.ref(cycle)
            del cycle  # garbage only the cycle collector can free
            for _ in range(10):  # past a freeze, short of a snapshot
                stubs.create()
            assert gc.get_freeze_count() > 0
            assert died() is None  # collected before the freeze, not frozen
            for _ in range(40):  # past a snapshot
                stubs.create()
            deadline_s = time.monotonic() + 15
            while not registry.get_sample_value(
                "switchboard_snapshot_seconds_count", {"phase": "background"}
            ):
                assert time.monotonic() < deadline_s, "no snapshot was saved"
                time.sleep(0.05)
            assert registry.get_sample_value(
                "switchboard_snapshot_seconds_count", {"phase": "writer"}
            )
            live = digest_of(stubs).digest
    finally:
        server.stop()
        gc.unfreeze()
    client = redis.Redis.from_url(embedded_redis.url)
    assert client.hget("sb:{default}:snapshot", "through_id") is not None
    assert client.xlen("sb:{default}:journal") < 40  # trimmed behind the latest snapshot
    client.close()
    restarted = ServerThread(config).start()
    try:
        with grpc.insecure_channel(restarted.address) as channel:
            assert digest_of(Stubs.of(channel)).digest == live
    finally:
        restarted.stop()
