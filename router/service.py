"""The single writer: every change of state passes through this loop, in order.

Callers `submit` commands; the loop takes every command waiting in this turn as one batch, stamps
it with the clock, applies it to the engine, and only then answers the callers and releases the
batch's events (offers to agent streams, metrics). Timers are driven by Tick commands issued when
the engine's next timer falls due. Reads are served from the engine between batches."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from redis.exceptions import RedisError

from router.clock import Clock
from router.core import codec, snapshot
from router.core import commands as cmd
from router.core.engine import Engine, Result
from router.core.errors import CoreError, Internal, Unavailable
from router.core.events import Event
from router.obs.metrics import RouterMetrics
from router.store.journal import FencedError, RedisJournal
from router.store.lease import Lease
from router.store.recovery import recover

log = logging.getLogger(__name__)

BATCH_COMMANDS_MAX = 512
"""Most commands applied in one batch: bounds how long one turn of the loop holds the engine."""
IDLE_WAKE_S = 1.0
"""The loop wakes at least this often, to refresh metrics and notice a stop."""
STATE_METRICS_INTERVAL_S = 1.0
SNAPSHOT_EVERY_COMMANDS_DEFAULT = 50_000
"""Journaled commands between snapshots: bounds the replay a recovery does (at ~80 us a
command, 50,000 replay in about 4 s) against the pause a snapshot takes."""
FREEZE_EVERY_COMMANDS = 2_000
"""Journaled commands between two `gc.freeze()` calls (see `_freeze_heap_if_due`)."""
STORE_RETRY_S = 0.5

EventListener = Callable[[list[Event]], None]
WorkerStream = asyncio.Queue[Event | None]
"""The events of one agent's Connect stream; None ends the stream."""


@dataclass(slots=True)
class _Submission:
    command: cmd.Command
    future: asyncio.Future[Result]


class Role(Enum):
    LEADER = "leader"
    """Holds the lease: applies commands, journals them, serves."""
    STANDBY = "standby"
    """Tails the journal into an up-to-date copy; refuses calls; takes over when it can."""


@dataclass(frozen=True, slots=True)
class Durability:
    """Where batches are journaled, the lease that fences it, and the snapshot interval."""

    journal: RedisJournal
    lease: Lease
    last_entry_id: str
    """The journal entry the engine's state includes (from recovery)."""
    snapshot_every_commands: int = SNAPSHOT_EVERY_COMMANDS_DEFAULT


class _Deposed(Exception):
    """This router can no longer write the journal (lease lost, or the store failed)."""


RoleListener = Callable[["Role"], Awaitable[None]]


