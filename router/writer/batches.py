"""The writer: every change of state passes through this loop, in order.

Callers `submit` commands, each encoded once, there: those bytes are what the journal keeps, and
the command is applied in the form they decode to (so that a replay sees exactly the values the
live engine saw). The loop takes every command waiting in this turn as one batch, stamps it with
the clock, applies it (`router.core.replay`), journals it, and only then answers the callers and
hands the batch's events on. Timers are driven by Tick commands issued when the engine's next
timer falls due. The first batch of a workspace with a command in it starts with `SeedIds`, the
random key its ids are derived from (drawn here, at the edge, so that the core stays
deterministic)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from router.clock import Clock
from router.core import codec
from router.core import commands as cmd
from router.core.engine import Engine
from router.core.errors import CoreError, Internal, Unavailable
from router.core.events import Event
from router.core.feed import FeedEvent, encode_feed, to_feed
from router.core.identifiers import ID_KEY_BYTES
from router.core.replay import apply_each
from router.obs.metrics import RouterMetrics
from router.store.errors import Fenced, StoreUnavailable
from router.store.formats import encode_entry
from router.store.protocols import Journal, Lease

R = TypeVar("R")
__all__ = [
    "BATCH_COMMANDS_MAX", "IDLE_WAKE_S", "REPLICA_ACK_TIMEOUT_MS", "BatchWriter", "Deposed",
    "Outcomes", "Unjournaled", "answer", "fail_unanswered",
]  # fmt: skip

log = logging.getLogger(__name__)

BATCH_COMMANDS_MAX = 512
"""Most commands applied in one batch: bounds how long one turn of the loop holds the engine."""
IDLE_WAKE_S = 1.0
"""The loop wakes at least this often, to refresh metrics, notice a stop, and show it lives."""
REPLICA_ACK_TIMEOUT_MS = 1000
"""Longest wait for `--min-replicas-acked` replicas to acknowledge a batch."""

_TICK_ENCODED = codec.encode_command(cmd.Tick())
_TICK = codec.decode_command(_TICK_ENCODED)


@dataclass(slots=True)
class _Submission:
    command: cmd.Command[Any]
    """As the journal gives it back (decoded from `encoded`)."""
    encoded: bytes
    future: asyncio.Future[Any]


Outcomes = list[tuple[asyncio.Future[Any], object, Exception | None]]
"""Each caller's future, its result, and the error it gets instead (if any)."""


@dataclass(slots=True)
class Unjournaled:
    """A batch applied to the engine that the journal refused (fenced): its callers wait for
    the verdict (written back with the router's state, or refused)."""

    outcomes: Outcomes
    events: list[Event]


