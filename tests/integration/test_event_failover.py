"""The event feed across a failover, with real processes: a subscriber reads the leader's feed
while tasks are created; the leader is SIGKILLed mid-stream; the subscriber resumes from its
last cursor at the new leader. What it received must be exactly the event stream the store
holds (no gap, no duplicate, in order), and that stream exactly what replaying the journal
emits (the core is deterministic)."""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
import time
from typing import Any

import grpc
import redis

from benchmarks.failover import Routers
from router._proto.switchboard.v1 import event_service_pb2 as epb
from router.core.engine import Engine
from router.core.events import Event
from router.core.feed import FeedEvent, decode_feed, to_feed
from router.core.replay import replay
from router.store.embedded import EmbeddedRedis
from router.store.formats import decode_entry
from tests.e2e.events import Subscriber
from tests.e2e.raw import Stubs

LEASE_TTL_S = 1.0


def _create_until(stop: threading.Event, routers: Routers) -> None:
    """Creates tasks on whichever router leads, retrying with the same request id."""
    for n in itertools.count():
        if stop.is_set():
            return
        while not stop.is_set():
            try:
                with grpc.insecure_channel(routers.leader()) as channel:
                    Stubs.of(channel).create(client_request_id=f"r{n}")
                break
            except (grpc.RpcError, RuntimeError):
                time.sleep(0.05)


def _follow(stop: threading.Event, routers: Routers, received: list[epb.Event]) -> None:
    """Reads the feed, resuming after the last cursor at the leader whenever the stream ends."""
    while not stop.is_set():
        try:
            address = routers.leader()
        except RuntimeError:
            continue
        cursor: dict[str, Any] = (
            {"after_cursor": received[-1].cursor} if received else {"from_oldest": True}
        )
        with grpc.insecure_channel(address) as channel:
            subscriber = Subscriber(channel, **cursor)
            try:
                while not stop.is_set():
                    with contextlib.suppress(queue.Empty):
                        response = subscriber.next(0.2)
                        received.extend(response.events)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
            finally:
                subscriber.close()


def test_a_subscriber_resuming_at_the_new_leader_gets_no_gap_and_no_duplicate(
    embedded_redis: EmbeddedRedis,
) -> None:
    routers = Routers(embedded_redis.url, LEASE_TTL_S)
    stop_load, stop_follow = threading.Event(), threading.Event()
    received: list[epb.Event] = []
    try:
        first = routers.start()
        routers.start()
        with grpc.insecure_channel(routers.leader()) as channel:
            Stubs.of(channel).queue("support")
        load = threading.Thread(target=_create_until, args=(stop_load, routers))
        follow = threading.Thread(target=_follow, args=(stop_follow, routers, received))
        load.start()
        follow.start()
        time.sleep(2)
        killed = routers.leader()
        assert killed == first
        seen_before_kill = len(received)
        routers.kill(killed)  # SIGKILL, mid-stream
        time.sleep(4)
        stop_load.set()
        load.join(timeout=30)
        time.sleep(1.5)  # the subscriber reads the last events
        stop_follow.set()
        follow.join(timeout=30)
    finally:
        stop_load.set()
        stop_follow.set()
        routers.stop_all()

    client = redis.Redis.from_url(embedded_redis.url)
    events: Any = client.xrange("sb:{default}:events")
    stored = [
        (f"{entry_id.decode()}/{index}", event)
        for entry_id, fields in events
        for index, event in enumerate(decode_feed(fields[b"e"]))
    ]
    assert seen_before_kill > 0 and len(received) > seen_before_kill, "it read on both leaders"
    assert [e.cursor for e in received] == [cursor for cursor, _ in stored]
    assert [(e.type, e.task_id, e.worker_id) for e in received] == [
        (event.type, event.task_id, event.worker_id) for _, event in stored
    ]
    assert stored == _replayed(client)


def _replayed(client: redis.Redis) -> list[tuple[str, FeedEvent]]:
    """The feed that replaying the whole journal emits (no snapshot was taken: it is whole)."""
    engine = Engine()
    feed: list[tuple[str, FeedEvent]] = []
    journal: Any = client.xrange("sb:{default}:journal")
    for raw_id, fields in journal:
        entry_id = raw_id.decode()
        batch = decode_entry(fields[b"b"], entry_id)

        def emitted(
            events: list[Event], entry_id: str = entry_id, now_ms: int = batch.now_ms
        ) -> None:
            feed.extend((f"{entry_id}/{i}", e) for i, e in enumerate(to_feed(events, now_ms)))

        replay(engine, [batch], on_events=emitted)
    return feed
