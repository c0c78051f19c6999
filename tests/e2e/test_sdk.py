"""The `workers` SDK end to end: AgentSession, TaskClient and AdminClient against a real router
over gRPC.

Each test is a sync function that runs its scenario with `asyncio.run`; the router runs in its own
thread (the `router_server` fixture) with the test clock, so offers expire only when a test moves
the clock with ClockService.AdvanceTime."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from types import ModuleType
from typing import Any, TypeVar

import grpc
import pytest

import workers
from router._proto.switchboard.v1 import clock_service_pb2 as cpb
from router._proto.switchboard.v1 import clock_service_pb2_grpc as cgrpc
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router._proto.switchboard.v1 import worker_service_pb2_grpc as wgrpc
from tests.conftest import ServerThread
from workers import AdminClient, AgentSession, FailedPrecondition, NotFound, TaskClient

T = TypeVar("T")

WAIT_S = 5.0
"""Longest wait for something the router does at once (an offer, a reconnection)."""
FAST_BACKOFF_S = (0.05, 0.2)


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    """Runs an async scenario with a hard bound on its duration."""

    async def bounded() -> T:
        return await asyncio.wait_for(scenario(), timeout=12)

    return asyncio.run(bounded())


@contextlib.asynccontextmanager
async def admin(address: str) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(address) as channel:
        yield channel


async def make_queue(address: str, queue_id: str, **fields: Any) -> None:
    async with AdminClient(address) as admin_client:
        await admin_client.upsert_queue(pb.Queue(queue_id=queue_id, **fields))


async def make_worker(channel: grpc.aio.Channel, worker_id: str, **fields: Any) -> None:
    fields.setdefault("capacity_by_channel", {"voice": 1, "chat": 2})
    worker = pb.Worker(worker_id=worker_id, **fields)
    await wgrpc.WorkerServiceStub(channel).UpsertWorker(wpb.UpsertWorkerRequest(worker=worker))


async def next_offer(offers: AsyncIterator[pb.Offer]) -> pb.Offer:
    return await asyncio.wait_for(anext(offers), WAIT_S)


async def eventually(condition: Callable[[], bool], what: str) -> None:
    for _ in range(round(WAIT_S / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# -- the public surface --------------------------------------------------------------------------


def test_all_lists_every_public_name_and_each_imports() -> None:
    public = {
        name
        for name, value in vars(workers).items()
        if not name.startswith("_") and not isinstance(value, ModuleType)
    }
    assert sorted(workers.__all__) == sorted(public)
    namespace: dict[str, object] = {}
    exec("from workers import *", namespace)
    for name in workers.__all__:
        assert namespace[name] is getattr(workers, name)
    assert issubclass(workers.Unavailable, workers.SwitchboardError)


# -- AgentSession --------------------------------------------------------------------------------


def test_lifecycle_offer_accept_complete_wrap_up(router_server: ServerThread) -> None:
    address = router_server.address

    async def scenario() -> None:
        async with admin(address) as channel:
            await make_queue(address, "support", wrapup_s=30)
            await make_worker(channel, "agent-1", skills={"billing": 4})
        async with AgentSession(address, "agent-1") as session, TaskClient(address) as tasks:
            assert session.worker.activity == "available" and session.worker.available
            offers = session.offers()
            created = await tasks.create_task(
                queue_id="support", channel="voice", required_skills={"billing": 2}
            )
            offer = await next_offer(offers)
            assert offer.task_id == created.task.task_id
            assert offer.worker_id == "agent-1"
            assert offer.status == pb.RESERVATION_STATUS_PENDING
            assert set(session.pending_offers) == {offer.reservation_id}

            task = await session.accept(offer)
            assert (task.task_id, task.status, task.worker_id) == (
                offer.task_id,
                pb.TASK_STATUS_ASSIGNED,
                "agent-1",
            )
            assert not session.pending_offers

            wrapping = await session.complete(task.task_id)
            assert wrapping.status == pb.TASK_STATUS_WRAPPING
            done = await session.wrap_up(task.task_id)
            assert done.status == pb.TASK_STATUS_COMPLETED
            assert (await tasks.get_task(task.task_id)).status == pb.TASK_STATUS_COMPLETED

    run(scenario)


def test_rejected_task_is_offered_to_another_agent(router_server: ServerThread) -> None:
    address = router_server.address

    async def scenario() -> None:
        async with admin(address) as channel:
            await make_queue(address, "support")
            await make_worker(channel, "agent-a")
            await make_worker(channel, "agent-b")
        async with (
            AgentSession(address, "agent-a") as first,
            # On a break, agent-b cannot take the task before agent-a has rejected it.
            AgentSession(address, "agent-b", activity="break") as second,
            TaskClient(address) as tasks,
        ):
            created = await tasks.create_task(queue_id="support", channel="chat")
            offer = await next_offer(first.offers())
            await first.reject(offer, reason="not my area")
            assert (await tasks.get_task(offer.task_id)).status == pb.TASK_STATUS_PENDING

            await second.set_activity("available")
            second_offer = await next_offer(second.offers())
            assert second_offer.task_id == created.task.task_id
            assert second_offer.reservation_id != offer.reservation_id
            task = await second.accept(second_offer)
            assert task.worker_id == "agent-b"
            assert list(task.excluded_worker_ids) == ["agent-a"]

            # A rejected offer cannot be taken back.
            with pytest.raises(FailedPrecondition, match="rejected"):
                await first.accept(offer)

    run(scenario)


class DroppingProxy:
    """A TCP proxy in front of the router whose connections a test can cut, as a network
    failure would: the client sees its stream fail, not a clean end."""

    def __init__(self, upstream: str) -> None:
        self._upstream_host, port = upstream.rsplit(":", 1)
        self._upstream_port = int(port)
        self._transports: list[asyncio.WriteTransport] = []
        self._server: asyncio.Server | None = None
        self.connections = 0

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def drop_connections(self) -> None:
        for transport in self._transports:
            transport.abort()
        self._transports.clear()

    async def close(self) -> None:
        self.drop_connections()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(
            self._upstream_host, self._upstream_port
        )
        self._transports += [writer.transport, up_writer.transport]
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()


def test_dropped_stream_reconnects_and_keeps_the_pending_offer(
    router_server: ServerThread,
) -> None:
    address = router_server.address

    async def scenario() -> None:
        async with admin(address) as channel:
            await make_queue(address, "support")
            await make_worker(channel, "agent-1")
        proxy = DroppingProxy(address)
        proxy_address = await proxy.start()
        session = AgentSession(proxy_address, "agent-1", reconnect_backoff_s=FAST_BACKOFF_S)
        async with session, TaskClient(address) as tasks:
            offers = session.offers()
            await tasks.create_task(queue_id="support", channel="voice")
            offer = await next_offer(offers)

            proxy.drop_connections()
            await eventually(lambda: session.attach_count == 2, "the session to reconnect")
            assert proxy.connections >= 2
            # The router re-sent the pending offer on the new stream; the session kept it and
            # does not yield it a second time.
            assert set(session.pending_offers) == {offer.reservation_id}
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(offers), 0.3)

            task = await session.accept(offer)
            assert task.status == pb.TASK_STATUS_ASSIGNED
        await proxy.close()

    run(scenario)


def test_a_new_stream_is_sent_the_pending_offer_again(router_server: ServerThread) -> None:
    address = router_server.address

    async def scenario() -> None:
        async with admin(address) as channel:
            await make_queue(address, "support")
            await make_worker(channel, "agent-1")
        async with AgentSession(address, "agent-1") as session, TaskClient(address) as tasks:
            await tasks.create_task(queue_id="support", channel="voice")
            offer = await next_offer(session.offers())
        # The desktop restarts: a session with no memory of the offer is sent it again.
        async with AgentSession(address, "agent-1") as restarted:
            again = await next_offer(restarted.offers())
            assert again.reservation_id == offer.reservation_id
            assert again.status == pb.RESERVATION_STATUS_PENDING
            assert (await restarted.accept(again)).worker_id == "agent-1"

    run(scenario)


def test_accepting_an_expired_offer_raises_failed_precondition(
    router_server: ServerThread,
) -> None:
    address = router_server.address

    async def scenario() -> None:
        async with admin(address) as channel:
            await make_queue(address, "support", reservation_timeout_s=20)
            await make_worker(channel, "agent-1")
            async with AgentSession(address, "agent-1") as session, TaskClient(address) as tasks:
                await tasks.create_task(queue_id="support", channel="voice")
                offer = await next_offer(session.offers())
                clock = cgrpc.ClockServiceStub(channel)
                await clock.AdvanceTime(cpb.AdvanceTimeRequest(duration_ms=21_000))
                # The router closes the offer on the stream; the session forgets it.
                await eventually(lambda: not session.pending_offers, "the offer to close")
                with pytest.raises(FailedPrecondition, match="timed_out") as raised:
                    await session.accept(offer)
                assert raised.value.code is grpc.StatusCode.FAILED_PRECONDITION
                task = await tasks.get_task(offer.task_id)
                assert task.status == pb.TASK_STATUS_PENDING
                assert list(task.excluded_worker_ids) == ["agent-1"]

    run(scenario)


def test_a_session_tries_the_next_address_when_one_is_down(router_server: ServerThread) -> None:
    async def scenario() -> None:
        async with admin(router_server.address) as channel:
            await make_worker(channel, "agent-1")
        with socket.socket() as unused:  # a port that nothing listens on
            unused.bind(("127.0.0.1", 0))
            down = f"127.0.0.1:{unused.getsockname()[1]}"
        addresses = [down, router_server.address]
        session = AgentSession(addresses, "agent-1", reconnect_backoff_s=FAST_BACKOFF_S)
        async with session:
            assert session.address == router_server.address
            assert session.attach_count == 1
        # Closed: the offer iterator ends rather than waiting for ever.
        assert [offer async for offer in session.offers()] == []

    run(scenario)


def test_an_unknown_worker_is_refused_with_not_found(router_server: ServerThread) -> None:
    async def scenario() -> None:
        with pytest.raises(NotFound, match="nobody") as raised:
            async with AgentSession(router_server.address, "nobody"):
                pass
        assert raised.value.code is grpc.StatusCode.NOT_FOUND

    run(scenario)


# -- TaskClient ----------------------------------------------------------------------------------


class LoseFirstCreateReply(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Lets the first CreateTask reach the router, then throws its reply away and fails the
    call with UNAVAILABLE, as a connection lost at the worst moment would."""

    def __init__(self) -> None:
        self.request_ids: list[str] = []

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        call = await continuation(client_call_details, request)
        if not isinstance(request, tpb.CreateTaskRequest):
            return call
        self.request_ids.append(request.client_request_id)
        if len(self.request_ids) > 1:
            return call
        await call  # the router has created the task
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.UNAVAILABLE,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details="connection reset (simulated)",
        )


