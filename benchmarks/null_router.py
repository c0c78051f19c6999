"""The null router: the floor the load benchmark measures Switchboard against.

    python -m benchmarks.null_router [--host 127.0.0.1] [--port 0]

A bare `grpc.aio` server speaking the same services and message shapes as the router, as far as
the load generator and the `workers` SDK use them: TaskService.CreateTask, CompleteTask and
GetTask; WorkerService.UpsertWorker, RemoveWorker, SetActivity and the Connect stream (hello,
offers, accept, reject, heartbeat); AdminService.UpsertQueue; and grpc.health. It neither
scores nor persists: each task goes to the next connected agent with a free slot, in turn, and
waits in one FIFO queue while none is free. What remains is the cost of gRPC and protobuf in
Python on both sides, which is what the router's throughput is divided by.

It prints `null router serving on HOST:PORT` once it listens, like `switchboard serve`, and
stops on SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import admin_service_pb2_grpc as agrpc
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router._proto.switchboard.v1 import worker_service_pb2_grpc as wgrpc
from router.server import GRPC_OPTIONS

ConnectRequest = wpb.ConnectRequest
ConnectResponse = wpb.ConnectResponse

RESERVATION_TIMEOUT_MS = 30_000
"""Only written into offers (the SDK shows it); the null router never expires an offer."""


@dataclass(slots=True)
class _Agent:
    worker: pb.Worker
    capacity: int
    held: set[str] = field(default_factory=set)
    """Task ids offered to or assigned to this agent and not completed."""
    outbox: asyncio.Queue[ConnectResponse | None] | None = None
    """The attached Connect stream's messages; None while no stream is attached."""


@dataclass(slots=True)
class _Task:
    task: pb.Task
    worker_id: str = ""
    reservation_id: str = ""


