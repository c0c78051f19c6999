"""Windowed statistics against a scripted workload on the test clock: every figure computed by
hand here (waits, handle times, the service level split, per channel, per worker)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import grpc
import pytest

from router._proto.switchboard.v1 import event_service_pb2 as epb
from router._proto.switchboard.v1 import stats_service_pb2 as spb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router.server import ServerConfig
from tests.conftest import ServerThread
from tests.e2e.events import Subscriber
from tests.e2e.raw import Stubs

T0_MS = 28_333_334 * 60_000  # a minute's start: windows start at minutes


@pytest.fixture
def router_server(module_redis: str, workspace: str) -> Iterator[ServerThread]:
    config = ServerConfig(
        port=0, metrics_port=None, test_clock=True, test_clock_start_ms=T0_MS,
        redis_url=module_redis, workspace=workspace,
    )  # fmt: skip
    server = ServerThread(config).start()
    yield server
    server.stop()


def _stats(stubs: Stubs, window_s: int, include_workers: bool = True) -> spb.Stats:
    query = spb.StatsQuery(
        window_s=window_s, thresholds_s=[20, 60], include_workers=include_workers
    )
    return stubs.stats.GetStats(spb.GetStatsRequest(query=query), timeout=5).stats


def _levels(window: spb.WindowStats) -> list[tuple[int, int, int, int, float]]:
    return [
        (s.answered_within, s.answered_after, s.abandoned_within, s.abandoned_after,
         round(s.service_level, 4))
        for s in window.service_levels
    ]  # fmt: skip


def test_windowed_statistics_of_a_scripted_workload(channel: grpc.Channel, stubs: Stubs) -> None:
    feed = Subscriber(channel, from_oldest=True, types=[epb.EVENT_TYPE_TASK_OFFERED])

    def accept(task_id: str) -> None:
        offer = next(e for e in feed.events(1) if e.task_id == task_id)
        request = wpb.AcceptOfferRequest(worker_id="ana", reservation_id=offer.reservation_id)
        stubs.workers.AcceptOffer(request, timeout=5)

    def complete(task_id: str) -> None:
        stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(task_id=task_id), timeout=5)

    try:
        stubs.queue("support", reservation_timeout_s=120)
        stubs.queue("sales", reservation_timeout_s=120)
        stubs.worker("ana", capacity_by_channel={"voice": 1})  # t0, available
        a = stubs.create().task.task_id  # t0: offered to ana
        stubs.advance(10)
        accept(a)  # t0+10: waited 10 s
        b = stubs.create().task.task_id  # t0+10: ana is busy, B waits
        stubs.advance(25)
        c = stubs.create(queue_id="sales", channel="chat").task.task_id  # t0+35: nobody for chat
        live = _stats(stubs, 3600, include_workers=False)
        support = live.queues[[q.realtime.queue_id for q in live.queues].index("support")]
        assert dict(support.waiting_by_priority) == {0: 1}
        assert support.realtime.longest_wait_s == 25
        assert support.eligible_available == 1
        stubs.advance(5)
        complete(a)  # t0+40: handled 30 s; B offered to ana
        stubs.advance(20)
        accept(b)  # t0+60: waited 50 s
        stubs.tasks.CancelTask(tpb.CancelTaskRequest(task_id=c, reason="hung up"), timeout=5)
        stubs.advance(30)
        complete(b)  # t0+90: handled 30 s
        stubs.workers.SetActivity(wpb.SetActivityRequest(worker_id="ana", activity="break"))
        stubs.advance(10)  # t0+100
    finally:
        feed.close()

    stats = _stats(stubs, 3600)
    assert stats.window_start_ms == T0_MS - 3_540_000  # the minute holding now - 1 h
    queues = {q.realtime.queue_id: q for q in stats.queues}
    support, sales = queues["support"].window, queues["sales"].window
    assert (support.created, support.answered, support.completed, support.abandoned) == (2, 2, 2, 0)
    assert (support.average_wait_s, support.longest_wait_s, support.average_handle_s) == (
        30,
        50,
        30,
    )
    # 20 s: A (10 s) within, B (50 s) after; 60 s: both within.
    assert _levels(support) == [(1, 1, 0, 0, 0.5), (2, 0, 0, 0, 1.0)]
    assert (sales.created, sales.answered, sales.abandoned) == (1, 0, 1)
    assert dict(sales.abandoned_by_origin) == {"caller": 1}
    # C gave up after 25 s: after 20 s (against the level), within 60 s (not counted).
    assert _levels(sales) == [(0, 0, 0, 1, 0.0), (0, 0, 1, 0, 0.0)]
    channels = {c.channel: c.window for c in stats.channels}
    assert channels["voice"] == support and channels["chat"] == sales
    workspace = stats.workspace
    assert (workspace.created, workspace.answered, workspace.abandoned) == (3, 2, 1)
    assert _levels(workspace) == [(1, 1, 0, 1, round(1 / 3, 4)), (2, 0, 1, 0, 1.0)]
    (ana,) = stats.workers
    assert dict(ana.activity_s) == {"available": 90, "break": 10}
    assert (ana.completed, ana.average_handle_s, ana.activity) == (2, 30, "break")
    assert round(ana.occupancy, 4) == round(60 / 90, 4)  # 60 s handled of 90 s available

    # 30 s back from t0+100 is t0+70: the window starts at its minute, t0+60.
    recent = _stats(stubs, 30)
    assert recent.window_start_ms == T0_MS + 60_000
    support = {q.realtime.queue_id: q for q in recent.queues}["support"].window
    assert (support.created, support.answered, support.completed) == (0, 1, 1)
    assert (support.average_wait_s, support.average_handle_s) == (50, 30)
    (ana,) = recent.workers
    assert dict(ana.activity_s) == {"available": 30, "break": 10}
    assert ana.occupancy == 1.0  # B's 30 s of the 30 s available


def test_watch_stats_pushes_the_same_report_to_every_wallboard(stubs: Stubs) -> None:
    stubs.queue("support")
    stubs.create()
    query = spb.StatsQuery(window_s=600)
    request = spb.WatchStatsRequest(query=query, interval_ms=100)
    walls = [stubs.stats.WatchStats(request, timeout=10) for _ in range(3)]
    firsts = [next(wall).stats for wall in walls]
    assert all(f.queues[0].realtime.waiting == 1 for f in firsts)
    stubs.create()
    for wall in walls:
        while next(wall).stats.queues[0].realtime.waiting != 2:
            pass
        wall.cancel()
    with pytest.raises(grpc.RpcError) as refused:
        next(stubs.stats.WatchStats(spb.WatchStatsRequest(query=query, interval_ms=5)))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_switchboard_top_shows_the_queues(router_server: ServerThread, stubs: Stubs) -> None:
    stubs.queue("support")
    stubs.create()
    result = subprocess.run(
        [sys.executable, "-m", "router.cli", "top", "--address", router_server.address, "--once"],
        capture_output=True, text=True, timeout=30, env={**os.environ, "COLUMNS": "160"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "support" in result.stdout and "Agents by activity" in result.stdout