def test_task_client_retries_unavailable_with_the_same_request_id(
    router_server: ServerThread,
) -> None:
    address = router_server.address

    async def scenario() -> None:
        async with admin(address) as channel:
            await make_queue(address, "support")
            losing = LoseFirstCreateReply()
            async with TaskClient(address, interceptors=[losing]) as tasks:
                created = await tasks.create_task(queue_id="support", channel="email")
            assert created.deduplicated
            assert len(losing.request_ids) == 2 and len(set(losing.request_ids)) == 1
            assert created.task.client_request_id == losing.request_ids[0]
            listed = await tgrpc.TaskServiceStub(channel).ListTasks(
                tpb.ListTasksRequest(queue_id="support")
            )
            assert [t.task_id for t in listed.tasks] == [created.task.task_id]

    run(scenario)


def test_task_client_same_request_id_returns_the_same_task(router_server: ServerThread) -> None:
    address = router_server.address

    async def scenario() -> None:
        await make_queue(address, "support")
        async with TaskClient(address) as tasks:
            first = await tasks.create_task(
                queue_id="support", channel="sms", client_request_id="sms-42"
            )
            again = await tasks.create_task(
                queue_id="support", channel="sms", client_request_id="sms-42"
            )
            assert not first.deduplicated and again.deduplicated
            assert again.task.task_id == first.task.task_id
            with pytest.raises(workers.AlreadyExists, match="sms-42"):
                await tasks.create_task(
                    queue_id="support", channel="voice", client_request_id="sms-42"
                )
            canceled = await tasks.cancel_task(first.task.task_id, reason="customer hung up")
            assert canceled.status == pb.TASK_STATUS_CANCELED
            with pytest.raises(FailedPrecondition):
                await tasks.complete_task(first.task.task_id)

    run(scenario)