class RouterService:
    """Owns the engine; applies commands in batches; journals each batch (when durable) before
    it answers the callers and publishes the batch's events."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        metrics: RouterMetrics,
        durability: Durability | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.metrics = metrics
        self._durability = durability
        self._last_entry_id = durability.last_entry_id if durability else ""
        self.role = Role.STANDBY if durability else Role.LEADER
        self.leader_address = ""
        """Where the leader is, as the lease says (empty when unknown or this router leads)."""
        self._role_listeners: list[RoleListener] = []
        self.journaled_batches = 0
        self._commands_since_snapshot = 0
        self._commands_since_freeze = 0
        self._inbox: asyncio.Queue[_Submission] = asyncio.Queue()
        self._listeners: list[EventListener] = []
        self._worker_streams: dict[str, set[WorkerStream]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._state_metrics_due_s = 0.0

    @property
    def durable(self) -> bool:
        return self._durability is not None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        main = self._run() if self._durability is None else self._lead_or_follow()
        self._task = asyncio.get_running_loop().create_task(main, name="router-writer")

    async def release_lease(self) -> None:
        """Gives up the lease (on a clean stop), so that a standby need not wait for it to
        expire."""
        if self._durability is not None:
            with contextlib.suppress(RedisError, OSError):
                await self._durability.lease.release()

    def add_role_listener(self, listener: RoleListener) -> None:
        self._role_listeners.append(listener)

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    def standby_message(self) -> str:
        if self.leader_address:
            return f"this router is a standby; the leader is at {self.leader_address}"
        return "this router is a standby; no leader is known yet"

    async def stop(self) -> None:
        task, self._task = self._task, None
        # Cancel until it has ended: a cancellation can arrive inside a Redis call that reports
        # it as a lost connection, which the follow loop would retry.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=0.5)

    # -- writing --------------------------------------------------------------------------------

    async def submit(self, command: cmd.Command) -> Result:
        """Applies a command in the next batch and returns its result once the batch is durable,
        or raises its CoreError (Unavailable when the store could not be written)."""
        if self.role is not Role.LEADER:
            raise Unavailable(self.standby_message())
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_Submission(command, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = await self._next_batch()
            try:
                await self._process(batch)
            except _Deposed:
                return
            except Exception as bug:  # never let one batch end the writer
                log.exception("a batch failed")
                for submission in batch:
                    if not submission.future.done():
                        submission.future.set_exception(Internal(f"the router failed: {bug!r}"))

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

    async def _process(self, batch: list[_Submission]) -> None:
        now_ms = max(self.clock.now_ms(), self.engine.now_ms)
        outcomes, applied = self._apply(batch, now_ms)
        commands = tuple(applied)
        events = self.engine.take_events()
        if self._durability is not None and any(_is_bug(f) for _, _, f in outcomes):
            await self._drop_batch_with_a_bug(outcomes)
            return
        if self._durability is not None and _worth_journaling(commands, events):
            try:
                await self._journal(codec.Batch(now_ms, commands))
            except (RedisError, OSError, FencedError) as error:
                log.warning("the journal could not be written (%s): stepping down", error)
                unavailable = Unavailable(f"the router could not journal the request: {error}")
                for future, _, _ in outcomes:
                    if not future.done():
                        future.set_exception(unavailable)
                raise _Deposed from error
        for future, result, failure in outcomes:
            if future.done():  # the caller went away
                continue
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(result)
        self._publish(events)
        await self._snapshot_if_due()

    def _apply(
        self, batch: list[_Submission], now_ms: int
    ) -> tuple[list[tuple[asyncio.Future[Result], Result, Exception | None]], list[cmd.Command]]:
        """Applies the batch; returns each caller's outcome and the commands applied, in the
        form the journal keeps (so that a replay sees the same values)."""
        outcomes: list[tuple[asyncio.Future[Result], Result, Exception | None]] = []
        applied: list[cmd.Command] = []
        for submission in batch:
            started_ns = time.perf_counter_ns()
            result: Result = None
            failure: Exception | None = None
            try:
                command = codec.normalize(submission.command)
                applied.append(command)
                result = self.engine.apply(command, now_ms)
            except CoreError as refused:
                failure = refused
            except Exception as bug:
                # A bug, not a refusal: fail this caller (INTERNAL), keep serving the others.
                log.exception("command %r failed", submission.command)
                failure = Internal(f"the router failed on this request: {bug!r}")
            outcomes.append((submission.future, result, failure))
            self.metrics.decision_seconds.observe((time.perf_counter_ns() - started_ns) / 1e9)
        self.metrics.batch_size.observe(len(batch))
        return outcomes, applied

    async def _drop_batch_with_a_bug(
        self, outcomes: list[tuple[asyncio.Future[Result], Result, Exception | None]]
    ) -> None:
        """A bug hit a command: journaling the batch would make every later recovery hit it
        again, and the engine may be half-changed. So nothing of the batch is kept: the buggy
        caller gets its error, the others UNAVAILABLE (safe to retry), and the engine is rebuilt
        from the store."""
        retry = Unavailable("the router dropped this request with another that failed; retry")
        for future, _, failure in outcomes:
            if not future.done():
                future.set_exception(failure if isinstance(failure, Internal) else retry)
        await self._recover()

    async def _journal(self, batch: codec.Batch) -> None:
        assert self._durability is not None
        self._last_entry_id = await self._durability.journal.append(
            codec.encode_batch(batch), self._durability.lease.token
        )
        self.journaled_batches += 1
        self._commands_since_snapshot += len(batch.commands)
        self._freeze_heap_if_due(len(batch.commands))

    def _freeze_heap_if_due(self, commands: int) -> None:
        """Keeps Python's full garbage collections short. The engine's state is a large heap
        that lives long (up to 100k closed tasks are kept for GetTask), and a full collection
        walks all of it, pausing the single writer ~0.1 s. `gc.freeze()` takes every object alive
        now out of the collector's reach; objects freed by reference counting still go at once,
        and the cyclic garbage among the frozen is collected at the next snapshot
        (`_collect_frozen`), so nothing leaks for longer than a snapshot interval."""
        self._commands_since_freeze += commands
        if self._commands_since_freeze >= FREEZE_EVERY_COMMANDS:
            self._commands_since_freeze = 0
            gc.freeze()

    async def _snapshot_if_due(self) -> None:
        durability = self._durability
        if durability is None or self._commands_since_snapshot < durability.snapshot_every_commands:
            return
        started_s = time.monotonic()
        data = snapshot.take(self.engine)
        _collect_frozen()
        try:
            await durability.journal.save_snapshot(
                data, self._last_entry_id, durability.lease.token
            )
        except (RedisError, OSError, FencedError) as error:
            log.warning("a snapshot could not be saved (%s); the journal keeps everything", error)
            return
        self._commands_since_snapshot = 0
        log.info(
            "snapshot of %d bytes through %s in %.2f s",
            len(data), self._last_entry_id, time.monotonic() - started_s,
        )  # fmt: skip

    # -- leadership -----------------------------------------------------------------------------

    async def _lead_or_follow(self) -> None:
        """Standby until the lease is won, leader until it is lost, and so on."""
        while True:
            await self._follow_until_leader()
            writer = asyncio.create_task(self._run(), name="router-leader")
            keeper = asyncio.create_task(self._keep_lease(), name="router-lease")
            try:
                await asyncio.wait({writer, keeper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                writer.cancel()
                keeper.cancel()
                # gather, not suppress(CancelledError): a cancellation of this task must go on.
                await asyncio.gather(writer, keeper, return_exceptions=True)
            log.warning("lost the leadership: now a standby")
            await self._set_role(Role.STANDBY)
            self._refuse_waiting(Unavailable(self.standby_message()))
            # The engine may hold a batch the journal refused: start again from the store.
            await self._recover()

    async def _follow_until_leader(self) -> None:
        """Keeps the engine up to date with the journal; returns once this router leads."""
        assert self._durability is not None
        lease = self._durability.lease
        block_ms = max(50, lease.ttl_ms // 2)
        while True:
            try:
                if await lease.try_acquire():
                    await self._catch_up(block_ms=None)
                    self.leader_address = ""
                    log.warning("leading (lease %s)", lease.token)
                    await self._set_role(Role.LEADER)
                    return
                self.leader_address = await lease.leader_address()
                await self._catch_up(block_ms=block_ms)
            except (RedisError, OSError) as error:
                log.warning("the store is unreachable (%s); retrying", error)
                await asyncio.sleep(STORE_RETRY_S)

    async def _catch_up(self, *, block_ms: int | None) -> None:
        """Applies the journal entries this router has not applied yet: all of them
        (`block_ms` None), or one read waiting up to `block_ms` for the first. Reloads the
        snapshot when the journal was trimmed past this router's position."""
        assert self._durability is not None
        journal = self._durability.journal
        if block_ms is None:
            entries = [entry async for entry in journal.entries_after(self._last_entry_id)]
        else:
            entries = await journal.tail(self._last_entry_id, block_ms)
        through_id = await journal.load_snapshot_through_id()
        if through_id is not None and _entry_key(through_id) > _entry_key(self._last_entry_id):
            await self._recover()  # what this router had not read may have been trimmed
            return
        for entry_id, data in entries:
            self._apply_journaled(data)
            self._last_entry_id = entry_id

    def _apply_journaled(self, data: bytes) -> None:
        batch = codec.decode_batch(data)
        for command in batch.commands:
            with contextlib.suppress(CoreError):
                self.engine.apply(command, batch.now_ms)
        self._publish(self.engine.take_events(), to_streams=False)

    async def _keep_lease(self) -> None:
        """Renews the lease every third of its TTL; returns when it is lost."""
        assert self._durability is not None
        lease = self._durability.lease
        while True:
            await asyncio.sleep(lease.ttl_ms / 3000)
            try:
                if not await lease.renew():
                    return
            except (RedisError, OSError) as error:
                log.warning("the lease could not be renewed (%s)", error)
                return

    async def _set_role(self, role: Role) -> None:
        self.role = role
        if role is Role.STANDBY:
            self._end_worker_streams()
        for listener in self._role_listeners:
            await listener(role)

    async def _recover(self) -> None:
        """Replaces the engine with the durable state; retries until the store answers,
        refusing what arrives meanwhile."""
        assert self._durability is not None
        while True:
            try:
                recovered = await recover(self._durability.journal)
            except (RedisError, OSError) as error:
                log.warning("recovery from the store failed (%s); retrying", error)
                self._refuse_waiting(Unavailable(f"the router's store is unreachable: {error}"))
                await asyncio.sleep(STORE_RETRY_S)
                continue
            self.engine = recovered.engine
            self._last_entry_id = recovered.last_entry_id
            log.warning("recovered from the store: %d batches replayed", recovered.replayed_batches)
            return

    def _refuse_waiting(self, error: Exception) -> None:
        while not self._inbox.empty():
            submission = self._inbox.get_nowait()
            if not submission.future.done():
                submission.future.set_exception(error)

    # -- events ---------------------------------------------------------------------------------

    def add_listener(self, listener: EventListener) -> None:
        self._listeners.append(listener)

    def attach_worker_stream(self, worker_id: str) -> WorkerStream:
        """A queue that receives every event about this worker's offers and assignments."""
        stream: WorkerStream = asyncio.Queue()
        self._worker_streams[worker_id].add(stream)
        return stream

    def detach_worker_stream(self, worker_id: str, stream: WorkerStream) -> None:
        streams = self._worker_streams.get(worker_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._worker_streams[worker_id]

    def _end_worker_streams(self) -> None:
        """Ends every agent stream (a None on it), so that agents reconnect to the leader: a
        router that stepped down receives no events to forward."""
        for streams in self._worker_streams.values():
            for stream in streams:
                stream.put_nowait(None)
        self._worker_streams.clear()

    def connected_workers(self) -> int:
        return len(self._worker_streams)

    def _publish(self, events: list[Event], *, to_streams: bool = True) -> None:
        if events:
            self.metrics.observe_events(events)
            for event in events if to_streams else ():
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


def _is_bug(failure: Exception | None) -> bool:
    return isinstance(failure, Internal)


def _entry_key(entry_id: str) -> tuple[int, int]:
    """A journal entry id ("ms-seq") as a sortable pair; "0" sorts first."""
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def _worth_journaling(commands: tuple[cmd.Command, ...], events: list[Event]) -> bool:
    """A batch of ticks that fired nothing changed nothing a replay would not redo."""
    return bool(events) or any(not isinstance(c, cmd.Tick) for c in commands)


def _worker_of(event: Event) -> str:
    reservation = getattr(event, "reservation", None)
    return reservation.worker_id if reservation is not None else ""


def _collect_frozen() -> None:
    """One full collection over everything, the frozen included, then freeze again: paid while
    the writer already pauses for a snapshot, it frees the cycles that died while frozen."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
