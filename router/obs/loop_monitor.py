"""How long the event loop went without running: the stall that every caller, agent stream and
timer of the router waited out.

A timer due every `LOOP_PROBE_INTERVAL_S` measures how late it ran: the lateness is the longest
piece of work that held the loop meanwhile (a callback, a handler, a garbage collection). Each
lateness goes to the `switchboard_loop_stall_seconds` histogram, and the longest one seen is
kept for tests and logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from prometheus_client import CollectorRegistry, Histogram

log = logging.getLogger(__name__)

LOOP_PROBE_INTERVAL_S = 0.01
STALL_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
STALL_LOGGED_S = 0.1
"""A stall this long is logged as a warning, besides being counted."""


class LoopMonitor:
    """Samples the lateness of a periodic timer on the running loop."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.stall_seconds = Histogram(
            "switchboard_loop_stall_seconds",
            f"How late the event loop ran a timer due every {LOOP_PROBE_INTERVAL_S * 1000:g} ms: "
            "the time every call, agent stream and timer waited for the loop.",
            buckets=STALL_BUCKETS_S,
            registry=registry,
        )
        self.longest_stall_s = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._probe(), name="loop-monitor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def reset_longest(self) -> float:
        """The longest stall since the last reset (for a test's measurement window)."""
        longest, self.longest_stall_s = self.longest_stall_s, 0.0
        return longest

    async def _probe(self) -> None:
        while True:
            due_s = time.perf_counter() + LOOP_PROBE_INTERVAL_S
            await asyncio.sleep(LOOP_PROBE_INTERVAL_S)
            stall_s = max(0.0, time.perf_counter() - due_s)
            self.stall_seconds.observe(stall_s)
            if stall_s > self.longest_stall_s:
                self.longest_stall_s = stall_s
            if stall_s >= STALL_LOGGED_S:
                log.warning("the event loop stalled for %.3f s", stall_s)
