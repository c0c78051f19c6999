"""Failover benchmark: the leading router SIGKILLed again and again under load, a cold recovery
of a large state, and the price of durability.

    python -m benchmarks.failover [--quick] [--json PATH]

Everything runs for real on this machine: router processes sharing one Redis server (the
embedded one), a load generator creating tasks over gRPC with the SDK, and simulated agents that
accept and complete every offer. It reports what was acknowledged and whether any of it was
lost, duplicated or assigned twice; how long each takeover took (from the kill to the first
task the new leader acknowledged); how long a router takes to recover 100k waiting tasks and
10k workers; and task creations per second with the journal on against off, in the same run."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import redis.asyncio as aioredis

from benchmarks.servers import is_serving, start_process
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router._proto.switchboard.v1 import worker_service_pb2_grpc as wgrpc
from router.core import snapshot
from router.store.embedded import EmbeddedRedis
from router.store.journal import RedisJournal
from router.store.lease import LEASE_TTL_S_DEFAULT, RedisLease
from router.store.recovery import recover
from workers import AdminClient, AgentSession, SwitchboardError, TaskClient, Unavailable

CREATES_PER_S = 25
AGENTS = 6


# == router processes ==============================================================================


def start_router_on(
    redis_url: str | None, lease_ttl_s: float, *extra: str, port: int = 0
) -> tuple[subprocess.Popen[str], str]:
    """A `switchboard serve` process (on a free port by default); returns it and its address."""
    command = [sys.executable, "-m", "router.cli", "serve", "--port", str(port),
               "--metrics-port", "-1", "--lease-ttl", str(lease_ttl_s), "--log-level", "WARNING",
               *extra]  # fmt: skip
    if redis_url is not None:
        command += ["--redis-url", redis_url]
    return start_process(command)


class Routers:
    """Router processes on one Redis. A killed router is restarted on its own address, as a
    restarted pod or service would be, so clients keep one list of addresses."""

    def __init__(self, redis_url: str, lease_ttl_s: float) -> None:
        self.redis_url = redis_url
        self.lease_ttl_s = lease_ttl_s
        self.processes: dict[str, subprocess.Popen[str]] = {}

    def start(self, port: int = 0) -> str:
        process, address = start_router_on(self.redis_url, self.lease_ttl_s, port=port)
        self.processes[address] = process
        return address

    def restart(self, address: str) -> None:
        port = int(address.rsplit(":", 1)[1])
        deadline_s = time.monotonic() + 10
        while True:  # the port may take a moment to be free again
            try:
                self.start(port)
                return
            except RuntimeError:
                if time.monotonic() > deadline_s:
                    raise
                time.sleep(0.1)

    def leader(self, timeout_s: float = 15) -> str:
        deadline_s = time.monotonic() + timeout_s
        while time.monotonic() < deadline_s:
            for address in list(self.processes):
                if is_serving(address):
                    return address
            time.sleep(0.05)
        raise RuntimeError("no router took the lead")

    def kill(self, address: str) -> None:
        process = self.processes.pop(address)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            process.wait(timeout=15)


# == load and agents ===============================================================================


@dataclass
class Observed:
    """What the clients were told: the ground truth the router's final state is checked by."""

    acked_creates: dict[str, str] = field(default_factory=dict)
    """client_request_id -> task id, for every acknowledged CreateTask."""
    acked_at_s: list[float] = field(default_factory=list)
    accepted_by: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    completed: set[str] = field(default_factory=set)


async def create_load(
    addresses: list[str], observed: Observed, stop: asyncio.Event, *, channel: str = "chat"
) -> None:
    """Creates tasks at CREATES_PER_S until `stop`, each with its own request id."""
    async with TaskClient(addresses, retry_backoff_s=(0.05, 0.5)) as client:
        while not stop.is_set():
            request_id = str(uuid.uuid4())
            with contextlib.suppress(SwitchboardError):
                created = await client.create_task(
                    queue_id="support", channel=channel, client_request_id=request_id
                )
                observed.acked_creates[request_id] = created.task.task_id
                observed.acked_at_s.append(time.monotonic())
            await asyncio.sleep(1 / CREATES_PER_S)


