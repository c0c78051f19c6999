"""The large-state benchmark's traffic: GetTask calls at a steady rate over several gRPC channels,
each for a random task among those built, and a trickle of CreateTask, all open loop (each call
leaves at its scheduled time, none waits for another's reply), each timed from when it left with
one clock (`perf_counter`)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from benchmarks.bigstate_build import QUEUES
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc

_Send = Callable[[tgrpc.TaskServiceStub], Coroutine[Any, Any, None]]
CALL_TIMEOUT_S = 10.0
CHANNELS_DEFAULT = 4


@dataclass(slots=True)
class Timings:
    """Every GetTask's departure and latency (seconds, perf_counter), and the calls that failed."""

    sent_s: list[float] = field(default_factory=list)
    latency_s: list[float] = field(default_factory=list)
    get_errors: int = 0
    creates: int = 0
    create_errors: int = 0

    def arrays(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        return np.array(self.sent_s), np.array(self.latency_s)


class Traffic:
    """GetTask at `get_per_s` for tasks task-1 to task-`tasks`, CreateTask at `create_per_s`.

    ::

        async with Traffic(address, tasks=1_000_000) as traffic:
            await traffic.run(stop)  # until the event is set
    """

    def __init__(
        self,
        address: str,
        *,
        tasks: int,
        get_per_s: float,
        create_per_s: float,
        channels: int = CHANNELS_DEFAULT,
        seed: int = 11,
    ) -> None:
        self.address = address
        self.tasks = tasks
        self.get_per_s = get_per_s
        self.create_per_s = create_per_s
        self.timings = Timings()
        self._channel_count = channels
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: list[tgrpc.TaskServiceStub] = []
        self._in_flight: set[asyncio.Task[None]] = set()
        self._random = random.Random(seed)

    async def __aenter__(self) -> Traffic:
        for _ in range(self._channel_count):
            channel = grpc.aio.insecure_channel(self.address)
            self._channels.append(channel)
            self._stubs.append(tgrpc.TaskServiceStub(channel))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        for channel in self._channels:
            await channel.close()

    async def run(self, stop: asyncio.Event) -> None:
        """Sends both streams of calls until `stop` is set, then waits for the calls in flight
        (each ends within CALL_TIMEOUT_S)."""
        streams = [self._every(1 / self.get_per_s, self._get, stop)]
        if self.create_per_s > 0:
            streams.append(self._every(1 / self.create_per_s, self._create, stop))
        await asyncio.gather(*streams)
        await asyncio.gather(*self._in_flight, return_exceptions=True)

    async def _every(self, interval_s: float, send: _Send, stop: asyncio.Event) -> None:
        due_s = time.perf_counter()
        sent = 0
        while not stop.is_set():
            delay_s = due_s - time.perf_counter()
            if delay_s > 0:
                await asyncio.sleep(delay_s)
            # Everything due by now goes out in this turn: a late wake-up sends a burst, as the
            # schedule says, rather than stretching the schedule.
            now_s = time.perf_counter()
            while due_s <= now_s:
                task = asyncio.create_task(send(self._stubs[sent % len(self._stubs)]))
                self._in_flight.add(task)  # a reference, or the loop may drop the task midway
                task.add_done_callback(self._in_flight.discard)
                sent += 1
                due_s += interval_s

    async def _get(self, stub: tgrpc.TaskServiceStub) -> None:
        task_id = f"task-{self._random.randint(1, self.tasks)}"
        sent_s = time.perf_counter()
        try:
            await stub.GetTask(tpb.GetTaskRequest(task_id=task_id), timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError:
            self.timings.get_errors += 1
            return
        self.timings.sent_s.append(sent_s)
        self.timings.latency_s.append(time.perf_counter() - sent_s)

    async def _create(self, stub: tgrpc.TaskServiceStub) -> None:
        rng = self._random
        task = pb.Task(queue_id=rng.choice(QUEUES), channel="chat", customer_id="cust-live")
        task.attributes.update({"order_id": f"A{rng.randrange(10**8):08d}", "tier": "gold"})
        request = tpb.CreateTaskRequest(task=task, client_request_id=f"{rng.getrandbits(128):032x}")
        try:
            await stub.CreateTask(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError:
            self.timings.create_errors += 1
            return
        self.timings.creates += 1
