"""StatsService (real-time and windowed statistics, pushed to wallboards by WatchStats) and
ClockService (the test clock)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from router._proto.switchboard.v1 import clock_service_pb2 as cpb
from router._proto.switchboard.v1 import clock_service_pb2_grpc as cgrpc
from router._proto.switchboard.v1 import stats_service_pb2 as spb
from router._proto.switchboard.v1 import stats_service_pb2_grpc as sgrpc
from router.api.convert import queue_stats_to_pb
from router.api.stats_view import StatsQuery, build_stats, query_of
from router.api.status import maps_errors
from router.clock import TestClock
from router.core import commands as cmd
from router.core.errors import FailedPrecondition, InvalidArgument
from router.core.limits import ADVANCE_TIME_MS_MAX, CLOCK_MS_MAX
from router.service import RouterService

WATCH_INTERVAL_MS_DEFAULT = 1000
WATCH_INTERVAL_MS_MIN = 100
SHARED_REPORT_MS = 100
"""Callers asking within this long (and the same batch) share one report."""


class StatsServicer(sgrpc.StatsServiceServicer):
    def __init__(self, service: RouterService) -> None:
        self._service = service
        self._reports: dict[tuple[object, ...], asyncio.Future[spb.Stats]] = {}

    @maps_errors
    async def GetRealtimeStats(
        self, request: spb.GetRealtimeStatsRequest, context: grpc.aio.ServicerContext
    ) -> spb.GetRealtimeStatsResponse:
        engine = self._service.engine
        return spb.GetRealtimeStatsResponse(
            now_ms=max(engine.now_ms, self._service.clock.now_ms()),
            queues=[queue_stats_to_pb(engine.queue_stats(q)) for q in engine.queues],
            workers_by_activity=engine.workers_by_activity(),
        )

    @maps_errors
    async def GetStats(
        self, request: spb.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> spb.GetStatsResponse:
        return spb.GetStatsResponse(stats=await self._stats(query_of(request.query)))

    @maps_errors
    async def WatchStats(
        self, request: spb.WatchStatsRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[spb.WatchStatsResponse]:
        query = query_of(request.query)
        interval_ms = request.interval_ms or WATCH_INTERVAL_MS_DEFAULT
        if interval_ms < WATCH_INTERVAL_MS_MIN:
            raise InvalidArgument("interval_ms", f"at least {WATCH_INTERVAL_MS_MIN}")
        while True:
            yield spb.WatchStatsResponse(stats=await self._stats(query))
            await asyncio.sleep(interval_ms / 1000)

    async def _stats(self, query: StatsQuery) -> spb.Stats:
        """The report for `query`, shared by the callers that ask within one batch and time
        (every wallboard watching the same figures costs one report a tick)."""
        engine = self._service.engine
        now_ms = max(engine.now_ms, self._service.clock.now_ms())
        key = (query, now_ms // SHARED_REPORT_MS, self._service.journaled_batches, id(engine))
        cached = self._reports.get(key)
        if cached is None:
            if len(self._reports) >= 64:
                self._reports.clear()
            cached = self._reports[key] = asyncio.ensure_future(build_stats(engine, query, now_ms))
        return await asyncio.shield(cached)


class ClockServicer(cgrpc.ClockServiceServicer):
    def __init__(self, service: RouterService) -> None:
        self._service = service

    @maps_errors
    async def GetTime(
        self, request: cpb.GetTimeRequest, context: grpc.aio.ServicerContext
    ) -> cpb.GetTimeResponse:
        clock = self._service.clock
        return cpb.GetTimeResponse(
            now_ms=max(clock.now_ms(), self._service.engine.now_ms),
            test_clock=isinstance(clock, TestClock),
        )

    @maps_errors
    async def AdvanceTime(
        self, request: cpb.AdvanceTimeRequest, context: grpc.aio.ServicerContext
    ) -> cpb.AdvanceTimeResponse:
        clock = self._service.clock
        if not isinstance(clock, TestClock):
            raise FailedPrecondition(
                "the test clock is off: start the server with --test-clock to move time"
            )
        duration_ms = request.duration_ms
        if not 0 < duration_ms <= ADVANCE_TIME_MS_MAX:
            raise InvalidArgument(
                "duration_ms", f"must be between 1 and {ADVANCE_TIME_MS_MAX}, got {duration_ms}"
            )
        if clock.now_ms() + duration_ms > CLOCK_MS_MAX:
            raise InvalidArgument(
                "duration_ms", f"would move the clock past {CLOCK_MS_MAX} (the end of 9999)"
            )
        now_ms = clock.advance(duration_ms)
        await self._service.submit(cmd.Tick())  # fire what fell due before answering
        return cpb.AdvanceTimeResponse(now_ms=now_ms)