async def run_agent(addresses: list[str], worker_id: str, observed: Observed) -> None:
    """Accepts every offer and completes the task at once, retrying through failovers."""
    async with AgentSession(addresses, worker_id, reconnect_backoff_s=(0.05, 0.5)) as session:
        async for offer in session.offers():
            try:
                task = await session.accept(offer)
            except SwitchboardError:
                continue
            observed.accepted_by[task.task_id].append(worker_id)
            for _ in range(100):
                try:
                    await session.complete(task.task_id)
                    observed.completed.add(task.task_id)
                    break
                except Unavailable:
                    await asyncio.sleep(0.1)
                except SwitchboardError:
                    break  # completed by an attempt whose reply was lost


def setup_center(address: str, agents: int) -> None:
    asyncio.run(_create_queue(address, pb.Queue(queue_id="support", reservation_timeout_s=5)))
    with grpc.insecure_channel(address) as channel:
        workers = wgrpc.WorkerServiceStub(channel)
        for i in range(agents):
            worker = pb.Worker(
                worker_id=f"agent-{i}", capacity_by_channel={"chat": 2}, activity="offline"
            )
            workers.UpsertWorker(wpb.UpsertWorkerRequest(worker=worker), timeout=10)


def list_tasks(address: str) -> list[pb.Task]:
    tasks: list[pb.Task] = []
    token = ""
    with grpc.insecure_channel(address) as channel:
        stub = tgrpc.TaskServiceStub(channel)
        while True:
            page = stub.ListTasks(
                tpb.ListTasksRequest(page_size=1000, page_token=token), timeout=10
            )
            tasks.extend(page.tasks)
            token = page.next_page_token
            if not token:
                return tasks


async def _create_queue(address: str, queue: pb.Queue) -> None:
    async with AdminClient(address) as admin:
        await admin.upsert_queue(queue)


def state_digest(address: str) -> str:
    """The digest of this router's state (a standby's too: the call is not redirected)."""

    async def read() -> str:
        async with AdminClient(address) as admin:
            return (await admin.get_state_digest()).digest

    return asyncio.run(read())


# == the failover run ==============================================================================


@dataclass
class FailoverResult:
    kills: int
    acked_tasks: int
    lost_tasks: int
    duplicate_tasks: int
    double_assignments: int
    lost_completions: int
    accepted_tasks: int
    completed_tasks: int
    takeovers_s: list[float]
    standby_converged: bool


def run_failover(
    redis_url: str, *, kills: int, interval_s: float, lease_ttl_s: float
) -> FailoverResult:
    """Two routers, load and agents; kills the leader `kills` times, `interval_s` apart,
    restarting it each time; checks the leader's final state against what clients were told."""
    routers = Routers(redis_url, lease_ttl_s)
    observed = Observed()
    killed_at_s: list[float] = []
    try:
        first = routers.start()
        routers.leader()
        setup_center(first, AGENTS)
        addresses = [first, routers.start()]

        async def chaos() -> None:
            for _ in range(kills):
                await asyncio.sleep(interval_s)
                leader = await asyncio.to_thread(routers.leader)
                routers.kill(leader)
                killed_at_s.append(time.monotonic())
                await asyncio.to_thread(routers.restart, leader)

        async def scenario() -> None:
            stop = asyncio.Event()
            agents = [
                asyncio.create_task(run_agent(addresses, f"agent-{i}", observed))
                for i in range(AGENTS)
            ]
            loader = asyncio.create_task(create_load(addresses, observed, stop))
            await chaos()
            await asyncio.sleep(interval_s)
            stop.set()
            await loader
            await asyncio.sleep(3)  # let the agents finish what they hold
            for task in agents:
                task.cancel()
            await asyncio.gather(*agents, return_exceptions=True)

        asyncio.run(asyncio.wait_for(scenario(), timeout=(kills + 1) * interval_s + 60))
        leader = routers.leader()
        tasks = list_tasks(leader)
        replica = next(a for a in routers.processes if a != leader)
        deadline_s = time.monotonic() + 10
        converged = False
        while time.monotonic() < deadline_s and not converged:
            converged = state_digest(replica) == state_digest(leader)
            time.sleep(0.05)
    finally:
        routers.stop_all()
    by_request: dict[str, list[str]] = defaultdict(list)
    for task in tasks:
        by_request[task.client_request_id].append(task.task_id)
    status = {task.task_id: task.status for task in tasks}
    takeovers = []
    for kill_s in killed_at_s:
        after = [acked_s for acked_s in observed.acked_at_s if acked_s > kill_s]
        if after:
            takeovers.append(after[0] - kill_s)
    return FailoverResult(
        kills=len(killed_at_s),
        acked_tasks=len(observed.acked_creates),
        lost_tasks=sum(
            1 for r, t in observed.acked_creates.items() if t not in by_request.get(r, [])
        ),
        duplicate_tasks=sum(len(ids) - 1 for ids in by_request.values() if len(ids) > 1),
        double_assignments=sum(1 for w in observed.accepted_by.values() if len(set(w)) > 1),
        lost_completions=sum(
            1 for t in observed.completed if status.get(t) != pb.TASK_STATUS_COMPLETED
        ),
        accepted_tasks=len(observed.accepted_by),
        completed_tasks=len(observed.completed),
        takeovers_s=takeovers,
        standby_converged=converged,
    )


