"""The loop monitor: a callback that holds the loop is a stall, counted both as the loop's
lateness and as the router's own stall (the thread slept, it did not wait for a CPU)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from router.obs.loop_monitor import LoopMonitor, _RunDelay


def _count_over(registry: CollectorRegistry, histogram: str, bound_s: float) -> float:
    total = registry.get_sample_value(f"{histogram}_count") or 0.0
    within = registry.get_sample_value(f"{histogram}_bucket", {"le": str(bound_s)}) or 0.0
    return total - within


def test_a_callback_that_holds_the_loop_is_the_routers_own_stall() -> None:
    registry = CollectorRegistry()
    monitor = LoopMonitor(registry)

    async def run() -> None:
        monitor.start()
        await asyncio.sleep(0.05)
        time.sleep(0.3)  # holds the loop: blocked, but not waiting for a CPU
        await asyncio.sleep(0.05)
        await monitor.stop()

    asyncio.run(run())
    assert monitor.longest_stall_s >= 0.25
    assert _count_over(registry, "switchboard_loop_stall_seconds", 0.25) == 1
    assert _count_over(registry, "switchboard_loop_stall_own_seconds", 0.25) == 1


def test_the_run_delay_is_read_afresh_from_the_open_file() -> None:
    """The schedstat file stays open and is read again from its start each time: each reading
    is the thread's run delay at that moment (the file opened anew agrees, whatever the delay
    grew by since the reader opened it), and a closed reader says 0 (as where the kernel has no
    such file)."""
    schedstat = Path("/proc/thread-self/schedstat")
    if not schedstat.exists():
        pytest.skip("no per-thread schedstat on this kernel")
    run_delay = _RunDelay()
    for _ in range(20):
        time.sleep(0.002)
        reading = run_delay.seconds()
        fresh = int(schedstat.read_bytes().split()[1]) / 1e9
        assert fresh - 0.005 <= reading <= fresh
    run_delay.close()
    assert run_delay.seconds() == 0.0
