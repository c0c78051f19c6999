"""Failover under load with real processes: routers sharing one Redis, the leader SIGKILLed
several times while a bounded load generator creates tasks and simulated agents accept and
complete them. Nothing acknowledged may be lost, duplicated or assigned twice."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router.store.embedded import EmbeddedRedis
from tests.e2e.raw import Stubs
from tests.integration.test_durability import digest_of, serving, start_router_on
from workers import AgentSession, SwitchboardError, TaskClient, Unavailable

LEASE_TTL_S = 1.0
LOAD_S = 9.0
KILLS = 3
CREATES_PER_S = 25
AGENTS = 6


@pytest.fixture
def shared_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


class Routers:
    """Router processes on one Redis; replaces each one killed so that two are always up."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.processes: dict[str, subprocess.Popen[str]] = {}

    def start(self) -> str:
        process, address = start_router_on(self.redis_url, LEASE_TTL_S)
        self.processes[address] = process
        return address

    def leader(self, timeout_s: float = 10) -> str:
        deadline_s = time.monotonic() + timeout_s
        while time.monotonic() < deadline_s:
            for address in list(self.processes):
                with (
                    contextlib.suppress(grpc.RpcError),
                    grpc.insecure_channel(address) as channel,
                ):
                    if serving(channel):
                        return address
            time.sleep(0.05)
        raise AssertionError("no router took the lead")

    def kill(self, address: str) -> None:
        process = self.processes.pop(address)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=15)


def test_killing_the_leader_under_load_loses_and_doubles_nothing(
    shared_redis: EmbeddedRedis,
) -> None:
    routers = Routers(shared_redis.url)
    try:
        first = routers.start()
        routers.leader()
        addresses = [first, routers.start(), routers.start()]
        with grpc.insecure_channel(first) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support", reservation_timeout_s=5)
            for i in range(AGENTS):
                stubs.worker(f"agent-{i}", capacity_by_channel={"chat": 2}, activity="offline")

        acked_creates: dict[str, str] = {}
        accepted_by: dict[str, list[str]] = defaultdict(list)
        completed: set[str] = set()
        kills: list[float] = []

        async def load(stop: asyncio.Event) -> None:
            async with TaskClient(addresses, retry_backoff_s=(0.05, 0.5)) as client:
                while not stop.is_set():
                    request_id = str(uuid.uuid4())
                    with contextlib.suppress(SwitchboardError):
                        created = await client.create_task(
                            queue_id="support", channel="chat", client_request_id=request_id
                        )
                        acked_creates[request_id] = created.task.task_id
                    await asyncio.sleep(1 / CREATES_PER_S)

        async def agent(worker_id: str) -> None:
            async with AgentSession(
                addresses, worker_id, reconnect_backoff_s=(0.05, 0.5)
            ) as session:
                async for offer in session.offers():
                    try:
                        task = await session.accept(offer)
                    except SwitchboardError:
                        continue
                    accepted_by[task.task_id].append(worker_id)
                    for _ in range(100):
                        try:
                            await session.complete(task.task_id)
                            completed.add(task.task_id)
                            break
                        except Unavailable:
                            await asyncio.sleep(0.1)
                        except SwitchboardError:
                            break  # completed by an attempt whose reply was lost

        async def chaos() -> None:
            for _ in range(KILLS):
                await asyncio.sleep(LOAD_S / (KILLS + 1))
                leader = await asyncio.to_thread(routers.leader)
                routers.kill(leader)
                kills.append(time.monotonic())
                addresses.append(await asyncio.to_thread(routers.start))

        async def scenario() -> None:
            stop = asyncio.Event()
            agents = [asyncio.create_task(agent(f"agent-{i}")) for i in range(AGENTS)]
            loader = asyncio.create_task(load(stop))
            await chaos()
            await asyncio.sleep(LOAD_S / (KILLS + 1))
            stop.set()
            await loader
            await asyncio.sleep(3)  # let the agents finish what they hold
            for task in agents:
                task.cancel()
            await asyncio.gather(*agents, return_exceptions=True)

        asyncio.run(asyncio.wait_for(scenario(), timeout=LOAD_S + 40))

        leader = routers.leader()
        with grpc.insecure_channel(leader) as channel:
            stubs = Stubs.of(channel)
            tasks = list_all(stubs)
            replica = next(a for a in routers.processes if a != leader)
            with grpc.insecure_channel(replica) as replica_channel:
                deadline_s = time.monotonic() + 10
                while digest_of(Stubs.of(replica_channel)).digest != digest_of(stubs).digest:
                    assert time.monotonic() < deadline_s, "the standby did not converge"
                    time.sleep(0.05)
        print(
            f"failover: {KILLS} leader kills, {len(acked_creates)} creates acknowledged, "
            f"{len(accepted_by)} accepts, {len(completed)} completions, {len(tasks)} tasks"
        )
        by_request = defaultdict(list)
        for task in tasks:
            by_request[task.client_request_id].append(task.task_id)
        assert len(kills) == KILLS
        assert len(acked_creates) > LOAD_S * CREATES_PER_S / 3, "the load did not get through"
        for request_id, task_id in acked_creates.items():
            assert by_request[request_id] == [task_id], f"create {request_id} lost or duplicated"
        doubles = {t: w for t, w in accepted_by.items() if len(set(w)) > 1}
        assert not doubles, f"tasks accepted by two workers: {doubles}"
        status = {task.task_id: task.status for task in tasks}
        for task_id in accepted_by:
            assert status[task_id] in (pb.TASK_STATUS_ASSIGNED, pb.TASK_STATUS_COMPLETED)
        for task_id in completed:
            assert status[task_id] == pb.TASK_STATUS_COMPLETED, f"completion of {task_id} lost"
        assert completed, "no task was completed"
    finally:
        routers.stop_all()


