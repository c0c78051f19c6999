"""The router's service: the single writer and its parts, behind one face for the API.

Every change of state passes through one writer loop, in order (`router.writer.batches`):
callers `submit` commands; the loop applies each turn's commands as one batch, journals it, and
only then answers the callers and releases the batch's events to the agent streams
(`router.writer.fanout`). A durable router leads only while it holds the store's lease, and
otherwise follows the journal as a standby (`router.writer.leadership`); snapshots, digests,
the heap's freeze and the state metrics run beside it (`router.writer.housekeeping`). Reads are
served from the engine between batches."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from typing import TypeVar

from router.clock import Clock
from router.core import commands as cmd
from router.core.engine import Engine
from router.core.errors import CoreError, Unavailable
from router.obs.metrics import RouterMetrics
from router.privacy.customer_keys import CustomerKeys, MemoryWrappedKeys
from router.privacy.keyring import Keyring
from router.stopping import cancel_until_done
from router.store.protocols import Journal, Lease
from router.timeline.store import TimelineStore
from router.writer.batches import REPLICA_ACK_TIMEOUT_MS, BatchWriter
from router.writer.eventhub import LAG_EVENTS_MAX, Cursor, EventFilter, EventHub, Subscription
from router.writer.fanout import EndKind, Fanout, StreamEnd, WorkerStream
from router.writer.housekeeping import SNAPSHOT_EVERY_COMMANDS_DEFAULT, Housekeeping, StateDigest
from router.writer.leadership import Leadership, Role, RoleListener

R = TypeVar("R")
__all__ = [
    "REPLICA_ACK_TIMEOUT_MS",
    "SNAPSHOT_EVERY_COMMANDS_DEFAULT",
    "Durability",
    "EndKind",
    "Role",
    "RoleListener",
    "RouterService",
    "StateDigest",
    "StreamEnd",
    "WorkerStream",
]  # fmt: skip

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Durability:
    """Where batches are journaled, the lease that fences it, and how durable a batch must be."""

    journal: Journal
    lease: Lease
    last_entry_id: str
    """The journal entry the engine's state includes (from recovery)."""
    snapshot_every_commands: int = SNAPSHOT_EVERY_COMMANDS_DEFAULT
    min_replicas_acked: int = 0
    """Replicas that must acknowledge each batch (Redis WAIT) before it is answered."""


