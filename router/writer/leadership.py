"""Leadership: standby until the lease is won, leader until it is lost, and so on.

A standby keeps its engine up to date by tailing the journal, so that it can lead at once. A
leader runs the writer while a keeper renews the lease off the loop; when the lease is lost (or
the journal refuses a batch) the writer finishes its batch and stops, and the router steps down:
it rebuilds its engine from the store and follows the new leader, unless the store came back
behind what this router holds (restarted empty, or from an older copy), in which case it writes
its own state back and leads on. A standby never leads from a store behind what it applied."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from enum import Enum

from router.core.errors import Unavailable
from router.core.events import Event
from router.core.replay import replay
from router.obs.metrics import RouterMetrics
from router.store.errors import Fenced, StoreUnavailable
from router.store.forked import ForkedError
from router.store.formats import decode_entry
from router.store.protocols import WRITER_STUCK_AFTER_S, Journal, Lease, entry_key, next_entry_id
from router.store.recovery import recover
from router.writer.batches import BatchWriter, Deposed, answer, fail_unanswered
from router.writer.fanout import Fanout
from router.writer.housekeeping import Housekeeping

__all__ = [
    "CATCH_UP_YIELD_ENTRIES", "REFUSED_LEAD_RETRY_S", "STEP_DOWN_GRACE_S", "STORE_RETRY_S",
    "WRITER_STUCK_AFTER_S", "Leadership", "Role", "RoleListener",
]  # fmt: skip

log = logging.getLogger(__name__)

STORE_RETRY_S = 0.5
REFUSED_LEAD_RETRY_S = 2.0
"""A standby that refused to lead from a store behind it tries again after this long."""
STEP_DOWN_GRACE_S = 6.0
"""How long a writer that lost its lease may finish its batch (a journal write times out after
5 s) before it is cancelled."""
CATCH_UP_YIELD_ENTRIES = 32
"""A standby lets the loop run between this many journal entries applied."""


class Role(Enum):
    LEADER = "leader"
    """Holds the lease: applies commands, journals them, serves."""
    STANDBY = "standby"
    """Tails the journal into an up-to-date copy; refuses calls; takes over when it can."""


RoleListener = Callable[[Role], Awaitable[None]]


class Leadership:
    """Leads, follows and steps down for one writer, over a journal and its lease."""

    def __init__(
        self,
        writer: BatchWriter,
        housekeeping: Housekeeping,
        fanout: Fanout,
        metrics: RouterMetrics,
        *,
        journal: Journal,
        lease: Lease,
    ) -> None:
        self._writer = writer
        self._housekeeping = housekeeping
        self._fanout = fanout
        self._metrics = metrics
        self._journal = journal
        self._lease = lease
        self.role = Role.STANDBY
        self.leader_address = ""
        """Where the leader is, as the lease says (empty when unknown or this router leads)."""
        self._role_listeners: list[RoleListener] = []
        self._lease_lost_reason = ""
        self._writer_task: asyncio.Task[None] | None = None
        self._stuck_writer_timer: asyncio.TimerHandle | None = None
        self._acquired_at_s = 0.0

    def add_role_listener(self, listener: RoleListener) -> None:
        self._role_listeners.append(listener)

    def standby_message(self) -> str:
        if self.leader_address:
            return f"this router is a standby; the leader is at {self.leader_address}"
        return "this router is a standby; no leader is known yet"

    async def release_lease(self) -> None:
        """Gives up the lease (on a clean stop), so that a standby need not wait for it to
        expire."""
        with contextlib.suppress(StoreUnavailable):
            await self._lease.release()

    async def run(self) -> None:
        """Standby until the lease is won, leader until it is lost, and so on (until
        cancelled)."""
        follow = True
        while True:
            if follow:
                await self._follow_until_leader()
            deposed = await self._lead()
            self._metrics.lease_losses.inc()
            follow = not await self._stepped_down(deposed)

    # -- leading --------------------------------------------------------------------------------

    async def _lead(self) -> Deposed:
        """Leads until the lease is lost or the journal refuses a batch; says why it ended."""
        loop = asyncio.get_running_loop()

        def on_lost(reason: str) -> None:  # called from the keeper's thread
            loop.call_soon_threadsafe(self._lease_lost, reason)

        keeper = self._lease.keeper(
            acquired_at_s=self._acquired_at_s, writer_alive=self._writer_alive, on_lost=on_lost
        )
        keeper.start()
        self._lease_lost_reason = ""
        self._writer.beat_s = time.monotonic()
        writer = self._writer_task = asyncio.create_task(self._writer.run(), name="router-leader")
        try:
            await writer
            return Deposed(self._lease_lost_reason or "the lease was lost")
        except Deposed as deposed:
            return deposed
        finally:
            keeper.stop()
            if self._stuck_writer_timer is not None:
                self._stuck_writer_timer.cancel()
            if not writer.done():  # this task was cancelled (the router stops)
                writer.cancel()
                await asyncio.gather(writer, return_exceptions=True)
            self._writer_task = None
            await self._housekeeping.cancel_snapshot()

    def _writer_alive(self) -> bool:
        return time.monotonic() - self._writer.beat_s < WRITER_STUCK_AFTER_S

    def _lease_lost(self, reason: str) -> None:
        """The keeper saw the lease go: the writer finishes its batch (whose journal write the
        fencing token refuses if the lease is truly gone) and stops."""
        if self._lease_lost_reason:
            return
        self._lease_lost_reason = reason
        self._writer.stop_after_batch()
        self._stuck_writer_timer = asyncio.get_running_loop().call_later(
            STEP_DOWN_GRACE_S, self._cancel_stuck_writer
        )

    def _cancel_stuck_writer(self) -> None:
        if self._writer_task is not None and not self._writer_task.done():
            log.warning("the writer did not stop within %g s: cancelling it", STEP_DOWN_GRACE_S)
            self._writer_task.cancel()

    # -- stepping down --------------------------------------------------------------------------

    async def _stepped_down(self, deposed: Deposed) -> bool:
        """After the leadership was lost: if the store came back behind this router's state
        (restarted empty, or from an older copy), write the state back and lead again (True).
        Otherwise rebuild the engine from the store and follow the leader (False)."""
        log.warning("lost the leadership (%s): now a standby", deposed.reason)
        self._lease.forget()
        with contextlib.suppress(StoreUnavailable, TimeoutError):
            self.leader_address = await asyncio.wait_for(self._lease.leader_address(), 1.0)
        await self._set_role(Role.STANDBY)
        self._writer.refuse_waiting(Unavailable(self.standby_message()))
        unjournaled = deposed.unjournaled
        try:
            while True:
                try:
                    store_at, behind = await self._store_behind()
                    if not behind:
                        break
                    if await self._reclaim(store_at):
                        if unjournaled is not None:  # written back with the state: durable
                            answer(unjournaled.outcomes)
                            self._fanout.publish(unjournaled.events)
                            unjournaled = None
                        return True
                    # Another router holds the lease on the older store.
                    leader = await self._lease.leader_address()
                    if leader:
                        log.error(
                            "the store lost entries this router held (store at %s, this router "
                            "at %s) and %s leads from it: following it, the lost entries are "
                            "gone",
                            store_at, self._writer.last_entry_id, leader,
                        )  # fmt: skip
                        self._metrics.store_behind.labels("superseded").inc()
                        break
                except (StoreUnavailable, Fenced, ForkedError, OSError) as error:
                    log.warning("the store is unreachable (%s); retrying", error)
                await asyncio.sleep(STORE_RETRY_S)
        finally:
            if unjournaled is not None:
                fail_unanswered(
                    unjournaled.outcomes,
                    Unavailable("the router lost the leadership before journaling this; retry"),
                )
        # Even a writer that stopped cleanly may have applied ticks that were not journaled
        # (they fired nothing) and moved the engine's clock past the new leader's batches.
        await self.recover()
        return False

    async def _store_behind(self) -> tuple[str, bool]:
        """The store's position, and whether it is behind what this router holds: its journal
        ends before this router's last entry, or its epoch counter went below one this router
        has seen (it restarted empty, or came back from an older copy)."""
        store_at = await self._journal.position()
        ours = self._writer.last_entry_id or "0"
        behind = entry_key(store_at) < entry_key(ours)
        if ours != "0" and not behind:
            epoch = await self._lease.stored_epoch()
            behind = epoch < self._lease.highest_epoch
        return store_at, behind

    async def _reclaim(self, store_at: str) -> bool:
        """Takes the lease back and writes this router's state over a store that lost some of
        it. False when another router holds the lease."""
        acquired_at_s = time.monotonic()
        if not await self._lease.try_acquire():
            return False
        # A position past every entry this router applied: standbys that applied them all
        # still reload the written-back state, which may hold one batch more.
        through_id = next_entry_id(self._writer.last_entry_id or "0")
        try:
            size = await self._housekeeping.write_state_back(through_id)
        except BaseException:
            with contextlib.suppress(StoreUnavailable):
                await self._lease.release()
            raise
        self._writer.last_entry_id = through_id
        self._acquired_at_s = acquired_at_s
        self._metrics.store_behind.labels("written_back").inc()
        log.error(
            "the store came back behind this router (store at %s, this router at %s): wrote "
            "this router's state back (%d bytes, through %s) and leads on",
            store_at, self._writer.last_entry_id, size, through_id,
        )  # fmt: skip
        self.leader_address = ""
        await self._set_role(Role.LEADER)
        return True

    # -- following ------------------------------------------------------------------------------

    async def _follow_until_leader(self) -> None:
        """Keeps the engine up to date with the journal; returns once this router leads."""
        lease = self._lease
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
            except StoreUnavailable as error:
                log.warning("the store is unreachable (%s); retrying", error)
                await asyncio.sleep(STORE_RETRY_S)

    async def _refuses_to_lead(self) -> bool:
        """A standby that won the lease on a store behind what it had applied does not lead
        from it (that would silently drop acknowledged work): it gives the lease back, so that
        the leader which holds the lost entries can write them back."""
        store_at, behind = await self._store_behind()
        if not behind:
            return False
        await self._lease.release()
        self._metrics.store_behind.labels("refused_to_lead").inc()
        log.error(
            "refusing to lead: the store is behind what this standby applied (store at %s, this "
            "router at %s): it restarted empty or from an older copy. Waiting for the leader to "
            "write its state back; restart this router to accept the store as it is",
            store_at, self._writer.last_entry_id,
        )  # fmt: skip
        return True

    async def _catch_up(self, *, block_ms: int | None) -> None:
        """Applies the journal entries this router has not applied yet: all of them
        (`block_ms` None), or one read waiting up to `block_ms` for the first. Reloads the
        snapshot when the journal was trimmed past this router's position."""
        journal, writer = self._journal, self._writer
        if block_ms is None:
            entries = [entry async for entry in journal.entries_after(writer.last_entry_id)]
        else:
            entries = await journal.tail(writer.last_entry_id, block_ms)
        through_id = await journal.load_snapshot_through_id()
        if through_id is not None and entry_key(through_id) > entry_key(writer.last_entry_id):
            await self.recover()  # what this router had not read may have been trimmed
            return
        for done, (entry_id, data) in enumerate(entries, start=1):
            replay(writer.engine, [decode_entry(data, entry_id)], on_events=self._counted)
            writer.last_entry_id = entry_id
            if done % CATCH_UP_YIELD_ENTRIES == 0:
                await asyncio.sleep(0)

    def _counted(self, events: list[Event]) -> None:
        self._fanout.publish(events, to_streams=False)

    async def _set_role(self, role: Role) -> None:
        self.role = role
        if role is Role.STANDBY:
            self._fanout.end_all(self.leader_address)
        for listener in self._role_listeners:
            await listener(role)

    async def recover(self) -> None:
        """Replaces the engine with the durable state; retries until the store answers,
        refusing what arrives meanwhile."""
        while True:
            try:
                recovered = await recover(self._journal)
            except StoreUnavailable as error:
                log.warning("recovery from the store failed (%s); retrying", error)
                self._writer.refuse_waiting(
                    Unavailable(f"the router's store is unreachable: {error}")
                )
                await asyncio.sleep(STORE_RETRY_S)
                continue
            self._writer.adopt(recovered.engine, recovered.last_entry_id)
            log.warning("recovered from the store: %d batches replayed", recovered.replayed_batches)
            return
