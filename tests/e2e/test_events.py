"""The event feed end to end over gRPC: a scripted lifecycle seen whole and in order, a resume
from a cursor that gets exactly the missed events, a cursor outside the window refused, and a
stalled subscriber cut off while CreateTask goes on. (Failover: tests/integration/
test_event_failover.py.)"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

from router._proto.switchboard.v1 import event_service_pb2 as epb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router.server import ServerConfig
from router.store.protocols import EventRetention
from tests.conftest import ServerThread
from tests.e2e.events import Subscriber, cursor_key, type_names
from tests.e2e.raw import Stubs


@pytest.fixture
def subscribers(channel: grpc.Channel) -> Iterator[list[Subscriber]]:
    opened: list[Subscriber] = []
    yield opened
    for subscriber in opened:
        subscriber.close()


def test_a_subscriber_sees_every_event_of_a_lifecycle_in_order(
    channel: grpc.Channel, stubs: Stubs, subscribers: list[Subscriber]
) -> None:
    feed = Subscriber(channel, from_oldest=True)
    subscribers.append(feed)
    stubs.queue("support", reservation_timeout_s=30, wrapup_s=5)
    stubs.worker("ana")
    stubs.worker("ben")
    task_id = stubs.create(priority=3).task.task_id
    created, offered = feed.events(5)[3:]
    holder, reservation = offered.worker_id, offered.reservation_id
    stubs.workers.RejectOffer(
        wpb.RejectOfferRequest(worker_id=holder, reservation_id=reservation, reason="busy"),
        timeout=5,
    )
    rejected, reoffered = feed.events(2)
    other = reoffered.worker_id
    accept = wpb.AcceptOfferRequest(worker_id=other, reservation_id=reoffered.reservation_id)
    stubs.workers.AcceptOffer(accept, timeout=5)
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(task_id=task_id), timeout=5)
    stubs.advance(5)  # the wrap-up ends
    stubs.workers.SetActivity(wpb.SetActivityRequest(worker_id=holder, activity="break"))
    doomed = stubs.create().task.task_id  # offered to `other`, free again
    stubs.tasks.CancelTask(tpb.CancelTaskRequest(task_id=doomed, reason="hung up"), timeout=5)

    rest = feed.events(8)
    everything = [created, offered, rejected, reoffered, *rest]
    assert type_names(everything) == [
        "TASK_CREATED", "TASK_OFFERED", "OFFER_REJECTED", "TASK_OFFERED", "TASK_ASSIGNED",
        "TASK_WRAPPING", "TASK_COMPLETED", "WORKER_ACTIVITY_CHANGED", "TASK_CREATED",
        "TASK_OFFERED", "OFFER_CANCELED", "TASK_CANCELED",
    ]  # fmt: skip
    assert created.task_id == task_id and created.queue_id == "support"
    assert (created.channel, created.priority) == ("voice", 3)
    assert (rejected.worker_id, rejected.reason) == (holder, "busy")
    assigned = rest[0]
    assert (assigned.worker_id, assigned.reservation_id) == (other, reoffered.reservation_id)
    activity = rest[3]
    assert (activity.worker_id, activity.activity, activity.previous_activity) == (
        holder, "break", "available",
    )  # fmt: skip
    canceled = rest[-1]
    assert (canceled.task_id, canceled.reason, canceled.origin) == (doomed, "hung up", "caller")
    keys = [cursor_key(e.cursor) for e in everything]
    assert keys == sorted(set(keys)), "cursors only grow"
    assert feed.drain(0.3) == []


def test_resuming_from_a_cursor_gives_exactly_the_missed_events(
    channel: grpc.Channel, stubs: Stubs, subscribers: list[Subscriber]
) -> None:
    stubs.queue("support")
    live = Subscriber(channel)  # from now
    subscribers.append(live)
    time.sleep(0.2)  # subscribed before the first event
    for _ in range(3):
        stubs.create()
    seen = live.events(6)  # created and queued, three times (nobody is available)
    live.close()
    stubs.worker("ana")  # takes the first task
    for _ in range(4):
        stubs.create()
    resumed = Subscriber(channel, after_cursor=seen[-1].cursor)
    whole = Subscriber(channel, from_oldest=True)
    subscribers += [resumed, whole]
    everything = whole.drain()
    missed = resumed.drain()
    cut = [e.cursor for e in everything].index(seen[-1].cursor) + 1
    assert [e.cursor for e in everything[cut - 6 : cut]] == [e.cursor for e in seen]
    assert missed == everything[cut:]
    assert type_names(missed)[:2] == ["WORKER_UPSERTED", "TASK_OFFERED"]
    assert len(missed) == 2 + 4 * 2


def test_a_filtered_subscriber_gets_only_what_it_asks_for_and_checkpoints(
    channel: grpc.Channel, stubs: Stubs, subscribers: list[Subscriber]
) -> None:
    stubs.queue("support")
    stubs.queue("sales")
    sales = Subscriber(
        channel, from_oldest=True, queue_ids=["sales"], types=[epb.EVENT_TYPE_TASK_CREATED]
    )
    subscribers.append(sales)
    stubs.create(queue_id="support")
    stubs.create(queue_id="sales", channel="chat")
    (event,) = sales.events(1)
    assert (event.queue_id, event.channel) == ("sales", "chat")
    stubs.create(queue_id="support")
    checkpoint = sales.next(timeout_s=3)  # the support task went by: a checkpoint
    assert checkpoint.HasField("checkpoint")
    assert cursor_key(checkpoint.checkpoint.cursor) > cursor_key(event.cursor)


def test_cursors_outside_the_window_are_out_of_range(module_redis: str, workspace: str) -> None:
    config = ServerConfig(
        port=0, metrics_port=None, test_clock=True, redis_url=module_redis, workspace=workspace,
        event_retention=EventRetention(entries_max=3),
    )  # fmt: skip
    server = ServerThread(config).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support")
            first = Subscriber(channel, from_oldest=True).events(1)[0]
            for _ in range(5):
                stubs.create()  # one batch each: the first entries are trimmed
            held = Subscriber(channel, from_oldest=True).drain()
            assert len(held) == 3 * 2  # three batches of created + queued
            old = Subscriber(channel, after_cursor=first.cursor)
            with pytest.raises(grpc.RpcError) as refused:
                old.next()
            assert refused.value.code() == grpc.StatusCode.OUT_OF_RANGE
            oldest = held[0].cursor.split("/")[0] + "/0"
            assert f"the oldest cursor held is {oldest}" in (refused.value.details() or "")
            ms, _, rest = held[-1].cursor.partition("-")
            ahead = Subscriber(channel, after_cursor=f"{int(ms) + 1}-{rest}")
            with pytest.raises(grpc.RpcError) as refused:
                ahead.next()
            assert refused.value.code() == grpc.StatusCode.OUT_OF_RANGE
            bad = Subscriber(channel, after_cursor="not-a-cursor")
            with pytest.raises(grpc.RpcError) as refused:
                bad.next()
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            # The last one held is a good place to resume.
            assert Subscriber(channel, after_cursor=held[0].cursor).drain() == held[1:]
    finally:
        server.stop()


def test_a_stalled_subscriber_is_cut_off_while_creates_go_on(
    module_redis: str, workspace: str
) -> None:
    lag_max = 200
    config = ServerConfig(
        port=0, metrics_port=None, redis_url=module_redis, workspace=workspace,
        event_subscriber_lag_max=lag_max,
    )  # fmt: skip
    server = ServerThread(config).start()
    # A wallboard of its own, without BDP probing: its flow-control window stays at 64 KiB.
    options = [("grpc.http2.bdp_probe", 0)]
    try:
        with (
            grpc.insecure_channel(server.address) as channel,
            grpc.insecure_channel(server.address, options=options) as wallboard,
        ):
            stubs = Stubs.of(channel)
            stubs.queue("support")

            def create(_: int) -> float:
                started_s = time.perf_counter()
                stubs.create()
                return time.perf_counter() - started_s

            with ThreadPoolExecutor(8) as pool:
                alone = sorted(pool.map(create, range(500)))
                stalled = Subscriber(wallboard, read=False, from_oldest=True)
                next(stalled.call)  # subscribed; then never read again
                with_stalled = sorted(pool.map(create, range(2500)))
            with pytest.raises(grpc.RpcError) as ended:
                for _ in stalled.call:  # what the transport buffered, then the end
                    pass
            assert ended.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "resume after cursor" in (ended.value.details() or "")
    finally:
        server.stop()
    # Measured, not asserted: timing bounds belong in benchmarks (benchmarks/README.md).
    print(
        f"CreateTask p50/p99 ms alone {1000 * statistics.median(alone):.2f}/"
        f"{1000 * alone[int(len(alone) * 0.99)]:.2f}, with a stalled subscriber "
        f"{1000 * statistics.median(with_stalled):.2f}/"
        f"{1000 * with_stalled[int(len(with_stalled) * 0.99)]:.2f}"
    )
    assert len(with_stalled) == 2500  # every create answered
