"""Plain gRPC helpers for the end-to-end tests: stubs, and an agent's Connect stream driven from a
test thread with timeouts."""

from __future__ import annotations

import itertools
import queue
import threading
from dataclasses import dataclass
from typing import Any

import grpc

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import admin_service_pb2_grpc as agrpc
from router._proto.switchboard.v1 import clock_service_pb2 as cpb
from router._proto.switchboard.v1 import clock_service_pb2_grpc as cgrpc
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import stats_service_pb2_grpc as sgrpc
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router._proto.switchboard.v1 import worker_service_pb2_grpc as wgrpc


@dataclass
class Stubs:
    tasks: tgrpc.TaskServiceStub
    workers: wgrpc.WorkerServiceStub
    admin: agrpc.AdminServiceStub
    stats: sgrpc.StatsServiceStub
    clock: cgrpc.ClockServiceStub

    @classmethod
    def of(cls, channel: grpc.Channel) -> Stubs:
        return cls(
            tgrpc.TaskServiceStub(channel),
            wgrpc.WorkerServiceStub(channel),
            agrpc.AdminServiceStub(channel),
            sgrpc.StatsServiceStub(channel),
            cgrpc.ClockServiceStub(channel),
        )

    def queue(self, queue_id: str, **fields: Any) -> pb.Queue:
        request = apb.UpsertQueueRequest(queue=pb.Queue(queue_id=queue_id, **fields))
        return self.admin.UpsertQueue(request, timeout=5).queue

    def worker(self, worker_id: str, **fields: Any) -> pb.Worker:
        fields.setdefault("capacity_by_channel", {"voice": 1, "chat": 2})
        fields.setdefault("activity", "available")
        request = wpb.UpsertWorkerRequest(worker=pb.Worker(worker_id=worker_id, **fields))
        return self.workers.UpsertWorker(request, timeout=5).worker

    def create(self, client_request_id: str = "", **fields: Any) -> tpb.CreateTaskResponse:
        fields.setdefault("channel", "voice")
        fields.setdefault("queue_id", "support")
        request = tpb.CreateTaskRequest(task=pb.Task(**fields), client_request_id=client_request_id)
        return self.tasks.CreateTask(request, timeout=5)

    def get(self, task_id: str) -> pb.Task:
        return self.tasks.GetTask(tpb.GetTaskRequest(task_id=task_id), timeout=5).task

    def advance(self, seconds: float) -> None:
        request = cpb.AdvanceTimeRequest(duration_ms=round(seconds * 1000))
        self.clock.AdvanceTime(request, timeout=5)


class StreamEnded(Exception):
    """The router closed the Connect stream (without an error status)."""


class RawAgent:
    """An agent desktop's Connect stream, read by a thread so that tests can wait with timeouts."""

    def __init__(self, stubs: Stubs, worker_id: str, activity: str = "") -> None:
        self._requests: queue.Queue[wpb.ConnectRequest | None] = queue.Queue()
        self._responses: queue.Queue[wpb.ConnectResponse | BaseException] = queue.Queue()
        self._ids = itertools.count(1)
        hello = wpb.ConnectRequest.Hello(worker_id=worker_id, activity=activity)
        self._requests.put(wpb.ConnectRequest(request_id="hello", hello=hello))
        self._call = stubs.workers.Connect(iter(self._requests.get, None))
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        try:
            for response in self._call:
                self._responses.put(response)
        except grpc.RpcError as error:
            self._responses.put(error)
        else:
            self._responses.put(StreamEnded("the router ended the stream"))

    def next(self, timeout_s: float = 5.0) -> wpb.ConnectResponse:
        item = self._responses.get(timeout=timeout_s)
        if isinstance(item, BaseException):
            raise item
        return item

    def next_of(self, kind: str, timeout_s: float = 5.0) -> wpb.ConnectResponse:
        """The next message of a kind, skipping others (e.g. acks)."""
        while True:
            message = self.next(timeout_s)
            if message.WhichOneof("kind") == kind:
                return message

    def nothing_within(self, timeout_s: float = 0.3) -> bool:
        try:
            self._responses.get(timeout=timeout_s)
        except queue.Empty:
            return True
        return False

    def send(self, **kind: Any) -> str:
        request_id = f"r{next(self._ids)}"
        self._requests.put(wpb.ConnectRequest(request_id=request_id, **kind))
        return request_id

    def accept(self, reservation_id: str) -> str:
        return self.send(accept=wpb.ConnectRequest.Accept(reservation_id=reservation_id))

    def reject(self, reservation_id: str) -> str:
        return self.send(reject=wpb.ConnectRequest.Reject(reservation_id=reservation_id))

    def heartbeat(self) -> None:
        """Proves the desktop is there (a stream silent for `presence_timeout_s` of the router's
        clock is ended): sends a heartbeat and waits for its ack."""
        request_id = self.send(heartbeat=wpb.ConnectRequest.Heartbeat())
        while self.next_of("ack").request_id != request_id:
            pass

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()
        self._reader.join(timeout=5)


def connect(stubs: Stubs, agents: list[RawAgent], worker_id: str, activity: str = "") -> RawAgent:
    """Opens a worker's Connect stream, kept in `agents` (the fixture closes them after the
    test), and reads its attachment."""
    agent = RawAgent(stubs, worker_id, activity=activity)
    agents.append(agent)
    assert agent.next().WhichOneof("kind") == "attached"
    return agent
