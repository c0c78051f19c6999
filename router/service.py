"""The single writer: every change of state passes through this loop, in order.

Callers `submit` commands; the loop takes every command waiting in this turn as one batch, stamps
it with the clock, applies it to the engine, journals it, and only then answers the callers and
releases the batch's events (offers to agent streams, metrics). Timers are driven by Tick
commands issued when the engine's next timer falls due. Reads are served from the engine between
batches; whatever grows with the state (snapshots, digests) runs in a forked child on a
copy-on-write image of the engine, so that the loop, which also answers every call and feeds
every agent stream, never stalls for it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

import redis
from redis.exceptions import RedisError

from router.clock import Clock
from router.core import codec, snapshot
from router.core import commands as cmd
from router.core.engine import Engine
from router.core.errors import CoreError, Internal, Unavailable
from router.core.events import Event
from router.obs.metrics import RouterMetrics
from router.store.forked import ForkedChild, ForkedError, fork_child, fork_is_safe, run_forked
from router.store.journal import SNAPSHOT_CHUNK_BYTES, FencedError, RedisJournal, entry_key
from router.store.lease import WRITER_STUCK_AFTER_S, Lease
from router.store.recovery import recover

log = logging.getLogger(__name__)
R = TypeVar("R")

BATCH_COMMANDS_MAX = 512
"""Most commands applied in one batch: bounds how long one turn of the loop holds the engine."""
IDLE_WAKE_S = 1.0
"""The loop wakes at least this often, to refresh metrics, notice a stop, and show it lives."""
STATE_METRICS_INTERVAL_S = 1.0
SNAPSHOT_EVERY_COMMANDS_DEFAULT = 50_000
"""Journaled commands between snapshots: bounds the replay a recovery does (at ~80 us a
command, 50,000 replay in about 4 s)."""
FREEZE_EVERY_COMMANDS = 2_000
"""Journaled commands between two `gc.freeze()` calls (see `_freeze_heap_if_due`)."""
STORE_RETRY_S = 0.5
REFUSED_LEAD_RETRY_S = 2.0
"""A standby that refused to lead from a store behind it tries again after this long."""
STEP_DOWN_GRACE_S = 6.0
"""How long a writer that lost its lease may finish its batch (a journal write times out after
5 s) before it is cancelled."""
REPLICA_ACK_TIMEOUT_MS = 1000
"""Longest wait for `--min-replicas-acked` replicas to acknowledge a batch."""
CATCH_UP_YIELD_ENTRIES = 32
"""A standby lets the loop run between this many journal entries applied."""

EventListener = Callable[[list[Event]], None]


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Put on an agent's stream when the router stops leading: the stream ends UNAVAILABLE,
    naming the leader when it is known, so that the desktop reconnects there."""

    message: str
    leader_address: str


WorkerStream = asyncio.Queue[Event | StreamEnd]
"""The events of one agent's Connect stream, ended by a StreamEnd."""


@dataclass(slots=True)
class _Submission:
    command: cmd.Command
    future: asyncio.Future[Any]


_Outcomes = list[tuple[asyncio.Future[Any], Any, Exception | None]]


@dataclass(slots=True)
class _Unjournaled:
    """A batch applied to the engine that the journal refused (fenced): its callers wait for
    the verdict (written back with the router's state, or refused)."""

    outcomes: _Outcomes
    events: list[Event]


class Role(Enum):
    LEADER = "leader"
    """Holds the lease: applies commands, journals them, serves."""
    STANDBY = "standby"
    """Tails the journal into an up-to-date copy; refuses calls; takes over when it can."""


@dataclass(frozen=True, slots=True)
class StateDigest:
    """A hash of the routing state as of `journaled_batches`, with its size."""

    digest: str
    tasks: int
    workers: int
    journaled_batches: int


@dataclass(frozen=True, slots=True)
class Durability:
    """Where batches are journaled, the lease that fences it, and how durable a batch must be."""

    journal: RedisJournal
    lease: Lease
    last_entry_id: str
    """The journal entry the engine's state includes (from recovery)."""
    lease_client: Callable[[], redis.Redis]
    """Opens the blocking client the lease keeper's thread renews the lease with."""
    snapshot_every_commands: int = SNAPSHOT_EVERY_COMMANDS_DEFAULT
    min_replicas_acked: int = 0
    """Replicas that must acknowledge each batch (Redis WAIT) before it is answered."""