# -- AdminClient ---------------------------------------------------------------------------------


def test_admin_client_configures_queues_policies_channels_and_activities(
    router_server: ServerThread,
) -> None:
    async def scenario() -> None:
        async with AdminClient(router_server.address) as admin_client:
            first = await admin_client.upsert_queue(pb.Queue(queue_id="billing", wrapup_s=30))
            again = await admin_client.upsert_queue(pb.Queue(queue_id="billing", wrapup_s=20))
            assert first.created and not again.created
            assert (await admin_client.get_queue("billing")).wrapup_s == 20
            await admin_client.upsert_queue(pb.Queue(queue_id="sales"))
            listed = await admin_client.list_queues(page_size=1)  # read page by page
            assert [q.queue_id for q in listed] == ["billing", "sales"]

            route = pb.Route(queue_id="sales")
            policy = pb.RoutingPolicy(
                policy_id="ivr",
                filters=[pb.PolicyFilter(name="buyers", expression="intent == 'buy'", route=route)],
                default_route=pb.Route(queue_id="billing"),
            )
            upserted = await admin_client.upsert_routing_policy(policy)
            assert upserted.created and upserted.policy.filters[0].route.queue_id == "sales"
            assert (await admin_client.get_routing_policy("ivr")).policy_id == "ivr"
            assert [p.policy_id for p in await admin_client.list_routing_policies()] == ["ivr"]
            await admin_client.delete_routing_policy("ivr")
            assert await admin_client.list_routing_policies() == []

            await admin_client.delete_queue("sales")
            with pytest.raises(NotFound):
                await admin_client.get_queue("sales")
            with pytest.raises(NotFound):
                await admin_client.delete_queue("sales")  # deletes are not retried

            channel = await admin_client.upsert_channel("fax", "Fax")
            assert channel.display_name == "Fax"
            assert "fax" in [c.channel_id for c in await admin_client.list_channels()]
            await admin_client.upsert_activity("training", available=False)
            activities = {a.activity_id: a.available for a in await admin_client.list_activities()}
            assert activities["training"] is False and activities["available"] is True

            digest = await admin_client.get_state_digest()
            assert digest.digest and digest.tasks == 0 and digest.workers == 0

    run(scenario)


