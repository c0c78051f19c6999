"""Snapshots of a router started by a benchmark: asked for with SIGUSR1 (`switchboard serve`
takes one at once, like Redis' BGSAVE), and seen in its metrics (the count of snapshots saved
rises when one is in Redis)."""

from __future__ import annotations

import asyncio
import os
import signal
import time

from benchmarks.router_metrics import Scrape, scrape

SAVED_POLL_S = 0.05


class SnapshotTrigger:
    """Asks a router process for snapshots and watches them being saved."""

    def __init__(self, pid: int, metrics_port: int) -> None:
        self.pid = pid
        self.metrics_port = metrics_port

    async def scrape(self) -> Scrape:
        return await asyncio.to_thread(scrape, self.metrics_port)

    def request(self) -> None:
        """The router takes a snapshot at the end of its next batch (or idle wake-up, within a
        second); a request while one is being saved waits for it to end."""
        os.kill(self.pid, signal.SIGUSR1)

    async def request_after(self, delay_s: float) -> None:
        await asyncio.sleep(delay_s)
        self.request()

    async def saved_after(
        self, before: Scrape, count: int, timeout_s: float, *, poll_s: float = SAVED_POLL_S
    ) -> Scrape:
        """The first reading (one every `poll_s`) in which `count` more snapshots than in
        `before` are saved, or the last one read when `timeout_s` passes first (the caller sees
        how many were)."""
        deadline_s = time.perf_counter() + timeout_s
        while True:
            now = await self.scrape()
            if now.snapshots_done() >= before.snapshots_done() + count:
                return now
            if now.at_s > deadline_s:
                return now
            await asyncio.sleep(poll_s)