class Deposed(Exception):
    """This router can no longer write the journal (lease lost, or the store failed)."""

    def __init__(self, reason: str, unjournaled: Unjournaled | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unjournaled = unjournaled


class BatchWriter:
    """Owns the engine; applies commands in batches; journals each batch (when durable) before
    it answers the callers and publishes the batch's events."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        metrics: RouterMetrics,
        *,
        journal: Journal | None = None,
        lease: Lease | None = None,
        last_entry_id: str = "",
        min_replicas_acked: int = 0,
        publish: Callable[[list[Event]], None],
        feed: Callable[[str, list[FeedEvent]], None],
        journaled: Callable[[int], None],
        after_batch: Callable[[], Awaitable[None]],
        rebuild: Callable[[], Awaitable[None]],
    ) -> None:
        """`journal` and `lease` None: not durable (nothing is journaled). The hooks:
        `publish(events)` once a batch is durable; `feed(entry_id, feed_events)` then, with the
        batch's public events and its journal entry (empty when not durable);
        `journaled(commands)` after each append; `after_batch()` at the end of each batch;
        `rebuild()` replaces the engine with the store's state (after a bug, whose batch is
        dropped)."""
        assert (journal is None) == (lease is None)
        self.engine = engine
        self.clock = clock
        self._metrics = metrics
        self._journal = journal
        self._lease = lease
        self.last_entry_id = last_entry_id
        """The journal entry the engine's state includes."""
        self.journaled_batches = 0
        self.min_replicas_acked = min_replicas_acked
        """Replicas that must acknowledge each batch (Redis WAIT) before it is answered."""
        self._publish = publish
        self._feed = feed
        self._journaled = journaled
        self._after_batch = after_batch
        self._rebuild = rebuild
        self._inbox: asyncio.Queue[_Submission | None] = asyncio.Queue()
        self.beat_s = time.monotonic()
        """When the writer last finished a batch or woke up idle (the lease keeper's proof of
        life)."""
        self.in_batch = False
        self._boundary_waiters: list[asyncio.Future[None]] = []

    @property
    def durable(self) -> bool:
        return self._journal is not None

    def adopt(self, engine: Engine, last_entry_id: str) -> None:
        """Replaces the engine with one recovered from the store, through `last_entry_id`."""
        self.engine = engine
        self.last_entry_id = last_entry_id

    async def submit(self, command: cmd.Command[R]) -> R:
        """Applies a command in the next batch and returns its result once the batch is durable,
        or raises its CoreError (Unavailable when the store could not be written)."""
        return await self.enqueue(command)

    def enqueue(self, command: cmd.Command[R]) -> asyncio.Future[R]:
        """`submit`, with the command queued before this returns: it is applied after every
        command queued before it and before every command queued after it."""
        try:
            encoded = codec.encode_command(command)
            journaled = codec.decode_command(encoded)
        except Exception:  # a command the codec cannot carry is a bug, not a refusal
            log.exception("command %r could not be encoded", command)
            raise Internal() from None
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_Submission(journaled, encoded, future))
        return future

    def stop_after_batch(self) -> None:
        """Ends `run` after the batch under way (the lease was lost)."""
        self._inbox.put_nowait(None)

    def refuse_waiting(self, error: Exception) -> None:
        """Fails every command waiting for a batch with `error`."""
        while not self._inbox.empty():
            submission = self._inbox.get_nowait()
            if submission is not None and not submission.future.done():
                submission.future.set_exception(error)

    async def batch_boundary(self) -> None:
        """Returns at the end of the batch under way (at once when there is none)."""
        if not self.in_batch:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._boundary_waiters.append(waiter)
        await waiter

    async def run(self) -> None:
        """Applies batches until `stop_after_batch` or the journal refuses one (`Deposed`)."""
        while True:
            self.beat_s = time.monotonic()
            batch = await self._next_batch()
            if batch is None:
                return
            try:
                await self._process(batch)
            except (Deposed, asyncio.CancelledError):
                raise
            except Exception:  # never let one batch end the writer
                log.exception("a batch failed")
                for submission in batch:
                    if not submission.future.done():
                        submission.future.set_exception(Internal())

    async def _next_batch(self) -> list[_Submission] | None:
        batch = await self._waiting_batch()
        if (
            batch is not None
            and not self.engine.identifiers.seeded
            and _worth_journaling(batch, [])  # an idle router writes nothing
        ):
            batch.insert(0, _seed_submission())
        return batch

    async def _waiting_batch(self) -> list[_Submission] | None:
        timeout_s = IDLE_WAKE_S
        next_timer_ms = self.engine.next_timer_ms()
        if next_timer_ms is not None:
            timeout_s = min(timeout_s, max(0.0, (next_timer_ms - self.clock.now_ms()) / 1000))
        try:
            first = await asyncio.wait_for(self._inbox.get(), timeout_s)
        except TimeoutError:
            future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            return [_Submission(_TICK, _TICK_ENCODED, future)]
        if first is None:
            return None
        batch = [first]
        while len(batch) < BATCH_COMMANDS_MAX and not self._inbox.empty():
            submission = self._inbox.get_nowait()
            if submission is None:  # the lease was lost: this batch is the last
                self._inbox.put_nowait(None)
                break
            batch.append(submission)
        return batch

    async def _process(self, batch: list[_Submission]) -> None:
        self.in_batch = True
        outcomes: Outcomes = []
        try:
            now_ms = max(self.clock.now_ms(), self.engine.now_ms)
            outcomes = self._apply(batch, now_ms)
            events = self.engine.take_events()
            if self.durable and any(isinstance(f, Internal) for _, _, f in outcomes):
                await self._drop_batch_with_a_bug(outcomes)
                return
            feed = to_feed(events, now_ms)
            if self.durable and _worth_journaling(batch, events):
                shortfall = await self._journal_durably(now_ms, batch, outcomes, events, feed)
                if shortfall is not None:
                    fail_unanswered(outcomes, shortfall)
            answer(outcomes)
            self._publish(events)
            if feed:
                self._feed(self.last_entry_id if self.durable else "", feed)
            await self._after_batch()
        except asyncio.CancelledError:
            # Cancelled mid-write (a stuck writer): the batch is not known to be journaled.
            fail_unanswered(outcomes, Unavailable("the router stepped down; retry"))
            raise
        finally:
            self.in_batch = False
            waiters, self._boundary_waiters = self._boundary_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def _apply(self, batch: list[_Submission], now_ms: int) -> Outcomes:
        """Applies the batch; returns each caller's outcome."""
        outcomes: Outcomes = []
        applied = apply_each(self.engine, codec.Batch(now_ms, tuple(s.command for s in batch)))
        started_ns = time.perf_counter_ns()
        for submission, outcome in zip(batch, applied, strict=True):
            self._metrics.decision_seconds.observe((time.perf_counter_ns() - started_ns) / 1e9)
            result: object = None
            failure: Exception | None = None
            if isinstance(outcome, CoreError):
                failure = outcome
            elif isinstance(outcome, Exception):
                # A bug, not a refusal: fail this caller (INTERNAL), keep serving the others.
                log.error("command %r failed", submission.command, exc_info=outcome)
                failure = Internal()
            else:
                result = outcome
            outcomes.append((submission.future, result, failure))
            started_ns = time.perf_counter_ns()
        self._metrics.batch_size.observe(len(batch))
        return outcomes

    async def _drop_batch_with_a_bug(self, outcomes: Outcomes) -> None:
        """A bug hit a command: journaling the batch would make every later recovery hit it
        again, and the engine may be half-changed. So nothing of the batch is kept: the buggy
        caller gets its error, the others UNAVAILABLE (safe to retry), and the engine is rebuilt
        from the store."""
        retry = Unavailable("the router dropped this request with another that failed; retry")
        for future, _, failure in outcomes:
            if not future.done():
                future.set_exception(failure if isinstance(failure, Internal) else retry)
        await self._rebuild()

    async def _journal_durably(
        self,
        now_ms: int,
        batch: list[_Submission],
        outcomes: Outcomes,
        events: list[Event],
        feed: list[FeedEvent],
    ) -> Unavailable | None:
        """Journals the batch with its public events (and waits for the replicas the operator
        asks for). Returns the error its callers get when too few replicas acknowledged it in
        time; raises Deposed when the journal refused it or could not be written."""
        journal, lease = self._journal, self._lease
        assert journal is not None and lease is not None
        entry = encode_entry(now_ms, [s.encoded for s in batch])
        try:
            self.last_entry_id = await journal.append(
                entry,
                lease.token,
                after_id=self.last_entry_id,
                events=encode_feed(feed) if feed else b"",
            )
        except Fenced as error:
            # The engine holds the batch; whether it may stand depends on the store (see
            # `Leadership`): its callers wait for that verdict.
            raise Deposed(str(error), Unjournaled(outcomes, events)) from error
        except StoreUnavailable as error:
            log.warning("the journal could not be written (%s): stepping down", error)
            fail_unanswered(
                outcomes,
                Unavailable(
                    f"the router could not journal the request ({error}); it is not confirmed: "
                    "retry (a create with the same client_request_id is never doubled)"
                ),
            )
            raise Deposed(f"the journal could not be written: {error}") from error
        self.journaled_batches += 1
        self._journaled(len(batch))
        wanted = self.min_replicas_acked
        if wanted <= 0:
            return None
        try:
            acknowledged = await journal.wait_for_replicas(wanted, REPLICA_ACK_TIMEOUT_MS)
        except StoreUnavailable as error:
            acknowledged, reason = 0, f" ({error})"
        else:
            reason = ""
        if acknowledged >= wanted:
            return None
        self._metrics.replica_shortfalls.inc()
        return Unavailable(
            f"the request was journaled but only {acknowledged} of the {wanted} replicas asked "
            f"for acknowledged it within {REPLICA_ACK_TIMEOUT_MS} ms{reason}: it is not "
            "confirmed; retry (a create with the same client_request_id is never doubled)"
        )


def answer(outcomes: Outcomes) -> None:
    """Gives each caller still waiting its result or error."""
    for future, result, failure in outcomes:
        if future.done():  # the caller went away
            continue
        if failure is not None:
            future.set_exception(failure)
        else:
            future.set_result(result)


def fail_unanswered(outcomes: Outcomes, error: Exception) -> None:
    for future, _, _ in outcomes:
        if not future.done():
            future.set_exception(error)


def _seed_submission() -> _Submission:
    """The workspace's id key, drawn from the OS's randomness; nobody waits for its answer."""
    command = cmd.SeedIds(os.urandom(ID_KEY_BYTES))
    encoded = codec.encode_command(command)
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.add_done_callback(_retrieve)
    return _Submission(codec.decode_command(encoded), encoded, future)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Marks an unawaited future's outcome as seen (a failed seed is retried next batch)."""
    if not future.cancelled():
        future.exception()


def _worth_journaling(batch: list[_Submission], events: list[Event]) -> bool:
    """A batch of ticks that fired nothing changed nothing a replay would not redo."""
    return bool(events) or any(not isinstance(s.command, cmd.Tick) for s in batch)
