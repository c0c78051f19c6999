"""How long the event loop went without running: the stall that every caller, agent stream and
timer of the router waited out.

A timer due every `LOOP_PROBE_INTERVAL_S` measures how late it ran: the lateness is the longest
piece of work that held the loop meanwhile (a callback, a handler, a garbage collection). Each
lateness goes to the `switchboard_loop_stall_seconds` histogram, and the longest one seen is
kept for tests and logs.

A busy machine makes the loop late too: its thread was ready to run but waited for a CPU. Linux
counts that wait per thread (`/proc/thread-self/schedstat`, "run delay"), so the lateness less
the loop thread's run delay over the same interval is the stall the router caused itself (its
own work, its other threads holding the GIL): `switchboard_loop_stall_own_seconds`. On a quiet
machine the two are equal; where they part, the machine is short of CPU, not the router slow."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time

from prometheus_client import CollectorRegistry, Histogram

log = logging.getLogger(__name__)

LOOP_PROBE_INTERVAL_S = 0.01
STALL_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
STALL_LOGGED_S = 0.1
"""A stall this long is logged as a warning, besides being counted."""
_SCHEDSTAT = "/proc/thread-self/schedstat"


class _RunDelay:
    """How long the thread that opened it has waited for a CPU while ready to run, in all (0
    where the kernel does not say: then every stall counts as the router's own). The file stays
    open and is read again from its start (procfs regenerates it): 0.5 us a read, where opening
    it each time cost 7 us, a hundred times a second on the loop."""

    def __init__(self) -> None:
        try:
            self._fd: int | None = os.open(_SCHEDSTAT, os.O_RDONLY)
        except OSError:
            self._fd = None

    def seconds(self) -> float:
        if self._fd is None:
            return 0.0
        try:
            return int(os.pread(self._fd, 128, 0).split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            return 0.0

    def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


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
        self.own_stall_seconds = Histogram(
            "switchboard_loop_stall_own_seconds",
            "The loop stall less the time the loop's thread waited for a CPU meanwhile: the stall "
            "the router caused itself, apart from a busy machine.",
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
        run_delay = _RunDelay()  # opened on the loop's thread, the one it measures
        try:
            await self._sample(run_delay)
        finally:
            run_delay.close()

    async def _sample(self, run_delay: _RunDelay) -> None:
        run_delay_s = run_delay.seconds()
        while True:
            due_s = time.perf_counter() + LOOP_PROBE_INTERVAL_S
            await asyncio.sleep(LOOP_PROBE_INTERVAL_S)
            stall_s = max(0.0, time.perf_counter() - due_s)
            waited_s, run_delay_s = run_delay_s, run_delay.seconds()
            waited_s = run_delay_s - waited_s
            self.stall_seconds.observe(stall_s)
            self.own_stall_seconds.observe(max(0.0, stall_s - waited_s))
            if stall_s > self.longest_stall_s:
                self.longest_stall_s = stall_s
            if stall_s >= STALL_LOGGED_S:
                log.warning(
                    "the event loop stalled for %.3f s (%.3f s of it waiting for a CPU)",
                    stall_s,
                    min(stall_s, waited_s),
                )