# == cold recovery and the price of durability =====================================================


def cold_recovery(redis_url: str, workers: int, waiting_tasks: int) -> tuple[int, float]:
    """Stores a snapshot of a large state and times a recovery from it (what a router starting
    on a full store does before it serves). Returns (tasks recovered, seconds)."""
    from benchmarks.engine import SteadyState

    state = SteadyState(workers=workers, waiting_tasks=waiting_tasks, seed=7)
    state.build()
    data = snapshot.take(state.engine)

    async def store_and_recover() -> tuple[int, float]:
        client = aioredis.from_url(redis_url)
        journal = RedisJournal(client, "cold-recovery")
        lease = RedisLease(client, "cold-recovery", "benchmark", ttl_s=60)
        await lease.try_acquire()
        await journal.save_snapshot(data, "0-0", lease.token)  # a snapshot of all, no journal
        started_s = time.perf_counter()
        recovered = await recover(journal)
        elapsed_s = time.perf_counter() - started_s
        await client.aclose()
        return len(recovered.engine.waiting), elapsed_s

    return asyncio.run(store_and_recover())


def creations_per_s(address: str, duration_s: float, concurrency: int = 16) -> float:
    """Closed-loop task creations per second through gRPC, `concurrency` at a time (the
    router's center must be set up)."""

    async def measure() -> float:
        done = 0
        deadline_s = time.monotonic() + duration_s
        async with grpc.aio.insecure_channel(address) as channel:
            stub = tgrpc.TaskServiceStub(channel)

            async def client() -> None:
                nonlocal done
                while time.monotonic() < deadline_s:
                    task = pb.Task(queue_id="support", channel="chat")
                    await stub.CreateTask(tpb.CreateTaskRequest(task=task), timeout=10)
                    done += 1

            started_s = time.monotonic()
            await asyncio.gather(*(client() for _ in range(concurrency)))
            return done / (time.monotonic() - started_s)

    return asyncio.run(measure())


DURABILITY_ROUNDS = 5
"""Alternations of the journal-on and journal-off measurements: the machine's load drifts over
a run, so each round compares the two back to back, and the median round is reported."""