class _Deposed(Exception):
    """This router can no longer write the journal (lease lost, or the store failed)."""

    def __init__(self, reason: str, unjournaled: _Unjournaled | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.unjournaled = unjournaled


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
        self._inbox: asyncio.Queue[_Submission | None] = asyncio.Queue()
        self._listeners: list[EventListener] = []
        self._worker_streams: dict[str, set[WorkerStream]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._state_metrics_due_s = 0.0
        self._writer_beat_s = time.monotonic()
        """When the writer last finished a batch or woke up idle (the lease keeper's proof of
        life)."""
        self._in_batch = False
        self._boundary_waiters: list[asyncio.Future[None]] = []
        self._lease_lost_reason = ""
        self._writer: asyncio.Task[None] | None = None
        self._stuck_writer_timer: asyncio.TimerHandle | None = None
        self._acquired_at_s = 0.0
        self._snapshot_task: asyncio.Task[None] | None = None
        self._snapshot_requested = False
        self._digest_waiters: list[asyncio.Future[StateDigest]] = []
        self._digest_task: asyncio.Task[None] | None = None

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
        for background in (self._snapshot_task, self._digest_task):
            if background is not None:
                background.cancel()
                await asyncio.gather(background, return_exceptions=True)

    # -- writing --------------------------------------------------------------------------------

    async def submit(self, command: cmd.Command[R]) -> R:
        """Applies a command in the next batch and returns its result once the batch is durable,
        or raises its CoreError (Unavailable when the store could not be written)."""
        if self.role is not Role.LEADER:
            raise Unavailable(self.standby_message())
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._inbox.put_nowait(_Submission(command, future))
        return await future

    async def _run(self) -> None:
        """Applies batches until the lease is lost (a None in the inbox) or the journal refuses
        one (`_Deposed`)."""
        while True:
            self._writer_beat_s = time.monotonic()
            batch = await self._next_batch()
            if batch is None:
                return
            try:
                await self._process(batch)
            except (_Deposed, asyncio.CancelledError):
                raise
            except Exception as bug:  # never let one batch end the writer
                log.exception("a batch failed")
                for submission in batch:
                    if not submission.future.done():
                        submission.future.set_exception(Internal(f"the router failed: {bug!r}"))

    async def _next_batch(self) -> list[_Submission] | None:
        timeout_s = IDLE_WAKE_S
        next_timer_ms = self.engine.next_timer_ms()
        if next_timer_ms is not None:
            timeout_s = min(timeout_s, max(0.0, (next_timer_ms - self.clock.now_ms()) / 1000))
        try:
            first = await asyncio.wait_for(self._inbox.get(), timeout_s)
        except TimeoutError:
            return [_Submission(cmd.Tick(), asyncio.get_running_loop().create_future())]
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
        self._in_batch = True
        outcomes: _Outcomes = []
        try:
            now_ms = max(self.clock.now_ms(), self.engine.now_ms)
            outcomes, applied = self._apply(batch, now_ms)
            commands = tuple(applied)
            events = self.engine.take_events()
            if self._durability is not None and any(_is_bug(f) for _, _, f in outcomes):
                await self._drop_batch_with_a_bug(outcomes)
                return
            if self._durability is not None and _worth_journaling(commands, events):
                shortfall = await self._journal_durably(
                    codec.Batch(now_ms, commands), outcomes, events
                )
                if shortfall is not None:
                    _fail_unanswered(outcomes, shortfall)
            _answer(outcomes)
            self._publish(events)
            await self._snapshot_if_due()
        except asyncio.CancelledError:
            # Cancelled mid-write (a stuck writer): the batch is not known to be journaled.
            _fail_unanswered(outcomes, Unavailable("the router stepped down; retry"))
            raise
        finally:
            self._in_batch = False
            waiters, self._boundary_waiters = self._boundary_waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def _journal_durably(
        self, batch: codec.Batch, outcomes: _Outcomes, events: list[Event]
    ) -> Unavailable | None:
        """Journals the batch (and waits for the replicas the operator asks for). Returns the
        error its callers get when too few replicas acknowledged it in time; raises _Deposed
        when the journal refused it or could not be written."""
        durability = self._durability
        assert durability is not None
        try:
            await self._journal(batch)
        except FencedError as error:
            # The engine holds the batch; whether it may stand depends on the store (see
            # `_stepped_down`): its callers wait for that verdict.
            raise _Deposed(str(error), _Unjournaled(outcomes, events)) from error
        except (RedisError, OSError) as error:
            log.warning("the journal could not be written (%s): stepping down", error)
            _fail_unanswered(
                outcomes,
                Unavailable(
                    f"the router could not journal the request ({error}); it is not confirmed: "
                    "retry (a create with the same client_request_id is never doubled)"
                ),
            )
            raise _Deposed(f"the journal could not be written: {error}") from error
        wanted = durability.min_replicas_acked
        if wanted <= 0:
            return None
        try:
            acknowledged = await durability.journal.wait_for_replicas(
                wanted, REPLICA_ACK_TIMEOUT_MS
            )
        except (RedisError, OSError) as error:
            acknowledged, reason = 0, f" ({error})"
        else:
            reason = ""
        if acknowledged >= wanted:
            return None
        self.metrics.replica_shortfalls.inc()
        return Unavailable(
            f"the request was journaled but only {acknowledged} of the {wanted} replicas asked "
            f"for acknowledged it within {REPLICA_ACK_TIMEOUT_MS} ms{reason}: it is not "
            "confirmed; retry (a create with the same client_request_id is never doubled)"
        )

    def _apply(self, batch: list[_Submission], now_ms: int) -> tuple[_Outcomes, list[cmd.Command]]:
        """Applies the batch; returns each caller's outcome and the commands applied, in the
        form the journal keeps (so that a replay sees the same values)."""
        outcomes: _Outcomes = []
        applied: list[cmd.Command] = []
        for submission in batch:
            started_ns = time.perf_counter_ns()
            result: Any = None
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

    async def _drop_batch_with_a_bug(self, outcomes: _Outcomes) -> None:
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
            codec.encode_batch(batch), self._durability.lease.token, after_id=self._last_entry_id
        )
        self.journaled_batches += 1
        self._commands_since_snapshot += len(batch.commands)
        self._freeze_heap_if_due(len(batch.commands))

    def _freeze_heap_if_due(self, commands: int) -> None:
        """Keeps Python's full garbage collections short. The engine's state is a large heap
        that lives long, and a full collection walks all of it (0.5 s at 100k waiting tasks,
        measured). `gc.freeze()` takes every object alive now out of the collector's reach, so
        that collections walk only what was made since; objects freed by reference counting
        still go at once. Collecting first (only the unfrozen objects: milliseconds) keeps the
        cyclic garbage of the last interval from being frozen with the state."""
        self._commands_since_freeze += commands
        if self._commands_since_freeze >= FREEZE_EVERY_COMMANDS:
            self._commands_since_freeze = 0
            gc.collect()
            gc.freeze()

    # -- snapshots ------------------------------------------------------------------------------

    def request_snapshot(self) -> None:
        """Takes a snapshot at the end of the next batch (or idle wake), as if one were due
        (`switchboard serve` does this on SIGUSR1)."""
        self._snapshot_requested = True

    async def _snapshot_if_due(self) -> None:
        """Every `snapshot_every_commands` (or on request), forks a child that encodes the
        engine as it is now and hands it to a background save; the writer pauses only for the
        fork."""
        durability = self._durability
        if (
            durability is None
            or self._snapshot_task is not None
            or not (
                self._snapshot_requested
                or self._commands_since_snapshot >= durability.snapshot_every_commands
            )
        ):
            return
        self._commands_since_snapshot = 0
        self._snapshot_requested = False
        await self._start_snapshot(durability)

    async def _start_snapshot(self, durability: Durability) -> None:
        started_s = time.perf_counter()
        through_id, token = self._last_entry_id, durability.lease.token
        encoded: bytes | ForkedChild
        if fork_is_safe():
            encoded = await fork_child(functools.partial(snapshot.take, self.engine))
        else:
            encoded = snapshot.take(self.engine)  # the writer pays for the encoding
        self.metrics.snapshot_seconds.labels("writer").observe(time.perf_counter() - started_s)
        self._snapshot_task = asyncio.create_task(
            self._save_snapshot(durability, encoded, through_id, token, started_s),
            name="router-snapshot",
        )

    async def _save_snapshot(
        self,
        durability: Durability,
        encoded: bytes | ForkedChild,
        through_id: str,
        token: str,
        started_s: float,
    ) -> None:
        data = encoded if isinstance(encoded, bytes) else encoded.chunks(SNAPSHOT_CHUNK_BYTES)
        try:
            size = await durability.journal.save_snapshot(data, through_id, token)
        except (RedisError, OSError, FencedError, ForkedError) as error:
            log.warning("a snapshot could not be saved (%s); the journal keeps everything", error)
        else:
            elapsed_s = time.perf_counter() - started_s
            self.metrics.snapshot_seconds.labels("background").observe(elapsed_s)
            self.metrics.snapshot_bytes.set(size)
            log.info("snapshot of %d bytes through %s in %.2f s", size, through_id, elapsed_s)
        finally:
            if isinstance(encoded, ForkedChild):
                await encoded.close()
            self._snapshot_task = None

    async def _cancel_snapshot(self) -> None:
        task = self._snapshot_task
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _write_state_back(self, durability: Durability, through_id: str) -> int:
        """Saves the engine as the store's snapshot through `through_id` (this router leads):
        after the store came back behind, this router's state is the authority."""
        token = durability.lease.token
        # The snapshot first: once it is current the store is no longer behind, so an attempt
        # cut short after it is not repeated over a store that already holds the state.
        if fork_is_safe():
            child = await fork_child(functools.partial(snapshot.take, self.engine))
            try:
                size = await durability.journal.save_snapshot(
                    child.chunks(SNAPSHOT_CHUNK_BYTES), through_id, token
                )
            finally:
                await child.close()
        else:
            size = await durability.journal.save_snapshot(
                snapshot.take(self.engine), through_id, token
            )
        await durability.journal.raise_position(through_id, token)
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
                while self._in_batch:  # a batch applied but not yet journaled is not state
                    await self._batch_boundary()
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
        engine, batches = self.engine, self.journaled_batches
        if not fork_is_safe():
            return StateDigest(engine.digest(), len(engine.tasks), len(engine.workers), batches)
        encoded = await run_forked(
            lambda: f"{engine.digest()} {len(engine.tasks)} {len(engine.workers)}".encode()
        )
        digest, tasks, workers = encoded.decode().split()
        return StateDigest(digest, int(tasks), int(workers), batches)

    async def _batch_boundary(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._boundary_waiters.append(waiter)
        await waiter

    # -- leadership -----------------------------------------------------------------------------

    async def _lead_or_follow(self) -> None:
        """Standby until the lease is won, leader until it is lost, and so on."""
        follow = True
        while True:
            if follow:
                await self._follow_until_leader()
            deposed = await self._lead()
            self.metrics.lease_losses.inc()
            follow = not await self._stepped_down(deposed)

    async def _lead(self) -> _Deposed:
        """Leads until the lease is lost or the journal refuses a batch; says why it ended."""
        assert self._durability is not None
        durability = self._durability
        loop = asyncio.get_running_loop()

        def on_lost(reason: str) -> None:  # called from the keeper's thread
            loop.call_soon_threadsafe(self._lease_lost, reason)

        keeper = durability.lease.keeper(
            durability.lease_client(),
            acquired_at_s=self._acquired_at_s,
            writer_alive=self._writer_alive,
            on_lost=on_lost,
        )
        keeper.start()
        self._lease_lost_reason = ""
        self._writer_beat_s = time.monotonic()
        writer = self._writer = asyncio.create_task(self._run(), name="router-leader")
        try:
            await writer
            return _Deposed(self._lease_lost_reason or "the lease was lost")
        except _Deposed as deposed:
            return deposed
        finally:
            keeper.stop()
            if self._stuck_writer_timer is not None:
                self._stuck_writer_timer.cancel()
            if not writer.done():  # this task was cancelled (the router stops)
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
            self._writer = None
            await self._cancel_snapshot()

    def _writer_alive(self) -> bool:
        return time.monotonic() - self._writer_beat_s < WRITER_STUCK_AFTER_S

    def _lease_lost(self, reason: str) -> None:
        """The keeper saw the lease go: the writer finishes its batch (whose journal write the
        fencing token refuses if the lease is truly gone) and stops."""
        if self._lease_lost_reason:
            return
        self._lease_lost_reason = reason
        self._inbox.put_nowait(None)
        self._stuck_writer_timer = asyncio.get_running_loop().call_later(
            STEP_DOWN_GRACE_S, self._cancel_stuck_writer
        )

    def _cancel_stuck_writer(self) -> None:
        if self._writer is not None and not self._writer.done():
            log.warning("the writer did not stop within %g s: cancelling it", STEP_DOWN_GRACE_S)
            self._writer.cancel()

    async def _stepped_down(self, deposed: _Deposed) -> bool:
        """After the leadership was lost: if the store came back behind this router's state
        (restarted empty, or from an older copy), write the state back and lead again (True).
        Otherwise rebuild the engine from the store and follow the leader (False)."""
        assert self._durability is not None
        durability = self._durability
        log.warning("lost the leadership (%s): now a standby", deposed.reason)
        durability.lease.forget()
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            self.leader_address = await asyncio.wait_for(durability.lease.leader_address(), 1.0)
        await self._set_role(Role.STANDBY)
        self._refuse_waiting(Unavailable(self.standby_message()))
        unjournaled = deposed.unjournaled
        try:
            while True:
                try:
                    store_at, behind = await self._store_behind()
                    if not behind:
                        break
                    if await self._reclaim(durability, store_at):
                        if unjournaled is not None:  # written back with the state: durable
                            _answer(unjournaled.outcomes)
                            self._publish(unjournaled.events)
                            unjournaled = None
                        return True
                    # Another router holds the lease on the older store.
                    leader = await durability.lease.leader_address()
                    if leader:
                        log.error(
                            "the store lost entries this router held (store at %s, this router "
                            "at %s) and %s leads from it: following it, the lost entries are "
                            "gone",
                            store_at, self._last_entry_id, leader,
                        )  # fmt: skip
                        self.metrics.store_behind.labels("superseded").inc()
                        break
                except (RedisError, OSError, FencedError, ForkedError) as error:
                    log.warning("the store is unreachable (%s); retrying", error)
                await asyncio.sleep(STORE_RETRY_S)
        finally:
            if unjournaled is not None:
                _fail_unanswered(
                    unjournaled.outcomes,
                    Unavailable("the router lost the leadership before journaling this; retry"),
                )
        # Even a writer that stopped cleanly may have applied ticks that were not journaled
        # (they fired nothing) and moved the engine's clock past the new leader's batches.
        await self._recover()
        return False

    async def _store_behind(self) -> tuple[str, bool]:
        """The store's position, and whether it is behind what this router holds: its journal
        ends before this router's last entry, or its epoch counter went below one this router
        has seen (it restarted empty, or came back from an older copy)."""
        assert self._durability is not None
        store_at = await self._durability.journal.position()
        ours = self._last_entry_id or "0"
        behind = entry_key(store_at) < entry_key(ours)
        if ours != "0" and not behind:
            epoch = await self._durability.lease.stored_epoch()
            behind = epoch < self._durability.lease.highest_epoch
        return store_at, behind

    async def _reclaim(self, durability: Durability, store_at: str) -> bool:
        """Takes the lease back and writes this router's state over a store that lost some of
        it. False when another router holds the lease."""
        acquired_at_s = time.monotonic()
        if not await durability.lease.try_acquire():
            return False
        milliseconds, sequence = entry_key(self._last_entry_id or "0")
        # A position past every entry this router applied: standbys that applied them all
        # still reload the written-back state, which may hold one batch more.
        through_id = f"{milliseconds}-{sequence + 1}"
        try:
            size = await self._write_state_back(durability, through_id)
        except BaseException:
            with contextlib.suppress(RedisError, OSError):
                await durability.lease.release()
            raise
        self._last_entry_id = through_id
        self._commands_since_snapshot = 0
        self._acquired_at_s = acquired_at_s
        self.metrics.store_behind.labels("written_back").inc()
        log.error(
            "the store came back behind this router (store at %s, this router at %s): wrote "
            "this router's state back (%d bytes, through %s) and leads on",
            store_at, self._last_entry_id, size, through_id,
        )  # fmt: skip
        self.leader_address = ""
        await self._set_role(Role.LEADER)
        return True

    async def _follow_until_leader(self) -> None:
        """Keeps the engine up to date with the journal; returns once this router leads."""
        assert self._durability is not None
        lease = self._durability.lease
        block_ms = max(50, lease.ttl_ms // 2)
        while True:
            try:
                acquired_at_s = time.monotonic()
                if await lease.try_acquire():
                    await self._catch_up(block_ms=None)
                    if await self._refuses_to_lead():
                        await asyncio.sleep(REFUSED_LEAD_RETRY_S)
                        continue
                    self._acquired_at_s = acquired_at_s
                    self.leader_address = ""
                    log.warning("leading (lease %s)", lease.token)
                    await self._set_role(Role.LEADER)
                    return
                self.leader_address = await lease.leader_address()
                await self._catch_up(block_ms=block_ms)
            except (RedisError, OSError) as error:
                log.warning("the store is unreachable (%s); retrying", error)
                await asyncio.sleep(STORE_RETRY_S)

    async def _refuses_to_lead(self) -> bool:
        """A standby that won the lease on a store behind what it had applied does not lead
        from it (that would silently drop acknowledged work): it gives the lease back, so that
        the leader which holds the lost entries can write them back."""
        store_at, behind = await self._store_behind()
        if not behind:
            return False
        assert self._durability is not None
        await self._durability.lease.release()
        self.metrics.store_behind.labels("refused_to_lead").inc()
        log.error(
            "refusing to lead: the store is behind what this standby applied (store at %s, this "
            "router at %s): it restarted empty or from an older copy. Waiting for the leader to "
            "write its state back; restart this router to accept the store as it is",
            store_at, self._last_entry_id,
        )  # fmt: skip
        return True

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
        if through_id is not None and entry_key(through_id) > entry_key(self._last_entry_id):
            await self._recover()  # what this router had not read may have been trimmed
            return
        for done, (entry_id, data) in enumerate(entries, start=1):
            self._apply_journaled(data)
            self._last_entry_id = entry_id
            if done % CATCH_UP_YIELD_ENTRIES == 0:
                await asyncio.sleep(0)

    def _apply_journaled(self, data: bytes) -> None:
        batch = codec.decode_batch(data)
        for command in batch.commands:
            with contextlib.suppress(CoreError):
                self.engine.apply(command, batch.now_ms)
        self._publish(self.engine.take_events(), to_streams=False)

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
            if submission is not None and not submission.future.done():
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
        """Ends every agent stream UNAVAILABLE, naming the leader when known, so that agents
        reconnect to it: a router that stepped down receives no events to forward."""
        leader = self.leader_address
        to_leader = f" to the leader at {leader}" if leader else " to the leader"
        end = StreamEnd(f"this router stopped leading; reconnect{to_leader}", leader)
        for streams in self._worker_streams.values():
            for stream in streams:
                stream.put_nowait(end)
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


def _answer(outcomes: _Outcomes) -> None:
    for future, result, failure in outcomes:
        if future.done():  # the caller went away
            continue
        if failure is not None:
            future.set_exception(failure)
        else:
            future.set_result(result)


def _fail_unanswered(outcomes: _Outcomes, error: Exception) -> None:
    for future, _, _ in outcomes:
        if not future.done():
            future.set_exception(error)


def _is_bug(failure: Exception | None) -> bool:
    return isinstance(failure, Internal)


def _worth_journaling(commands: tuple[cmd.Command, ...], events: list[Event]) -> bool:
    """A batch of ticks that fired nothing changed nothing a replay would not redo."""
    return bool(events) or any(not isinstance(c, cmd.Tick) for c in commands)


def _worker_of(event: Event) -> str:
    reservation = getattr(event, "reservation", None)
    return reservation.worker_id if reservation is not None else ""