def test_admin_client_refusals_are_typed(router_server: ServerThread) -> None:
    async def scenario() -> None:
        async with AdminClient(router_server.address) as admin_client:
            with pytest.raises(workers.InvalidArgument, match="queue_id"):
                await admin_client.upsert_queue(pb.Queue(queue_id=""))
            with pytest.raises(NotFound):
                await admin_client.get_routing_policy("nope")

    run(scenario)


class FailFirstUpserts(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Fails the first `failures` calls with UNAVAILABLE before they reach the router."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    async def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.UNAVAILABLE,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details="no leader yet (simulated)",
            )
        return await continuation(client_call_details, request)


def test_admin_client_retries_unavailable(router_server: ServerThread) -> None:
    async def scenario() -> None:
        failing = FailFirstUpserts(failures=2)
        client = AdminClient(
            router_server.address, interceptors=[failing], retry_backoff_s=FAST_BACKOFF_S
        )
        async with client as admin_client:
            upserted = await admin_client.upsert_queue(pb.Queue(queue_id="support"))
        assert upserted.created and failing.calls == 3
        once = FailFirstUpserts(failures=1)
        async with AdminClient(router_server.address, interceptors=[once]) as admin_client:
            with pytest.raises(workers.Unavailable, match="simulated"):
                await admin_client.delete_queue("support")
        assert once.calls == 1

    run(scenario)
