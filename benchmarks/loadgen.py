"""The load benchmark's generator and agents: open-loop Poisson arrivals of CreateTask over
several gRPC channels, and a fleet of agents on the `workers` SDK that accept and complete every
offer at once, all on one asyncio loop in one process, timed with one clock.

Each task carries its sequence number in its client_request_id, which comes back inside the
offer, so that the agent that receives it can find when it was sent."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from benchmarks.credentials import ClientAccess
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc
from router._proto.switchboard.v1 import timeline_service_pb2 as lpb
from router._proto.switchboard.v1 import timeline_service_pb2_grpc as lgrpc
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router._proto.switchboard.v1 import worker_service_pb2_grpc as wgrpc
from router.api.authn import Role
from workers import AdminClient, AgentSession, SwitchboardError

CLIENT_CHANNELS = 4
"""gRPC channels (HTTP/2 connections) the task creations are spread over, in turn."""
AGENTS_DEFAULT = 16
CHAT_CAPACITY = 8
"""Chats each agent holds at once: plenty of free slots, so that tasks wait on the router,
never on the agents."""
CALL_TIMEOUT_S = 10.0
OUTSTANDING_MAX = 2_000
"""Tasks sent and not yet completed beyond which arrivals are skipped (and counted): bounds the
backlog a saturated router builds up, so that a step past saturation ends in seconds."""
DRAIN_TIMEOUT_S = 15.0
RESERVATION_TIMEOUT_S = 30.0
PERSONAL_ATTRIBUTES = ("name", "email", "phone")
"""The task attributes a run with customers marks personal (sealed with the customer's key)."""


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step of load: what was offered and what the router sustained, with latencies."""

    router: str
    """"switchboard" or "null"."""
    phase: str
    """"ramp" (stepping up to saturation), "half" (at half the saturation rate) or
    "half_snapshot" (the same, with a snapshot asked for during it)."""
    offered_per_s: float
    """The Poisson arrival rate asked for."""
    sent_per_s: float
    """CreateTask calls actually sent in the measured window, per second."""
    lifecycles_per_s: float
    """Tasks whose whole lifecycle (create, offer, accept, complete) ended in the window."""
    tasks: int
    """Tasks sent in the measured window (the latency samples)."""
    create_to_offer_p50_ms: float
    create_to_offer_p99_ms: float
    accept_to_assigned_p50_ms: float
    accept_to_assigned_p99_ms: float
    errors: int
    """Calls of the step that failed (creations, accepts, completions)."""
    skipped: int
    """Arrivals not sent because OUTSTANDING_MAX tasks were already in the air."""
    drained: bool
    """Whether every task of the step completed before the next step began."""
    server_cpu_ms_per_task: float | None
    """CPU time the server process (with its children: the private Redis) spent per lifecycle
    completed in the window; None when unknown (--target). Unlike throughput, it hardly
    depends on what else the machine runs."""
    client_cpu_ms_per_task: float
    """CPU time this process (generator and agents) spent per lifecycle completed."""
    other_load_cores: float | None
    """Cores busy with anything else on the machine during the window (other programs): a
    step measured while they took a core has half the machine."""
    saturated: bool = False
    snapshots: int | None = None
    """Snapshots the router saved during the step (None: unknown, as for the null router or
    a --target)."""
    snapshot_writer_pause_ms: float | None = None
    """The writer's pause for each of those snapshots (the fork), on average."""
    snapshot_background_s: float | None = None
    """From the fork to each of those snapshots saved in Redis, on average."""
    snapshot_bytes: int | None = None
    loop_stall_max_ms: float | None = None
    """The router's longest event-loop stall in the step, as the upper bound of the highest
    `switchboard_loop_stall_seconds` bucket that counted one (None: unknown)."""

    def as_json(self) -> dict[str, Any]:
        """The step as the JSON report holds it (rounded)."""
        return {
            "router": self.router,
            "phase": self.phase,
            "offered_per_s": round(self.offered_per_s, 1),
            "sent_per_s": round(self.sent_per_s, 1),
            "lifecycles_per_s": round(self.lifecycles_per_s, 1),
            "tasks": self.tasks,
            "create_to_offer_p50_ms": round(self.create_to_offer_p50_ms, 3),
            "create_to_offer_p99_ms": round(self.create_to_offer_p99_ms, 3),
            "accept_to_assigned_p50_ms": round(self.accept_to_assigned_p50_ms, 3),
            "accept_to_assigned_p99_ms": round(self.accept_to_assigned_p99_ms, 3),
            "errors": self.errors,
            "skipped": self.skipped,
            "drained": self.drained,
            "server_cpu_ms_per_task": _rounded(self.server_cpu_ms_per_task),
            "client_cpu_ms_per_task": _rounded(self.client_cpu_ms_per_task),
            "other_load_cores": _rounded(self.other_load_cores),
            "saturated": self.saturated,
            "snapshots": self.snapshots,
            "snapshot_writer_pause_ms": _rounded(self.snapshot_writer_pause_ms),
            "snapshot_background_s": _rounded(self.snapshot_background_s),
            "snapshot_bytes": self.snapshot_bytes,
            "loop_stall_max_ms": _rounded(self.loop_stall_max_ms),
        }


class _Timings:
    """perf_counter_ns stamps of every task, by sequence number (-1: not reached)."""

    def __init__(self) -> None:
        self.sent_ns: list[int] = []
        self.offered_ns: list[int] = []
        self.accepting_ns: list[int] = []
        self.assigned_ns: list[int] = []
        self.completed_ns: list[int] = []
        self.errors = 0

    def new(self, now_ns: int) -> int:
        self.sent_ns.append(now_ns)
        for stamps in (self.offered_ns, self.accepting_ns, self.assigned_ns, self.completed_ns):
            stamps.append(-1)
        return len(self.sent_ns) - 1


class LoadRun:
    """A queue and a fleet of agents on one router, and the generator that loads it.

    ::

        async with LoadRun("127.0.0.1:50051", "switchboard") as run:
            step = await run.step(500.0, warmup_s=1, measure_s=3)
    """

    def __init__(
        self,
        address: str,
        router: str,
        *,
        agents: int = AGENTS_DEFAULT,
        access: ClientAccess | None = None,
        customers: int = 0,
    ) -> None:
        """`customers`: every task carries one of that many customer ids and the personal
        attributes `PERSONAL_ATTRIBUTES` (marked personal in the timeline settings), so that
        each lifecycle hashes the id, seals the personal data and fills the timeline."""
        self.address = address
        self._customers = customers
        self.router = router
        # With `access`: TLS, an admin token to set up, a front end's to create, one per agent.
        self._access = access
        self._admin_metadata = access.metadata(Role.ADMIN) if access else ()
        self._frontend_metadata = access.metadata(Role.FRONTEND) if access else ()
        self._agent_count = agents
        # Unique names, so that runs against a long-lived --target never meet each other.
        self._run_id = uuid.uuid4().hex[:8]
        self._queue_id = f"load-{self._run_id}"
        self._request_prefix = f"load-{self._run_id}-"
        self._worker_ids = [f"load-{self._run_id}-{i:03d}" for i in range(agents)]
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: list[tgrpc.TaskServiceStub] = []
        self._sessions: list[AgentSession] = []
        self._agent_tasks: list[asyncio.Task[None]] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._timings = _Timings()
        self._open: set[int] = set()
        """Sequence numbers of the tasks sent and not yet completed (nor failed)."""
        self._random = random.Random(7)

    async def __aenter__(self) -> LoadRun:
        try:
            await self._set_up()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _set_up(self) -> None:
        """Creates the queue (served only by this run's agents) and the agents, and connects
        them; opens the creators' channels."""
        target = f"load_run == '{self._run_id}'"
        queue = pb.Queue(
            queue_id=self._queue_id,
            target_expression=target,
            reservation_timeout_s=RESERVATION_TIMEOUT_S,
        )
        access = self._access
        async with AdminClient(
            self.address, call_timeout_s=CALL_TIMEOUT_S, tls=access.tls if access else None,
            token=access.token_of(Role.ADMIN) if access else None,
        ) as admin:  # fmt: skip
            await admin.upsert_queue(queue)
        if self._customers:
            await self._mark_personal_attributes()
        async with self._channel() as channel:
            workers = wgrpc.WorkerServiceStub(channel)
            for worker_id in self._worker_ids:
                worker = pb.Worker(
                    worker_id=worker_id,
                    capacity_by_channel={"chat": CHAT_CAPACITY},
                    activity="offline",
                )
                worker.attributes.update({"load_run": self._run_id})
                await workers.UpsertWorker(
                    wpb.UpsertWorkerRequest(worker=worker), timeout=CALL_TIMEOUT_S,
                    metadata=self._admin_metadata,
                )  # fmt: skip
        for worker_id in self._worker_ids:
            session = AgentSession(
                self.address, worker_id, tls=access.tls if access else None,
                token=access.token_of(Role.AGENT, worker_id) if access else None,
            )  # fmt: skip
            await session.__aenter__()
            self._sessions.append(session)
            self._agent_tasks.append(asyncio.create_task(self._agent(session)))
        for _ in range(CLIENT_CHANNELS):
            channel = self._channel()
            self._channels.append(channel)
            self._stubs.append(tgrpc.TaskServiceStub(channel))

    async def _mark_personal_attributes(self) -> None:
        """Marks `PERSONAL_ATTRIBUTES` personal (kept with the workspace's other keys)."""
        async with self._channel() as channel:
            timeline = lgrpc.TimelineServiceStub(channel)
            current = await timeline.GetTimelineSettings(
                lpb.GetTimelineSettingsRequest(), timeout=CALL_TIMEOUT_S,
                metadata=self._admin_metadata,
            )  # fmt: skip
            settings = current.settings
            keys = sorted({*settings.personal_attribute_keys, *PERSONAL_ATTRIBUTES})
            del settings.personal_attribute_keys[:]
            settings.personal_attribute_keys.extend(keys)
            await timeline.UpsertTimelineSettings(
                lpb.UpsertTimelineSettingsRequest(settings=settings), timeout=CALL_TIMEOUT_S,
                metadata=self._admin_metadata,
            )  # fmt: skip

    async def close(self) -> None:
        """Takes the agents offline and away (so that a --target keeps no idle agents), then
        closes every stream and channel."""
        for task in self._in_flight:
            task.cancel()
        for task in self._agent_tasks:
            task.cancel()
        await asyncio.gather(*self._in_flight, *self._agent_tasks, return_exceptions=True)
        for session in self._sessions:
            with contextlib.suppress(SwitchboardError, RuntimeError):
                await session.set_activity("offline")
            await session.close()
        if self._sessions:
            with contextlib.suppress(grpc.RpcError):
                async with self._channel() as channel:
                    workers = wgrpc.WorkerServiceStub(channel)
                    for worker_id in self._worker_ids:
                        await workers.RemoveWorker(
                            wpb.RemoveWorkerRequest(worker_id=worker_id), timeout=CALL_TIMEOUT_S,
                            metadata=self._admin_metadata,
                        )  # fmt: skip
        self._sessions.clear()
        for channel in self._channels:
            await channel.close()
        self._channels.clear()

    def _channel(self) -> grpc.aio.Channel:
        if self._access is None:
            return grpc.aio.insecure_channel(self.address)
        return self._access.channel(self.address)

    # -- the agents -----------------------------------------------------------------------------

    async def _agent(self, session: AgentSession) -> None:
        """Takes every offer at once: each is handled in its own task, so that the next offer
        is read (and timed) while earlier ones are being accepted and completed."""
        prefix, timings = self._request_prefix, self._timings
        async for offer in session.offers():
            now_ns = time.perf_counter_ns()
            request_id = offer.task.client_request_id
            if not request_id.startswith(prefix):
                continue  # not this run's task
            seq = int(request_id[len(prefix) :])
            timings.offered_ns[seq] = now_ns
            self._spawn(self._handle(session, offer, seq))

    async def _handle(self, session: AgentSession, offer: pb.Offer, seq: int) -> None:
        timings = self._timings
        try:
            timings.accepting_ns[seq] = time.perf_counter_ns()
            task = await session.accept(offer)
            timings.assigned_ns[seq] = time.perf_counter_ns()
            await session.complete(task.task_id)
            timings.completed_ns[seq] = time.perf_counter_ns()
        except SwitchboardError:
            timings.errors += 1
        finally:
            self._open.discard(seq)

    # -- the generator --------------------------------------------------------------------------

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._in_flight.add(task)  # a reference, or the loop may drop the task midway
        task.add_done_callback(self._in_flight.discard)

    async def _create(self, seq: int, stub: tgrpc.TaskServiceStub) -> None:
        task = pb.Task(queue_id=self._queue_id, channel="chat")
        if self._customers:
            customer = seq % self._customers
            task.customer_id = f"{self._request_prefix}customer-{customer}"
            task.attributes.update({
                "name": f"Customer {customer}", "email": f"customer{customer}@example.com",
                "phone": f"+1415555{customer % 10_000:04d}", "topic": "billing",
            })  # fmt: skip
        request = tpb.CreateTaskRequest(task=task, client_request_id=f"{self._request_prefix}{seq}")
        try:
            await stub.CreateTask(request, timeout=CALL_TIMEOUT_S, metadata=self._frontend_metadata)
        except grpc.aio.AioRpcError:
            self._timings.errors += 1
            self._open.discard(seq)  # no offer will come for it

    async def _arrivals(self, rate_per_s: float, duration_s: float) -> int:
        """Sends Poisson arrivals for `duration_s`, each at its scheduled time: open loop, no
        call waits for another's reply. Returns how many were skipped (OUTSTANDING_MAX)."""
        skipped = 0
        started_s = time.perf_counter()
        due_s = started_s + self._random.expovariate(rate_per_s)
        end_s = started_s + duration_s
        timings, stubs = self._timings, self._stubs
        while due_s < end_s:
            delay_s = due_s - time.perf_counter()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            now_s = time.perf_counter()
            # Everything due by now goes out in this turn: a late wake-up sends a burst, as the
            # schedule says, rather than stretching the schedule.
            while due_s <= now_s and due_s < end_s:
                due_s += self._random.expovariate(rate_per_s)
                if len(self._open) >= OUTSTANDING_MAX:
                    skipped += 1
                    continue
                seq = timings.new(time.perf_counter_ns())
                self._open.add(seq)
                self._spawn(self._create(seq, stubs[seq % len(stubs)]))
        return skipped

    async def _drain(self, timeout_s: float) -> bool:
        deadline_s = time.monotonic() + timeout_s
        while self._open:
            if time.monotonic() > deadline_s:
                return False
            await asyncio.sleep(0.02)
        return True

    async def step(
        self,
        rate_per_s: float,
        *,
        warmup_s: float,
        measure_s: float,
        phase: str = "ramp",
        server_cpu_s: Callable[[], float] | None = None,
        machine_cpu_s: Callable[[], float] | None = None,
        during_measure: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> StepResult:
        """Offers `rate_per_s` for `warmup_s` + `measure_s`, measures the second part, and
        waits (up to DRAIN_TIMEOUT_S) for every task of the step to complete. `server_cpu_s`
        reads the server's CPU seconds so far, and `machine_cpu_s` the whole machine's, when
        they are known. `during_measure` runs alongside the measured part, from its start (to
        do something to the server meanwhile); the step ends once it has ended too."""
        timings = self._timings
        errors_before = timings.errors
        skipped = await self._arrivals(rate_per_s, warmup_s)
        first_seq = len(timings.sent_ns)
        window_start_ns = time.perf_counter_ns()
        client_start_s = time.process_time()
        server_start_s = server_cpu_s() if server_cpu_s else 0.0
        machine_start_s = machine_cpu_s() if machine_cpu_s else 0.0
        meanwhile = asyncio.create_task(during_measure()) if during_measure else None
        skipped += await self._arrivals(rate_per_s, measure_s)
        window_end_ns = time.perf_counter_ns()
        client_s = time.process_time() - client_start_s
        server_s = server_cpu_s() - server_start_s if server_cpu_s else None
        machine_s = machine_cpu_s() - machine_start_s if machine_cpu_s else None
        last_seq = len(timings.sent_ns)
        drained = await self._drain(DRAIN_TIMEOUT_S)
        if meanwhile is not None:
            await meanwhile
        window_s = (window_end_ns - window_start_ns) / 1e9
        seqs = slice(first_seq, last_seq)
        sent = np.array(timings.sent_ns[seqs], dtype=np.int64)
        offered = np.array(timings.offered_ns[seqs], dtype=np.int64)
        accepting = np.array(timings.accepting_ns[seqs], dtype=np.int64)
        assigned = np.array(timings.assigned_ns[seqs], dtype=np.int64)
        completed = np.array(timings.completed_ns, dtype=np.int64)
        in_window = (completed >= window_start_ns) & (completed < window_end_ns)
        reached = offered >= 0
        to_offer_ms = (offered[reached] - sent[reached]) / 1e6
        both = (accepting >= 0) & (assigned >= 0)
        to_assigned_ms = (assigned[both] - accepting[both]) / 1e6
        lifecycles = max(1, int(in_window.sum()))
        return StepResult(
            router=self.router,
            phase=phase,
            offered_per_s=rate_per_s,
            sent_per_s=len(sent) / window_s,
            lifecycles_per_s=int(in_window.sum()) / window_s,
            tasks=len(sent),
            create_to_offer_p50_ms=_percentile(to_offer_ms, 50),
            create_to_offer_p99_ms=_percentile(to_offer_ms, 99),
            accept_to_assigned_p50_ms=_percentile(to_assigned_ms, 50),
            accept_to_assigned_p99_ms=_percentile(to_assigned_ms, 99),
            errors=timings.errors - errors_before,
            skipped=skipped,
            drained=drained,
            server_cpu_ms_per_task=None if server_s is None else 1000 * server_s / lifecycles,
            client_cpu_ms_per_task=1000 * client_s / lifecycles,
            other_load_cores=(
                None
                if server_s is None or machine_s is None
                else max(0.0, machine_s - server_s - client_s) / window_s
            ),
        )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _percentile(values_ms: np.ndarray[Any, Any], q: float) -> float:
    return float(np.percentile(values_ms, q)) if len(values_ms) else float("nan")
