"""The statistics of `GetStats` and `WatchStats`, read from the engine between batches: the
queues' real-time figures and every window from `router.core.windows`.

A report's cost grows with the queues, channels and workers (and the minutes of the window),
so it gives the loop back between queues and between slices of workers (rule 6: no read that
grows with the state holds the writer's loop)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from router._proto.switchboard.v1 import stats_service_pb2 as spb
from router.api.convert import queue_stats_to_pb
from router.core.engine import Engine
from router.core.errors import InvalidArgument
from router.core.statistics import wait_ms
from router.core.windows import WINDOW_MINUTES_MAX, Tally, window_start_ms

__all__ = ["StatsQuery", "build_stats", "query_of"]

WINDOW_S_DEFAULT = 3600
THRESHOLDS_S_DEFAULT = (20,)
THRESHOLDS_MAX = 16
WORKERS_IN_STATS_MAX = 2000
"""Workers in one report (in id order): about 150 bytes each, well within 4 MiB."""
_YIELD_EVERY = 200
"""Workers (or queues) reported between two turns given back to the loop."""


@dataclass(frozen=True, slots=True)
class StatsQuery:
    window_s: int
    thresholds_s: tuple[int, ...]
    queue_ids: tuple[str, ...]
    include_workers: bool


def query_of(request: spb.StatsQuery) -> StatsQuery:
    """The request's query, checked (InvalidArgument naming the field)."""
    window_s = request.window_s or WINDOW_S_DEFAULT
    if not 0 < window_s <= WINDOW_MINUTES_MAX * 60:
        raise InvalidArgument("query.window_s", f"must be 1 to {WINDOW_MINUTES_MAX * 60}")
    thresholds = tuple(request.thresholds_s) or THRESHOLDS_S_DEFAULT
    if len(thresholds) > THRESHOLDS_MAX or any(not 0 < t <= 86_400 for t in thresholds):
        raise InvalidArgument(
            "query.thresholds_s", f"at most {THRESHOLDS_MAX}, each 1 to 86400 seconds"
        )
    return StatsQuery(window_s, thresholds, tuple(request.queue_ids), request.include_workers)


async def build_stats(engine: Engine, query: StatsQuery, now_ms: int) -> spb.Stats:
    start_ms = window_start_ms(now_ms, query.window_s)
    windows = engine.windows
    stats = spb.Stats(now_ms=now_ms, window_start_ms=start_ms)
    stats.workers_by_activity.update(engine.workers_by_activity())
    queue_ids = query.queue_ids or tuple(engine.queues)
    workspace = Tally()
    for done, queue_id in enumerate(queue_ids, start=1):
        if queue_id not in engine.queues:
            raise InvalidArgument("query.queue_ids", f"no queue {queue_id!r}")
        tally = windows.tally(windows.queues.get(queue_id), start_ms)
        workspace.add(tally)
        stats.queues.append(_queue(engine, queue_id, tally, query.thresholds_s))
        if done % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
    for channel, minutes in sorted(windows.channels.items()):
        tally = windows.tally(minutes, start_ms)
        if tally != Tally():
            window = _window(tally, query.thresholds_s)
            stats.channels.append(spb.ChannelStats(channel=channel, window=window))
    stats.workspace.CopyFrom(_window(workspace, query.thresholds_s))
    if query.include_workers:
        await _workers(engine, stats, start_ms, now_ms)
    return stats


def _queue(
    engine: Engine, queue_id: str, tally: Tally, thresholds_s: tuple[int, ...]
) -> spb.QueueLiveStats:
    queue = engine.queues[queue_id]
    waiting = engine.waiting
    live = spb.QueueLiveStats(
        realtime=queue_stats_to_pb(engine.queue_stats(queue_id)),
        window=_window(tally, thresholds_s),
    )
    if not queue.priority_aging_per_min:
        live.waiting_by_priority.update(waiting.depth_by_priority(queue_id))
    columns = engine.columns
    rows = columns.row_count
    members = engine.catalog.membership.members(queue_id)[:rows]
    live.eligible_available = int((members & columns.available[:rows]).sum())
    last = waiting.last_task_id(queue_id)
    if last is None:
        live.estimated_wait_known = True  # nobody waits: offered as soon as one is free
    else:
        task = engine.tasks.open[last]
        estimate = wait_ms(waiting.position(last) + 1, engine.statistics.offer_rate(task))
        if estimate is not None:
            live.estimated_wait_s = estimate / 1000
            live.estimated_wait_known = True
    return live


def _window(tally: Tally, thresholds_s: tuple[int, ...]) -> spb.WindowStats:
    abandoned = sum(tally.abandoned.values())
    window = spb.WindowStats(
        created=tally.created,
        answered=tally.answered,
        completed=tally.completed,
        abandoned=abandoned,
        average_wait_s=tally.wait_sum_ms / tally.answered / 1000 if tally.answered else 0.0,
        longest_wait_s=tally.wait_max_ms / 1000,
        average_handle_s=(tally.handle_sum_ms / tally.completed / 1000 if tally.completed else 0.0),
    )
    window.abandoned_by_origin.update(tally.abandoned)
    for threshold_s in thresholds_s:
        split = tally.split(threshold_s)
        window.service_levels.append(
            spb.ServiceLevel(
                threshold_s=threshold_s,
                answered_within=split.answered_within,
                answered_after=split.answered_after,
                abandoned_within=split.abandoned_within,
                abandoned_after=split.abandoned_after,
                service_level=split.service_level,
            )
        )
    return window


async def _workers(engine: Engine, stats: spb.Stats, start_ms: int, now_ms: int) -> None:
    page = engine.list_workers(activity="", after_worker_id="", count_max=WORKERS_IN_STATS_MAX)
    stats.workers_truncated = page.more
    available = engine.activities
    for done, copy in enumerate(page.copies, start=1):
        worker = copy.worker
        figures = engine.windows.worker(worker.worker_id, start_ms, now_ms)
        available_ms = sum(ms for a, ms in figures.activity_ms.items() if available.get(a))
        stats.workers.append(
            spb.WorkerStats(
                worker_id=worker.worker_id,
                activity=worker.activity,
                activity_s={a: ms / 1000 for a, ms in figures.activity_ms.items()},
                completed=figures.completed,
                average_handle_s=(
                    figures.handle_sum_ms / figures.completed / 1000 if figures.completed else 0.0
                ),
                occupancy=figures.handle_sum_ms / available_ms if available_ms else 0.0,
            )
        )
        if done % _YIELD_EVERY == 0:
            await asyncio.sleep(0)
