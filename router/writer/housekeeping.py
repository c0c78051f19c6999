"""Housekeeping: what keeps the writer fit without holding its loop. Snapshots every N journaled
commands and digests of the state, both on a forked copy-on-write image of the engine (the loop
pauses only for the fork); the heap's freeze, which keeps full garbage collections short; and
the state metrics (queue depths, workers by activity), refreshed at most once a second."""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import time
from collections.abc import AsyncIterable
from dataclasses import dataclass

from router.core import snapshot
from router.core.errors import Unavailable
from router.obs.metrics import RouterMetrics
from router.stopping import cancel_until_done
from router.store.errors import Fenced, StoreUnavailable
from router.store.forked import ForkedChild, ForkedError, fork_child, fork_is_safe, run_forked
from router.store.protocols import SNAPSHOT_CHUNK_BYTES, Journal, Lease
from router.writer.batches import BatchWriter

__all__ = [
    "FREEZE_EVERY_COMMANDS", "SNAPSHOT_EVERY_COMMANDS_DEFAULT", "STATE_METRICS_INTERVAL_S",
    "Housekeeping", "StateDigest",
]  # fmt: skip

log = logging.getLogger(__name__)

SNAPSHOT_EVERY_COMMANDS_DEFAULT = 50_000
"""Journaled commands between snapshots: bounds the replay a recovery does (at ~80 us a
command, 50,000 replay in about 4 s)."""
FREEZE_EVERY_COMMANDS = 2_000
"""Journaled commands between two `gc.freeze()` calls (see `Housekeeping.journaled`)."""
STATE_METRICS_INTERVAL_S = 1.0


@dataclass(frozen=True, slots=True)
class StateDigest:
    """A hash of the routing state as of `journaled_batches`, with its size."""

    digest: str
    tasks: int
    workers: int
    journaled_batches: int


