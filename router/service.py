"""The single writer: every change of state passes through this loop, in order.

Callers `submit` commands; the loop takes every command waiting in this turn as one batch, stamps
it with the clock, applies it to the engine, and only then answers the callers and releases the
batch's events (offers to agent streams, metrics). Timers are driven by Tick commands issued when
the engine's next timer falls due. Reads are served from the engine between batches."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from router.clock import Clock
from router.core import commands as cmd
from router.core.engine import Engine, Result
from router.core.errors import CoreError
from router.core.events import Event
from router.obs.metrics import RouterMetrics

log = logging.getLogger(__name__)

BATCH_COMMANDS_MAX = 512
"""Most commands applied in one batch: bounds how long one turn of the loop holds the engine."""
IDLE_WAKE_S = 1.0
"""The loop wakes at least this often, to refresh metrics and notice a stop."""
STATE_METRICS_INTERVAL_S = 1.0

EventListener = Callable[[list[Event]], None]


@dataclass(slots=True)
class _Submission:
    command: cmd.Command
    future: asyncio.Future[Result]


class RouterService:
    """Owns the engine; applies commands in batches; publishes events after each batch."""

    def __init__(self, engine: Engine, clock: Clock, metrics: RouterMetrics) -> None:
        self.engine = engine
        self.clock = clock
        self.metrics = metrics
        self._inbox: asyncio.Queue[_Submission] = asyncio.Queue()
        self._listeners: list[EventListener] = []
        self._worker_streams: dict[str, set[asyncio.Queue[Event]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._state_metrics_due_s = 0.0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="router-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- writing --------------------------------------------------------------------------------

    async def submit(self, command: cmd.Command) -> Result:
        """Applies a command in the next batch and returns its result, or raises its CoreError."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_Submission(command, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            self._apply(batch)

    async def _next_batch(self) -> list[_Submission]:
        timeout_s = IDLE_WAKE_S
        next_timer_ms = self.engine.next_timer_ms()
        if next_timer_ms is not None:
            timeout_s = min(timeout_s, max(0.0, (next_timer_ms - self.clock.now_ms()) / 1000))
        try:
            first = await asyncio.wait_for(self._inbox.get(), timeout_s)
        except TimeoutError:
            return [_Submission(cmd.Tick(), asyncio.get_running_loop().create_future())]
        batch = [first]
        while len(batch) < BATCH_COMMANDS_MAX and not self._inbox.empty():
            batch.append(self._inbox.get_nowait())
        return batch

    def _apply(self, batch: list[_Submission]) -> None:
        now_ms = max(self.clock.now_ms(), self.engine.now_ms)
        outcomes: list[tuple[asyncio.Future[Result], Result, Exception | None]] = []
        for submission in batch:
            started_ns = time.perf_counter_ns()
            result: Result = None
            failure: Exception | None = None
            try:
                result = self.engine.apply(submission.command, now_ms)
            except CoreError as refused:
                failure = refused
            except Exception as bug:
                # A bug, not a refusal: fail this caller (INTERNAL), keep serving the others.
                log.exception("command %r failed", submission.command)
                failure = bug
            outcomes.append((submission.future, result, failure))
            self.metrics.decision_seconds.observe((time.perf_counter_ns() - started_ns) / 1e9)
        self.metrics.batch_size.observe(len(batch))
        events = self.engine.take_events()
        for future, result, failure in outcomes:
            if future.done():  # the caller went away
                continue
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(result)
        self._publish(events)

    # -- events ---------------------------------------------------------------------------------

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def attach_worker_stream(self, worker_id: str) -> asyncio.Queue[Event]:
        """A queue that receives every event about this worker's offers and assignments."""
        stream: asyncio.Queue[Event] = asyncio.Queue()
        self._worker_streams[worker_id].add(stream)
        return stream

    def detach_worker_stream(self, worker_id: str, stream: asyncio.Queue[Event]) -> None:
        streams = self._worker_streams.get(worker_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._worker_streams[worker_id]

    def connected_workers(self) -> int:
        return len(self._worker_streams)

    def _publish(self, events: list[Event]) -> None:
        if events:
            self.metrics.observe_events(events)
            for event in events:
                worker_id = _worker_of(event)
                for stream in self._worker_streams.get(worker_id, ()) if worker_id else ():
                    stream.put_nowait(event)
            for listener in self._listeners:
                listener(events)
        now_s = time.monotonic()
        if now_s >= self._state_metrics_due_s:
            self._state_metrics_due_s = now_s + STATE_METRICS_INTERVAL_S
            engine = self.engine
            self.metrics.observe_state(
                (engine.queue_stats(q) for q in engine.queues), engine.workers_by_activity()
            )


def _worker_of(event: Event) -> str:
    reservation = getattr(event, "reservation", None)
    return reservation.worker_id if reservation is not None else ""
