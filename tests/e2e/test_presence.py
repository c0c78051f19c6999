"""Presence end to end, as agent desktops meet it: a desktop that dies, reconnects, is taken over
by a second one, falls silent, says goodbye, lets offers expire, or drains; over gRPC on the
test clock (moved through ClockService)."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from benchmarks.credentials import write_local_credentials
from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router.api.authn import AuthConfig, Role
from router.mint import mint_token
from router.server import ServerConfig
from router.tls import TlsConfig
from tests.conftest import ServerThread
from tests.e2e.raw import RawAgent, StreamEnded, Stubs, connect


@pytest.fixture
def stubs(stubs: Stubs) -> Stubs:
    stubs.queue("support", reservation_timeout_s=30)
    return stubs


def worker(stubs: Stubs, worker_id: str) -> pb.Worker:
    return stubs.workers.GetWorker(wpb.GetWorkerRequest(worker_id=worker_id), timeout=5).worker


def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Waits (in real time) for something the router does on its own after a stream ends."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def drop(stubs: Stubs, agent: RawAgent, worker_id: str) -> None:
    """The desktop dies: its stream is cut without a goodbye; returns once the router knows."""
    agent.close()
    until(lambda: worker(stubs, worker_id).presence_lost_at_ms != 0)


def ended_with(agent: RawAgent) -> grpc.RpcError | StreamEnded:
    while True:
        try:
            agent.next(timeout_s=5)
        except (grpc.RpcError, StreamEnded) as ended:
            return ended
        except queue.Empty:
            raise AssertionError("the stream did not end") from None


def test_a_dead_agents_offer_reaches_another_agent_within_the_grace(
    stubs: Stubs, agents: list[RawAgent]
) -> None:
    stubs.worker("ana")
    ana = connect(stubs, agents, "ana")
    task_id = stubs.create().task.task_id
    assert ana.next_of("offer").offer.task_id == task_id
    stubs.worker("ben")
    ben = connect(stubs, agents, "ben")
    drop(stubs, ana, "ana")
    assert worker(stubs, "ana").connected is False
    stubs.advance(9.9)
    assert stubs.get(task_id).worker_id == "ana"  # the grace keeps it for a reconnect
    stubs.advance(0.1)  # the 10 s grace is over: within grace + 1 s
    assert ben.next_of("offer", timeout_s=5).offer.task_id == task_id
    lost = worker(stubs, "ana")
    assert lost.activity == "offline" and not lost.available


def test_a_reconnect_within_the_grace_keeps_the_offer(stubs: Stubs, agents: list[RawAgent]) -> None:
    stubs.worker("ana")
    first = connect(stubs, agents, "ana")
    stubs.create()
    offer = first.next_of("offer").offer
    drop(stubs, first, "ana")
    stubs.advance(5)
    again = connect(stubs, agents, "ana")
    assert again.next_of("offer").offer.reservation_id == offer.reservation_id
    stubs.advance(10)
    ana = worker(stubs, "ana")
    assert ana.connected and ana.activity == "available" and ana.presence_lost_at_ms == 0
    assert stubs.get(offer.task_id).status == pb.TASK_STATUS_RESERVED


def test_a_second_hello_takes_the_worker_over(stubs: Stubs, agents: list[RawAgent]) -> None:
    stubs.worker("ana")
    old = connect(stubs, agents, "ana")
    new = connect(stubs, agents, "ana")
    ended = ended_with(old)
    assert isinstance(ended, grpc.RpcError)
    assert ended.code() == grpc.StatusCode.ABORTED and "replaced" in (ended.details() or "")
    task_id = stubs.create().task.task_id
    assert new.next_of("offer").offer.task_id == task_id
    assert worker(stubs, "ana").connected  # the old stream's end lost nothing


def test_removing_a_worker_ends_its_stream(stubs: Stubs, agents: list[RawAgent]) -> None:
    stubs.worker("ana")
    old = connect(stubs, agents, "ana")
    stubs.workers.RemoveWorker(wpb.RemoveWorkerRequest(worker_id="ana"), timeout=5)
    ended = ended_with(old)
    assert isinstance(ended, grpc.RpcError) and ended.code() == grpc.StatusCode.NOT_FOUND
    stubs.worker("ana")  # the same id again: only a new stream receives its offers
    new = connect(stubs, agents, "ana")
    task_id = stubs.create().task.task_id
    assert new.next_of("offer").offer.task_id == task_id


def test_a_silent_stream_is_ended_and_the_presence_lost(
    stubs: Stubs, agents: list[RawAgent]
) -> None:
    stubs.worker("ana")
    ana = connect(stubs, agents, "ana")
    stubs.advance(20)
    request_id = ana.send(heartbeat=wpb.ConnectRequest.Heartbeat())
    assert ana.next_of("ack").request_id == request_id
    stubs.advance(30)  # 30 s since the heartbeat: not more than presence_timeout_s
    assert ana.nothing_within(0.3)
    stubs.advance(0.001)
    ended = ended_with(ana)
    assert isinstance(ended, grpc.RpcError)
    assert ended.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "presence_timeout_s" in (ended.details() or "")
    until(lambda: worker(stubs, "ana").presence_lost_at_ms != 0)


def test_a_goodbye_ends_the_stream_cleanly_without_a_grace(
    stubs: Stubs, agents: list[RawAgent]
) -> None:
    stubs.worker("ana")
    stubs.worker("ben")
    ana = connect(stubs, agents, "ana")
    ana.send(goodbye=wpb.ConnectRequest.Goodbye())
    assert ana.next_of("ack")
    assert isinstance(ended_with(ana), StreamEnded)
    gone = worker(stubs, "ana")
    assert gone.activity == "offline" and not gone.connected and gone.presence_lost_at_ms == 0


def test_missed_offers_in_a_row_move_the_agent_away(stubs: Stubs, agents: list[RawAgent]) -> None:
    settings = pb.PresenceSettings(missed_offers_max=2)
    request = apb.UpsertPresenceSettingsRequest(settings=settings)
    applied = stubs.admin.UpsertPresenceSettings(request, timeout=5).settings
    assert (applied.presence_timeout_s, applied.presence_grace_s) == (30, 10)
    assert applied.away_activity == "away"
    stubs.worker("ana")
    ana = connect(stubs, agents, "ana")
    for _ in range(2):
        stubs.create()
        ana.next_of("offer")
        stubs.advance(20)
        ana.send(heartbeat=wpb.ConnectRequest.Heartbeat())
        ana.next_of("ack")
        stubs.advance(10)
    change = ana.next_of("presence").presence
    assert change.change == "away" and change.activity == "away"
    assert "2 offers in a row" in change.reason
    assert worker(stubs, "ana").activity == "away"


def test_a_drained_agent_finishes_its_work_then_takes_waiting_work_when_undrained(
    stubs: Stubs, agents: list[RawAgent]
) -> None:
    stubs.worker("ana", capacity_by_channel={"chat": 2})
    ana = connect(stubs, agents, "ana")
    held = stubs.create(channel="chat").task.task_id
    ana.accept(ana.next_of("offer").offer.reservation_id)
    ana.next_of("assigned")
    drained = stubs.workers.SetDraining(
        wpb.SetDrainingRequest(worker_id="ana", draining=True), timeout=5
    ).worker
    assert drained.draining and drained.available
    assert ana.next_of("presence").presence.change == "draining"
    waiting = stubs.create(channel="chat").task.task_id
    assert ana.nothing_within(0.3) and stubs.get(waiting).status == pb.TASK_STATUS_PENDING
    assert stubs.get(held).status == pb.TASK_STATUS_ASSIGNED
    stubs.workers.SetDraining(wpb.SetDrainingRequest(worker_id="ana", draining=False), timeout=5)
    assert ana.next_of("offer").offer.task_id == waiting


def test_digital_work_is_requeued_to_the_same_agent_and_voice_stays(
    stubs: Stubs, agents: list[RawAgent]
) -> None:
    channel = pb.Channel(channel_id="chat", requeue_after_disconnect_s=60)
    upserted = stubs.admin.UpsertChannel(apb.UpsertChannelRequest(channel=channel), timeout=5)
    assert upserted.channel.requeue_after_disconnect_s == 60
    stubs.worker("ana")
    ana = connect(stubs, agents, "ana")
    call = stubs.create(channel="voice").task.task_id
    ana.accept(ana.next_of("offer").offer.reservation_id)
    ana.next_of("assigned")
    chat = stubs.create(channel="chat").task.task_id
    ana.accept(ana.next_of("offer").offer.reservation_id)
    ana.next_of("assigned")
    created_ms = stubs.get(chat).created_at_ms
    drop(stubs, ana, "ana")
    stubs.advance(59.9)
    assert stubs.get(chat).status == pb.TASK_STATUS_ASSIGNED
    stubs.advance(0.1)
    requeued = stubs.get(chat)
    assert requeued.status == pb.TASK_STATUS_PENDING and requeued.created_at_ms == created_ms
    assert stubs.get(call).status == pb.TASK_STATUS_ASSIGNED  # the call may be live
    back = connect(stubs, agents, "ana", activity="available")
    assert back.next_of("offer").offer.task_id == chat  # the same agent, back


def test_the_hello_must_arrive_within_the_deadline(module_redis: str, workspace: str) -> None:
    config = ServerConfig(
        port=0, metrics_port=None, test_clock=True, redis_url=module_redis,
        workspace=workspace, hello_timeout_s=0.3,
    )  # fmt: skip
    server = ServerThread(config).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            _assert_a_silent_stream_is_ended(Stubs.of(channel))
    finally:
        server.stop()


def test_the_hello_deadline_holds_with_authentication(tmp_path: Path) -> None:
    """With tokens on, the access guard reads the hello before the servicer does: a desktop
    that authenticates and then says nothing is ended all the same."""
    creds = write_local_credentials(tmp_path)
    issuer, audience = "switchboard-tests", "switchboard"
    config = ServerConfig(
        port=0, metrics_port=None, durable=False, hello_timeout_s=0.3,
        tls=TlsConfig(creds.server_cert, creds.server_key, None),
        auth=AuthConfig(hs256_secret_file=creds.hs256_secret, issuer=issuer, audience=audience),
    )  # fmt: skip
    agent_token = mint_token(
        role=Role.AGENT, worker_id="ana", queues=(), issuer=issuer, audience=audience,
        key=creds.hs256_secret.read_bytes().strip(), algorithm="HS256",
    )  # fmt: skip
    tls = grpc.composite_channel_credentials(
        grpc.ssl_channel_credentials(creds.ca_cert.read_bytes()),
        grpc.access_token_call_credentials(agent_token),
    )
    server = ServerThread(config).start()
    try:
        with grpc.secure_channel(server.address, tls) as channel:
            _assert_a_silent_stream_is_ended(Stubs.of(channel))
    finally:
        server.stop()


def _assert_a_silent_stream_is_ended(stubs: Stubs) -> None:
    silent: queue.Queue[wpb.ConnectRequest | None] = queue.Queue()
    call = stubs.workers.Connect(iter(silent.get, None), timeout=5)
    with pytest.raises(grpc.RpcError) as ended:
        next(iter(call))
    silent.put(None)
    assert ended.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "hello" in (ended.value.details() or "")
