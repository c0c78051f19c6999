"""The customer timeline across a failover, with real router processes: tasks of a few
customers are created and their outcomes recorded while the leader is SIGKILLed; the new
leader's projector resumes from the cursor the old one stored with its entries. Every
acknowledged task and outcome is then in its customer's timeline exactly once (no gap, no
duplicate), and in no other customer's."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter

import grpc
import pytest

from benchmarks.failover import Routers
from router._proto.switchboard.v1 import timeline_service_pb2 as tlpb
from router._proto.switchboard.v1 import timeline_service_pb2_grpc as tlgrpc
from router.store.embedded import EmbeddedRedis
from tests.e2e.raw import Stubs

# Keyed tasks come with the privacy helper's TaskData (CreateTask hashes the customer id).
pytest.importorskip("router.privacy.task_data", reason="needs the privacy helper's keyed tasks")

LEASE_TTL_S = 1.0
CUSTOMERS = ("cust-a", "cust-b", "cust-c")
RETRIED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


class Acknowledged:
    def __init__(self) -> None:
        self.tasks: dict[str, str] = {}
        """task id -> customer."""
        self.outcomes: dict[str, str] = {}
        """entry id -> customer."""


def _load(stop: threading.Event, routers: Routers, acked: Acknowledged) -> None:
    """Creates tasks (retried with their request id until acknowledged) and records an outcome
    of each (once: an outcome has no request id, so one whose answer was lost is not retried)."""
    for n in itertools.count():
        customer = CUSTOMERS[n % len(CUSTOMERS)]
        task_id = ""
        while not stop.is_set() and not task_id:
            try:
                with grpc.insecure_channel(routers.leader()) as channel:
                    created = Stubs.of(channel).create(
                        client_request_id=f"r{n}", customer_id=customer
                    )
                task_id = created.task.task_id
            except (grpc.RpcError, RuntimeError):
                time.sleep(0.05)
        if not task_id:
            return
        acked.tasks[task_id] = customer
        try:
            with grpc.insecure_channel(routers.leader()) as channel:
                request = tlpb.RecordOutcomeRequest(
                    task_id=task_id, disposition="noted", tags=[customer]
                )
                entry = tlgrpc.TimelineServiceStub(channel).RecordOutcome(request, timeout=5)
            acked.outcomes[entry.entry.entry_id] = customer
        except grpc.RpcError as error:
            assert error.code() in RETRIED, error
        except RuntimeError:  # no leader known yet
            pass


def _timeline(address: str, customer: str) -> list[tlpb.TimelineEntry]:
    entries: list[tlpb.TimelineEntry] = []
    token = ""
    with grpc.insecure_channel(address) as channel:
        stub = tlgrpc.TimelineServiceStub(channel)
        while True:
            request = tlpb.GetTimelineRequest(customer_id=customer, page_size=200,
                                              page_token=token)  # fmt: skip
            reply = stub.GetTimeline(request, timeout=10)
            entries += reply.entries
            token = reply.next_page_token
            if not token:
                return entries


def test_the_new_leader_s_projector_resumes_with_no_gap_and_no_duplicate(
    embedded_redis: EmbeddedRedis,
) -> None:
    routers = Routers(embedded_redis.url, LEASE_TTL_S)
    stop = threading.Event()
    acked = Acknowledged()
    try:
        first = routers.start()
        routers.start()
        with grpc.insecure_channel(routers.leader()) as channel:
            Stubs.of(channel).queue("support")
        load = threading.Thread(target=_load, args=(stop, routers, acked))
        load.start()
        time.sleep(1.5)
        assert routers.leader() == first
        before_kill = len(acked.tasks)
        routers.kill(first)  # SIGKILL, mid-load
        time.sleep(3)
        stop.set()
        load.join(timeout=30)
        leader = routers.leader()

        deadline_s = time.monotonic() + 15
        while True:  # until the new leader's projector has caught up
            timelines = {c: _timeline(leader, c) for c in CUSTOMERS}
            ids = {c: {e.entry_id for e in entries} for c, entries in timelines.items()}
            missing = [t for t, c in acked.tasks.items() if f"task:{t}" not in ids[c]]
            missing += [e for e, c in acked.outcomes.items() if e not in ids[c]]
            if not missing or time.monotonic() > deadline_s:
                break
            time.sleep(0.2)
    finally:
        stop.set()
        routers.stop_all()

    assert before_kill > 0 and len(acked.tasks) > before_kill, "tasks on both leaders"
    assert missing == [], "acknowledged but not in the timeline"
    for customer, entries in timelines.items():
        counts = Counter(e.entry_id for e in entries)
        assert [i for i, n in counts.items() if n > 1] == [], "an entry twice"
        for entry in entries:
            if entry.kind == tlpb.TIMELINE_ENTRY_KIND_TASK:
                assert acked.tasks.get(entry.task.task_id, customer) == customer
                assert entry.task.status != 0
            else:
                assert list(entry.tags) == [customer]  # an outcome of its own tasks only
        at_ms = [e.at_ms for e in entries]
        assert at_ms == sorted(at_ms)
    # Every outcome recorded (acknowledged, or journaled before its answer was lost) once.
    outcomes = [e for entries in timelines.values() for e in entries
                if e.kind == tlpb.TIMELINE_ENTRY_KIND_OUTCOME]  # fmt: skip
    assert len(outcomes) >= len(acked.outcomes)
    assert all(o.outcome.disposition == "noted" for o in outcomes)