def list_all(stubs: Stubs) -> list[pb.Task]:
    tasks: list[pb.Task] = []
    token = ""
    while True:
        page = stubs.tasks.ListTasks(
            tpb.ListTasksRequest(page_size=1000, page_token=token), timeout=10
        )
        tasks.extend(page.tasks)
        token = page.next_page_token
        if not token:
            return tasks


def test_redis_killed_and_restarted_from_its_append_only_file_loses_no_acknowledged_task(
    shared_redis: EmbeddedRedis,
) -> None:
    routers = Routers(shared_redis.url)
    try:
        address = routers.start()
        routers.leader()
        with grpc.insecure_channel(address) as channel:
            Stubs.of(channel).queue("support")
        acked: dict[str, str] = {}

        async def load(stop: asyncio.Event) -> None:
            async with TaskClient(address, retry_backoff_s=(0.05, 0.5)) as client:
                while not stop.is_set():
                    request_id = str(uuid.uuid4())
                    with contextlib.suppress(SwitchboardError):
                        created = await client.create_task(
                            queue_id="support", channel="voice", client_request_id=request_id
                        )
                        acked[request_id] = created.task.task_id
                    await asyncio.sleep(1 / CREATES_PER_S)

        async def scenario() -> None:
            stop = asyncio.Event()
            loader = asyncio.create_task(load(stop))
            await asyncio.sleep(2)
            process = shared_redis._process
            assert process is not None
            process.kill()  # SIGKILL: no shutdown, only what the append-only file holds
            process.wait()
            await asyncio.sleep(1)
            await asyncio.to_thread(shared_redis.start)
            await asyncio.sleep(4)
            stop.set()
            await loader

        asyncio.run(asyncio.wait_for(scenario(), timeout=40))
        with grpc.insecure_channel(routers.leader()) as channel:
            tasks = list_all(Stubs.of(channel))
        kept = {task.client_request_id: task.task_id for task in tasks}
        print(f"redis restart: {len(acked)} creates acknowledged, {len(tasks)} tasks kept")
        assert len(acked) > 2 * CREATES_PER_S, "the load did not get through"
        lost = {r: t for r, t in acked.items() if kept.get(r) != t}
        assert not lost, f"acknowledged tasks lost: {lost}"
        assert len(kept) == len(tasks), "a request id was used twice"
    finally:
        routers.stop_all()