class RouterService:
    """Owns the engine; applies commands in batches; journals each batch (when durable) before
    it answers the callers and publishes the batch's events."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        metrics: RouterMetrics,
        durability: Durability | None = None,
        *,
        event_lag_max: int = LAG_EVENTS_MAX,
        customer_keys: CustomerKeys | None = None,
    ) -> None:
        """`event_lag_max`: how many events an event feed subscriber may fall behind;
        `customer_keys`: customers' data keys (default: in memory, with a new keyring)."""
        self.clock = clock
        self.customer_keys = customer_keys or CustomerKeys(
            MemoryWrappedKeys(), "default", Keyring.generate()
        )
        self.metrics = metrics
        self.timeline_store: TimelineStore | None = None
        """The customer timeline's Redis keys (None: a router in memory keeps no timeline);
        set by the server."""
        self._durability = durability
        journal = durability.journal if durability else None
        lease = durability.lease if durability else None
        self._fanout = Fanout(metrics, after_publish=self._observe_state_if_due)
        self._events = EventHub(
            metrics, journal, ring_events_max=2 * event_lag_max, lag_events_max=event_lag_max
        )
        self._writer = BatchWriter(
            engine, clock, metrics, journal=journal, lease=lease,
            last_entry_id=durability.last_entry_id if durability else "",
            min_replicas_acked=durability.min_replicas_acked if durability else 0,
            publish=self._fanout.publish, feed=self._events.publish, journaled=self._journaled,
            after_batch=self._after_batch, rebuild=self._rebuild,
        )  # fmt: skip
        self._housekeeping = Housekeeping(
            self._writer, metrics, journal=journal, lease=lease,
            snapshot_every_commands=(
                durability.snapshot_every_commands if durability
                else SNAPSHOT_EVERY_COMMANDS_DEFAULT
            ),
        )  # fmt: skip
        self._leadership: Leadership | None = None
        if journal is not None and lease is not None:
            self._leadership = Leadership(
                self._writer, self._housekeeping, self._fanout, metrics,
                journal=journal, lease=lease,
            )  # fmt: skip
            self._leadership.add_role_listener(self._role_changed)
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        """Presence commands issued when streams end (nobody waits for their answer)."""
        # derived_key's root until the workspace's id key is journaled (the first command).
        self._key_root = secrets.token_bytes(32)

    # -- the parts' hooks -----------------------------------------------------------------------

    def _observe_state_if_due(self) -> None:
        self._housekeeping.observe_state_if_due()

    async def _role_changed(self, role: Role) -> None:
        """The event feed follows the leadership: a new leader's ring starts after the last
        entry it applied; a router that stops leading ends its subscribers. Cached data keys
        never outlive a change of role: a customer may have been erased meanwhile."""
        self.customer_keys.forget_all()
        if role is Role.LEADER:
            self._events.lead(self._writer.last_entry_id or "0")
            # A new leader holds no streams: the workers the state says are connected get
            # their grace (the first command of its writer; a hello that follows cancels it).
            if self.engine.presence.connected_count():
                self._issue(cmd.AllPresenceLost())
        else:
            self._events.end_all(self.leader_address)

    def _journaled(self, commands: int) -> None:
        self._housekeeping.journaled(commands)

    async def _after_batch(self) -> None:
        self._fanout.watch(self._now_ms(), self._presence_timeout_ms())
        await self._housekeeping.snapshot_if_due()

    def _now_ms(self) -> int:
        return max(self.clock.now_ms(), self.engine.now_ms)

    def _presence_timeout_ms(self) -> int:
        return round(self.engine.presence.settings.presence_timeout_s * 1000)

    def _issue(self, command: cmd.Command[object]) -> None:
        """Submits a command nobody waits for (a refusal or an outage is only logged), queued
        at once: a new leader's AllPresenceLost goes before any hello that follows it."""
        task = asyncio.ensure_future(self._quietly(self._writer.enqueue(command), command))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _quietly(self, applied: asyncio.Future[object], command: cmd.Command[object]) -> None:
        try:
            await applied
        except (CoreError, Unavailable) as error:
            log.info("%s was not applied: %s", type(command).__name__, error)

    async def _rebuild(self) -> None:
        assert self._leadership is not None  # only a durable writer rebuilds
        await self._leadership.recover()

    # -- state ----------------------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        """The engine as of the latest batch (replaced on recovery: read it anew each time)."""
        return self._writer.engine

    @property
    def durable(self) -> bool:
        return self._durability is not None

    @property
    def journaled_batches(self) -> int:
        return self._writer.journaled_batches

    @property
    def role(self) -> Role:
        return self._leadership.role if self._leadership is not None else Role.LEADER

    @property
    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    @property
    def leader_address(self) -> str:
        """Where the leader is, as the lease says (empty when unknown or this router leads)."""
        return self._leadership.leader_address if self._leadership is not None else ""

    def derived_key(self, purpose: str) -> bytes:
        """A 32-byte key for one `purpose` (e.g. signing page tokens), derived by HMAC-SHA256
        from the workspace's journaled id key, so that every router of the workspace (a
        standby that takes over, a restarted one) derives the same one and no caller can.
        Before that key exists (no command yet) it is derived from a root of this process."""
        identifiers = self.engine.identifiers
        if identifiers.seeded:
            return identifiers.derived_key(purpose)
        return hmac.new(self._key_root, purpose.encode(), hashlib.sha256).digest()

    def standby_message(self) -> str:
        if self._leadership is None:
            return "this router is a standby; no leader is known yet"
        return self._leadership.standby_message()

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        main = self._writer.run() if self._leadership is None else self._leadership.run()
        self._task = asyncio.get_running_loop().create_task(main, name="router-writer")

    async def release_lease(self) -> None:
        """Gives up the lease (on a clean stop), so that a standby need not wait for it to
        expire."""
        if self._leadership is not None:
            await self._leadership.release_lease()

    def add_role_listener(self, listener: RoleListener) -> None:
        if self._leadership is not None:
            self._leadership.add_role_listener(listener)

    async def stop(self) -> None:
        for issued in list(self._background):
            issued.cancel()
        task, self._task = self._task, None
        if task is not None:
            await cancel_until_done(task)
        await self._housekeeping.stop()

    # -- writing --------------------------------------------------------------------------------

    async def submit(self, command: cmd.Command[R]) -> R:
        """Applies a command in the next batch and returns its result once the batch is durable,
        or raises its CoreError (Unavailable when the store could not be written)."""
        if not self.is_leader:
            raise Unavailable(self.standby_message())
        return await self._writer.submit(command)

    def request_snapshot(self) -> None:
        """Takes a snapshot at the end of the next batch (or idle wake), as if one were due
        (`switchboard serve` does this on SIGUSR1)."""
        self._housekeeping.request_snapshot()

    # -- reads that grow with the state ---------------------------------------------------------

    async def state_digest(self) -> StateDigest:
        """A digest of the state as journaled so far, computed off the writer's loop. Callers
        arriving together share one."""
        return await self._housekeeping.state_digest()

    # -- agent streams --------------------------------------------------------------------------

    def claim_worker_stream(self, worker_id: str) -> WorkerStream:
        """A new stream for the worker, its only live one: an older one is ended (replaced).
        It receives the worker's events from `subscribe_worker_stream` on."""
        return self._fanout.claim(worker_id, self._now_ms())

    def subscribe_worker_stream(self, stream: WorkerStream) -> None:
        self._fanout.subscribe(stream, self._presence_timeout_ms())

    def worker_stream_seen(self, stream: WorkerStream) -> None:
        """A message arrived on the stream (it proves the agent is there)."""
        stream.last_seen_ms = self._now_ms()

    def worker_stream_ended(self, stream: WorkerStream, *, presence_lost: bool) -> None:
        """Forgets an ended stream. When it was its worker's live one and ended without a
        goodbye (`presence_lost`), the worker's presence is lost: its grace starts."""
        if self._fanout.release(stream) and presence_lost and self.is_leader:
            with contextlib.suppress(RuntimeError):  # the loop is closing
                self._issue(cmd.PresenceLost(stream.worker_id))

    # -- the event feed -------------------------------------------------------------------------

    async def subscribe(
        self, *, after: Cursor | None, from_oldest: bool, event_filter: EventFilter
    ) -> Subscription:
        """A subscription to the feed's events after `after` (see `EventHub.subscribe`)."""
        return await self._events.subscribe(
            after=after, from_oldest=from_oldest, event_filter=event_filter
        )