def durability_ratio(data_dir: Path, duration_s: float) -> tuple[float, float, float]:
    """Creations per second with the journal on and in memory (the medians of
    `DURABILITY_ROUNDS` alternated measurements of `duration_s` each, the two routers running
    side by side), and the median of the rounds' on/off ratios."""
    routers = []
    try:
        for extra in (("--data-dir", str(data_dir / "durable")), ("--in-memory",)):
            process, address = start_router_on(None, LEASE_TTL_S_DEFAULT, *extra)
            routers.append((process, address))
            deadline_s = time.monotonic() + 15
            while not is_serving(address):
                if time.monotonic() > deadline_s:
                    raise RuntimeError("the router did not take the lead")
                time.sleep(0.05)
        (_, durable), (_, memory) = routers
        setup_center(durable, agents=0)
        setup_center(memory, agents=0)
        on_rates, off_rates, ratios = [], [], []
        for round_index in range(DURABILITY_ROUNDS):
            first_on = round_index % 2 == 0  # alternate which goes first
            order = (durable, memory) if first_on else (memory, durable)
            first, second = (creations_per_s(address, duration_s) for address in order)
            on, off = (first, second) if first_on else (second, first)
            on_rates.append(on)
            off_rates.append(off)
            ratios.append(on / off)
    finally:
        for process, _ in routers:
            process.terminate()
            process.wait(timeout=15)
    return statistics.median(on_rates), statistics.median(off_rates), statistics.median(ratios)


# == the command ===================================================================================


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.failover", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5 kills, about two minutes")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    kills, interval_s, throughput_s = (5, 4.0, 2.0) if args.quick else (10, 5.0, 4.0)
    started_s = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="switchboard-failover-") as folder:
        data_dir = Path(folder)
        redis_server = EmbeddedRedis(data_dir / "redis")
        redis_server.start()
        try:
            print(f"failover: {kills} kills of the leader, {interval_s:g} s apart, under load")
            failover = run_failover(
                redis_server.url, kills=kills, interval_s=interval_s,
                lease_ttl_s=LEASE_TTL_S_DEFAULT,
            )  # fmt: skip
            print("cold recovery: 10k workers, 100k waiting tasks")
            recovered_tasks, recovery_s = cold_recovery(redis_server.url, 10_000, 100_000)
        finally:
            redis_server.stop()
        print(f"durability: task creations per second, journal on and off, {throughput_s:g} s "
              f"each, alternated {DURABILITY_ROUNDS} times")  # fmt: skip
        durable_rate, memory_rate, ratio = durability_ratio(data_dir, throughput_s)
    takeovers = failover.takeovers_s or [float("nan")]
    result: dict[str, Any] = {
        "benchmark": "failover",
        "kills": failover.kills,
        "acked_tasks": failover.acked_tasks,
        "lost_tasks": failover.lost_tasks,
        "duplicate_tasks": failover.duplicate_tasks,
        "double_assignments": failover.double_assignments,
        "lost_completions": failover.lost_completions,
        "accepted_tasks": failover.accepted_tasks,
        "completed_tasks": failover.completed_tasks,
        "standby_converged": failover.standby_converged,
        "lease_ttl_s": LEASE_TTL_S_DEFAULT,
        "takeover_s_p50": round(statistics.median(takeovers), 3),
        "takeover_s_max": round(max(takeovers), 3),
        "cold_recovery_tasks": recovered_tasks,
        "cold_recovery_s": round(recovery_s, 3),
        "durable_creations_per_s": round(durable_rate, 1),
        "memory_creations_per_s": round(memory_rate, 1),
        "durable_vs_memory_throughput_ratio": round(ratio, 3),
        "elapsed_s": round(time.monotonic() - started_s, 1),
    }
    targets = [
        ("lost, duplicate and double-assigned tasks", failover.lost_tasks
         + failover.duplicate_tasks + failover.double_assignments, "== 0",
         failover.lost_tasks + failover.duplicate_tasks + failover.double_assignments == 0),
        ("takeover_s_max", result["takeover_s_max"], f"<= {LEASE_TTL_S_DEFAULT + 1:g}",
         result["takeover_s_max"] <= LEASE_TTL_S_DEFAULT + 1),
        ("cold_recovery_s (100k tasks)", result["cold_recovery_s"], "<= 3",
         result["cold_recovery_s"] <= 3),
        ("durable_vs_memory_throughput_ratio", result["durable_vs_memory_throughput_ratio"],
         ">= 0.8", result["durable_vs_memory_throughput_ratio"] >= 0.8),
    ]  # fmt: skip
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"  {key:<{width}}  {value}")
    print("targets:")
    for name, value, target, met in targets:
        print(f"  {name:<45} {value!s:>10} {target:>8}  {'PASS' if met else 'MISS'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
