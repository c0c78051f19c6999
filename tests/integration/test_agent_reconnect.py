"""The agent SDK (`workers.AgentSession`) reconnects by itself after a stream the router ended:
to the leader a stepping-down router names, and after a stream that ended OK unasked."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc

from benchmarks.failover import start_router_on
from benchmarks.servers import is_serving
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from tests.e2e.raw import Stubs
from tests.integration.support import RedisServer
from workers import AgentSession, TaskClient

LEASE_TTL_S = 1.0
SLOW_BACKOFF_S = 30.0
"""The session's reconnect back-off in the first test: its first retry waits at least half of
it, so a reconnection sooner than that can only have followed the leader the router named."""
FOLLOW_WITHIN_S = 10.0


async def eventually(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    """Waits until `check()` (run in a thread: it may block) is true."""
    deadline_s = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline_s, f"not {what} within {timeout_s:g} s"
        await asyncio.sleep(0.05)


def test_an_agent_session_follows_a_leader_that_steps_down_to_the_leader_it_names(
    tmp_path: Path,
) -> None:
    """An agent attached to the leader, and only given its address. The leader is paused past
    its lease (the standby takes over) and resumed: it steps down, ending the agent's stream
    UNAVAILABLE with the new leader in the trailing metadata, and the session goes there at
    once (far sooner than its back-off), re-attaches and receives the new leader's offers."""
    redis_server = RedisServer(tmp_path / "redis").start()
    processes = []
    try:
        first, first_address = start_router_on(redis_server.url, LEASE_TTL_S)
        processes.append(first)
        deadline_s = time.monotonic() + 15
        while not is_serving(first_address):
            assert time.monotonic() < deadline_s, "the first router did not take the lead"
            time.sleep(0.05)
        second, second_address = start_router_on(redis_server.url, LEASE_TTL_S)
        processes.append(second)
        with grpc.insecure_channel(first_address) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support")
            stubs.worker("ana", activity="offline")

        async def scenario() -> None:
            backoff_s = (SLOW_BACKOFF_S, SLOW_BACKOFF_S)
            async with AgentSession(first_address, "ana", reconnect_backoff_s=backoff_s) as agent:
                assert (agent.attach_count, agent.address) == (1, first_address)
                first.send_signal(signal.SIGSTOP)  # paused past its lease
                await eventually("taken over", lambda: is_serving(second_address), 15)
                first.send_signal(signal.SIGCONT)  # it steps down and ends the stream
                await eventually("re-attached", lambda: agent.attach_count == 2, FOLLOW_WITHIN_S)
                assert agent.address == second_address
                offers = agent.offers()
                async with TaskClient(second_address) as tasks:
                    created = await tasks.create_task(queue_id="support", channel="voice")
                offer = await asyncio.wait_for(anext(offers), 10)
                assert offer.task_id == created.task.task_id

        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
            process.wait(timeout=15)
        redis_server.stop()


class EndsTheFirstStreamOk:
    """A router's WorkerService reduced to Connect: it ends the first stream with status OK
    right after attaching it; later streams are attached, sent one offer, and held open."""

    def __init__(self) -> None:
        self.streams = 0

    async def connect(
        self, requests: AsyncIterator[wpb.ConnectRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[wpb.ConnectResponse]:
        self.streams += 1
        hello = await anext(aiter(requests))
        worker = pb.Worker(worker_id=hello.hello.worker_id, activity="available")
        yield wpb.ConnectResponse(request_id=hello.request_id, attached=worker)
        if self.streams == 1:
            return  # status OK, which the session did not ask for
        offer = pb.Offer(reservation_id="reservation-1", task_id="task-1", worker_id="ana")
        yield wpb.ConnectResponse(offer=offer)
        await asyncio.Event().wait()  # until the session closes it

    def handler(self) -> grpc.GenericRpcHandler:
        connect = grpc.stream_stream_rpc_method_handler(
            self.connect,
            request_deserializer=wpb.ConnectRequest.FromString,
            response_serializer=wpb.ConnectResponse.SerializeToString,
        )
        service = wpb.DESCRIPTOR.services_by_name["WorkerService"].full_name
        return grpc.method_handlers_generic_handler(service, {"Connect": connect})


def test_a_stream_the_router_ends_ok_unasked_makes_the_session_reconnect() -> None:
    """A stream that ends with status OK while the session still wants it is a lost stream,
    not the end of the session: it reconnects, attaches again and receives offers."""

    async def scenario() -> None:
        servicer = EndsTheFirstStreamOk()
        server = grpc.aio.server(handlers=[servicer.handler()])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with AgentSession(
                f"127.0.0.1:{port}", "ana", reconnect_backoff_s=(0.05, 0.2)
            ) as agent:
                offer = await asyncio.wait_for(anext(agent.offers()), 10)
                assert offer.reservation_id == "reservation-1"
                assert (agent.attach_count, servicer.streams) == (2, 2)
                assert agent.connected
        finally:
            await server.stop(0)

    asyncio.run(asyncio.wait_for(scenario(), 30))