class NullRouter(
    tgrpc.TaskServiceServicer, wgrpc.WorkerServiceServicer, agrpc.AdminServiceServicer
):
    """Every RPC the benchmark makes, with no routing logic and no store behind it."""

    def __init__(self) -> None:
        self._agents: dict[str, _Agent] = {}
        self._tasks: dict[str, _Task] = {}
        self._free_slots: deque[str] = deque()
        """One worker id per free slot of a connected agent: the next offer goes to the first."""
        self._waiting: deque[str] = deque()
        self._reserved: dict[str, str] = {}
        """Pending offers: reservation id -> task id."""
        self._ids = itertools.count(1)

    # -- dispatch -------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        """Offers waiting tasks, oldest first, to agents' free slots, in turn."""
        while self._waiting and self._free_slots:
            agent = self._agents.get(self._free_slots.popleft())
            if agent is None or agent.outbox is None:
                continue  # a slot left behind by an agent that went away
            held = self._tasks[self._waiting.popleft()]
            held.worker_id = agent.worker.worker_id
            held.reservation_id = f"r{next(self._ids)}"
            self._reserved[held.reservation_id] = held.task.task_id
            held.task.status = pb.TASK_STATUS_RESERVED
            held.task.worker_id = held.worker_id
            agent.held.add(held.task.task_id)
            offer = pb.Offer(
                reservation_id=held.reservation_id,
                task_id=held.task.task_id,
                worker_id=held.worker_id,
                expires_at_ms=RESERVATION_TIMEOUT_MS,
                status=pb.RESERVATION_STATUS_PENDING,
                task=held.task,
            )
            agent.outbox.put_nowait(ConnectResponse(offer=offer))

    def _release(self, agent: _Agent, task_id: str) -> None:
        agent.held.discard(task_id)
        if agent.outbox is not None:
            self._free_slots.append(agent.worker.worker_id)

    def _requeue(self, held: _Task) -> None:
        self._reserved.pop(held.reservation_id, None)
        held.worker_id = held.reservation_id = ""
        held.task.status = pb.TASK_STATUS_PENDING
        held.task.worker_id = ""
        self._waiting.appendleft(held.task.task_id)

    # -- TaskService ----------------------------------------------------------------------------

    async def CreateTask(
        self, request: tpb.CreateTaskRequest, context: grpc.aio.ServicerContext
    ) -> tpb.CreateTaskResponse:
        task = pb.Task()
        task.CopyFrom(request.task)
        task.task_id = f"t{next(self._ids)}"
        task.client_request_id = request.client_request_id
        task.status = pb.TASK_STATUS_PENDING
        self._tasks[task.task_id] = _Task(task)
        self._waiting.append(task.task_id)
        task.queue_position = len(self._waiting)
        reply = tpb.CreateTaskResponse(task=task)  # a copy: as the task was when created
        self._dispatch()
        return reply

    async def CompleteTask(
        self, request: tpb.CompleteTaskRequest, context: grpc.aio.ServicerContext
    ) -> tpb.CompleteTaskResponse:
        held = self._tasks.get(request.task_id)
        if held is None or held.task.status != pb.TASK_STATUS_ASSIGNED:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "task_id: not assigned")
        assert held is not None
        del self._tasks[request.task_id]  # nothing is kept: the null router forgets at once
        held.task.status = pb.TASK_STATUS_COMPLETED
        agent = self._agents.get(held.worker_id)
        if agent is not None:
            self._release(agent, request.task_id)
        self._dispatch()
        return tpb.CompleteTaskResponse(task=held.task)

    async def GetTask(
        self, request: tpb.GetTaskRequest, context: grpc.aio.ServicerContext
    ) -> tpb.GetTaskResponse:
        held = self._tasks.get(request.task_id)
        if held is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "task_id: no such open task")
        assert held is not None
        return tpb.GetTaskResponse(task=held.task)

    # -- WorkerService --------------------------------------------------------------------------

    async def UpsertWorker(
        self, request: wpb.UpsertWorkerRequest, context: grpc.aio.ServicerContext
    ) -> wpb.UpsertWorkerResponse:
        worker = pb.Worker()
        worker.CopyFrom(request.worker)
        previous = self._agents.get(worker.worker_id)
        agent = _Agent(worker, capacity=sum(worker.capacity_by_channel.values()))
        if previous is not None:
            agent.held, agent.outbox = previous.held, previous.outbox
        self._agents[worker.worker_id] = agent
        return wpb.UpsertWorkerResponse(worker=worker, created=previous is None)

    async def RemoveWorker(
        self, request: wpb.RemoveWorkerRequest, context: grpc.aio.ServicerContext
    ) -> wpb.RemoveWorkerResponse:
        agent = self._agents.pop(request.worker_id, None)
        if agent is not None and agent.outbox is not None:
            agent.outbox.put_nowait(None)
        return wpb.RemoveWorkerResponse()

    async def SetActivity(
        self, request: wpb.SetActivityRequest, context: grpc.aio.ServicerContext
    ) -> wpb.SetActivityResponse:
        agent = self._agents.get(request.worker_id)
        if agent is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "worker_id: no such worker")
        assert agent is not None
        agent.worker.activity = request.activity
        return wpb.SetActivityResponse(worker=agent.worker)

    async def Connect(
        self, request_iterator: AsyncIterator[ConnectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[ConnectResponse]:
        """Attaches the stream, re-sends nothing (the null router's offers never outlive a
        stream), then forwards offers and answers accept, reject and heartbeat messages."""
        requests = aiter(request_iterator)
        hello = await anext(requests, None)
        agent = self._agents.get(hello.hello.worker_id) if hello is not None else None
        if hello is None or agent is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "hello: no such worker")
            return
        if agent.outbox is not None:
            agent.outbox.put_nowait(None)  # a newer stream replaces the old one
        outbox: asyncio.Queue[ConnectResponse | None] = asyncio.Queue()
        agent.outbox = outbox
        agent.worker.task_ids[:] = sorted(agent.held)
        yield ConnectResponse(request_id=hello.request_id, attached=agent.worker)
        self._free_slots.extend([agent.worker.worker_id] * (agent.capacity - len(agent.held)))
        self._dispatch()
        reader = asyncio.create_task(self._read(agent, requests, outbox))
        try:
            while (message := await outbox.get()) is not None:
                yield message
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            if agent.outbox is outbox:
                self._detach(agent)

    def _detach(self, agent: _Agent) -> None:
        """The agent's stream ended: its offers go back to the head of the queue and its free
        slots are dropped (assigned tasks stay with it until completed)."""
        agent.outbox = None
        worker_id = agent.worker.worker_id
        self._free_slots = deque(w for w in self._free_slots if w != worker_id)
        for task_id in sorted(agent.held):
            held = self._tasks.get(task_id)
            if held is not None and held.task.status == pb.TASK_STATUS_RESERVED:
                agent.held.discard(task_id)
                self._requeue(held)
        self._dispatch()

    async def _read(
        self,
        agent: _Agent,
        requests: AsyncIterator[ConnectRequest],
        outbox: asyncio.Queue[ConnectResponse | None],
    ) -> None:
        try:
            async for request in requests:
                for message in self._answer(agent, request):
                    outbox.put_nowait(message)
        finally:
            outbox.put_nowait(None)

    def _answer(self, agent: _Agent, request: ConnectRequest) -> list[ConnectResponse]:
        kind = request.WhichOneof("kind")
        ack = ConnectResponse(request_id=request.request_id, ack=ConnectResponse.Ack())
        if kind == "heartbeat":
            return [ack]
        reservation_id = (
            request.accept.reservation_id if kind == "accept" else request.reject.reservation_id
        )
        held = self._tasks.get(self._reserved.get(reservation_id, ""))
        if held is not None and held.worker_id != agent.worker.worker_id:
            held = None
        if kind not in ("accept", "reject") or held is None:
            error = ConnectResponse.Error(
                code="FAILED_PRECONDITION", message="reservation_id: no such pending offer"
            )
            return [ConnectResponse(request_id=request.request_id, error=error)]
        if kind == "reject":
            self._release(agent, held.task.task_id)
            self._requeue(held)
            self._dispatch()
            return [ack]
        del self._reserved[reservation_id]
        held.task.status = pb.TASK_STATUS_ASSIGNED
        return [ConnectResponse(assigned=held.task), ack]

    # -- AdminService ---------------------------------------------------------------------------

    async def UpsertQueue(
        self, request: apb.UpsertQueueRequest, context: grpc.aio.ServicerContext
    ) -> apb.UpsertQueueResponse:
        return apb.UpsertQueueResponse(queue=request.queue, created=True)


async def serve(host: str, port: int) -> None:
    """Serves until SIGTERM or SIGINT; prints the address line first."""
    # The router's own options: the same transport settings on both sides of the comparison.
    server = grpc.aio.server(options=GRPC_OPTIONS)
    bound_port = server.add_insecure_port(f"{host}:{port}")
    # The generated bases answer UNIMPLEMENTED for every RPC not defined here; their typed stubs
    # declare them abstract all the same.
    null = NullRouter()  # type: ignore[abstract]
    tgrpc.add_TaskServiceServicer_to_server(null, server)
    wgrpc.add_WorkerServiceServicer_to_server(null, server)
    agrpc.add_AdminServiceServicer_to_server(null, server)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    await server.start()
    print(f"null router serving on {host}:{bound_port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(0.5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.null_router", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=0, help="port (0: any free port)")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