class Housekeeping:
    """Snapshots, digests, the heap's freeze and the state metrics of one writer."""

    def __init__(
        self,
        writer: BatchWriter,
        metrics: RouterMetrics,
        *,
        journal: Journal | None = None,
        lease: Lease | None = None,
        snapshot_every_commands: int = SNAPSHOT_EVERY_COMMANDS_DEFAULT,
    ) -> None:
        self._writer = writer
        self._metrics = metrics
        self._journal = journal
        self._lease = lease
        self.snapshot_every_commands = snapshot_every_commands
        self.commands_since_snapshot = 0
        self._commands_since_freeze = 0
        self._snapshot_task: asyncio.Task[None] | None = None
        self._snapshot_requested = False
        self._digest_waiters: list[asyncio.Future[StateDigest]] = []
        self._digest_task: asyncio.Task[None] | None = None
        self._state_metrics_due_s = 0.0

    async def stop(self) -> None:
        for background in (self._snapshot_task, self._digest_task):
            if background is not None:
                await cancel_until_done(background)

    # -- after each journaled batch -------------------------------------------------------------

    def journaled(self, commands: int) -> None:
        """Counts journaled commands towards the next snapshot, and freezes the heap when due.

        The freeze keeps Python's full garbage collections short. The engine's state is a large
        heap that lives long, and a full collection walks all of it (0.5 s at 100k waiting
        tasks, measured). `gc.freeze()` takes every object alive now out of the collector's
        reach, so that collections walk only what was made since; objects freed by reference
        counting still go at once. Collecting first (only the unfrozen objects: milliseconds)
        keeps the cyclic garbage of the last interval from being frozen with the state."""
        self.commands_since_snapshot += commands
        self._commands_since_freeze += commands
        if self._commands_since_freeze >= FREEZE_EVERY_COMMANDS:
            self._commands_since_freeze = 0
            gc.collect()
            gc.freeze()

    def observe_state_if_due(self) -> None:
        """Refreshes the state metrics, at most every `STATE_METRICS_INTERVAL_S`."""
        now_s = time.monotonic()
        if now_s >= self._state_metrics_due_s:
            self._state_metrics_due_s = now_s + STATE_METRICS_INTERVAL_S
            engine = self._writer.engine
            self._metrics.observe_state(
                (engine.queue_stats(q) for q in engine.queues), engine.workers_by_activity()
            )
            self._metrics.observe_service_levels(engine.windows, engine.now_ms)

    # -- snapshots ------------------------------------------------------------------------------

    def request_snapshot(self) -> None:
        """Takes a snapshot at the end of the next batch (or idle wake), as if one were due."""
        self._snapshot_requested = True

    async def snapshot_if_due(self) -> None:
        """Every `snapshot_every_commands` (or on request), forks a child that encodes the
        engine as it is now and hands it to a background save; the writer pauses only for the
        fork."""
        journal, lease = self._journal, self._lease
        if (
            journal is None
            or lease is None
            or self._snapshot_task is not None
            or not (
                self._snapshot_requested
                or self.commands_since_snapshot >= self.snapshot_every_commands
            )
        ):
            return
        self.commands_since_snapshot = 0
        self._snapshot_requested = False
        started_s = time.perf_counter()
        through_id, token = self._writer.last_entry_id, lease.token
        encoded: bytes | ForkedChild
        if fork_is_safe():
            encoded = await fork_child(functools.partial(snapshot.take, self._writer.engine))
        else:
            encoded = snapshot.take(self._writer.engine)  # the writer pays for the encoding
        self._metrics.snapshot_seconds.labels("writer").observe(time.perf_counter() - started_s)
        self._snapshot_task = asyncio.create_task(
            self._save_snapshot(journal, encoded, through_id, token, started_s),
            name="router-snapshot",
        )

    async def _save_snapshot(
        self,
        journal: Journal,
        encoded: bytes | ForkedChild,
        through_id: str,
        token: str,
        started_s: float,
    ) -> None:
        data: bytes | AsyncIterable[bytes] = (
            encoded if isinstance(encoded, bytes) else encoded.chunks(SNAPSHOT_CHUNK_BYTES)
        )
        try:
            size = await journal.save_snapshot(data, through_id, token)
        except (StoreUnavailable, Fenced, ForkedError, OSError) as error:
            log.warning("a snapshot could not be saved (%s); the journal keeps everything", error)
        else:
            elapsed_s = time.perf_counter() - started_s
            self._metrics.snapshot_seconds.labels("background").observe(elapsed_s)
            self._metrics.snapshot_bytes.set(size)
            log.info("snapshot of %d bytes through %s in %.2f s", size, through_id, elapsed_s)
        finally:
            if isinstance(encoded, ForkedChild):
                await encoded.close()
            self._snapshot_task = None

    async def cancel_snapshot(self) -> None:
        task = self._snapshot_task
        if task is not None:
            await cancel_until_done(task)

    async def write_state_back(self, through_id: str) -> int:
        """Saves the engine as the store's snapshot through `through_id` (this router leads):
        after the store came back behind, this router's state is the authority."""
        journal, lease = self._journal, self._lease
        assert journal is not None and lease is not None
        token = lease.token
        engine = self._writer.engine
        # The snapshot first: once it is current the store is no longer behind, so an attempt
        # cut short after it is not repeated over a store that already holds the state.
        if fork_is_safe():
            child = await fork_child(functools.partial(snapshot.take, engine))
            try:
                size = await journal.save_snapshot(
                    child.chunks(SNAPSHOT_CHUNK_BYTES), through_id, token
                )
            finally:
                await child.close()
        else:
            size = await journal.save_snapshot(snapshot.take(engine), through_id, token)
        await journal.raise_position(through_id, token)
        self.commands_since_snapshot = 0
        return size

    # -- reads that grow with the state ---------------------------------------------------------

    async def state_digest(self) -> StateDigest:
        """A digest of the state as journaled so far, computed in a forked child (seconds at
        millions of tasks, none of them on the loop). Callers arriving together share one."""
        waiter: asyncio.Future[StateDigest] = asyncio.get_running_loop().create_future()
        self._digest_waiters.append(waiter)
        if self._digest_task is None:
            self._digest_task = asyncio.create_task(self._digests(), name="router-digest")
        return await waiter

    async def _digests(self) -> None:
        try:
            while self._digest_waiters:
                while self._writer.in_batch:  # a batch applied but not yet journaled is not state
                    await self._writer.batch_boundary()
                waiters, self._digest_waiters = self._digest_waiters, []
                try:
                    digest = await self._digest_now()
                except (ForkedError, OSError) as error:
                    for waiter in waiters:
                        if not waiter.done():
                            waiter.set_exception(Unavailable(f"the digest failed: {error}"))
                    continue
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_result(digest)
        finally:
            self._digest_task = None

    async def _digest_now(self) -> StateDigest:
        engine, batches = self._writer.engine, self._writer.journaled_batches
        if not fork_is_safe():
            return StateDigest(engine.digest(), len(engine.tasks), len(engine.workers), batches)
        encoded = await run_forked(
            lambda: f"{engine.digest()} {len(engine.tasks)} {len(engine.workers)}".encode()
        )
        digest, tasks, workers = encoded.decode().split()
        return StateDigest(digest, int(tasks), int(workers), batches)
