"""The store's contract: what the writer, the standby and recovery need of a journal and of a
leadership lease, and what every implementation MUST guarantee. The Redis implementation
(`router.store.journal.RedisJournal`, `router.store.lease.RedisLease`) and the in-memory one
(`router.store.memory`) both pass one suite that checks every MUST below
(`tests/contract/test_store_contract.py`).

Entry ids are strings "ms-seq" (`entry_key` orders them); "0" stands for "before every entry".
Failures are the store-neutral errors of `router.store.errors`: `Fenced` when a write is
refused, `StoreUnavailable` when the store cannot be reached or fails (a write that raises it
may or may not have landed), never an implementation's own error type."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "SNAPSHOT_CHUNK_BYTES", "WRITER_STUCK_AFTER_S", "EventRetention", "Journal", "Keeper", "Lease",
    "StoredSnapshot", "entry_key", "epoch_of", "next_entry_id",
]  # fmt: skip

SNAPSHOT_CHUNK_BYTES = 512 * 1024
"""Size of one piece of a snapshot as it is saved: small enough that a journal append waits
little behind one (Redis runs one command at a time, and with `appendfsync always` writes and
fsyncs a piece in one turn of its event loop)."""
WRITER_STUCK_AFTER_S = 10.0
"""A writer that has not finished a batch nor woken up idle for this long is stuck: its lease is
no longer renewed, so that a standby takes over. Longer than any legitimate pause (the longest
journal write times out after 5 s), short enough that a stuck leader does not hold a center
hostage."""


@dataclass(frozen=True, slots=True)
class EventRetention:
    """How long the journal keeps the event feed (`--event-retention`), and how much of it: the
    events of a batch are dropped once older than `age_ms` (by the store's clock, the time in
    their entry id) or once `entries_max` newer batches with events are held."""

    age_ms: int = 7 * 24 * 3600 * 1000
    entries_max: int = 1_000_000


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    data: bytes
    through_id: str
    """The last journal entry the snapshot includes."""


def entry_key(entry_id: str) -> tuple[int, int]:
    """A journal entry id ("ms-seq") as a sortable pair; "0" sorts first."""
    milliseconds, _, sequence = entry_id.partition("-")
    return int(milliseconds), int(sequence or 0)


def next_entry_id(entry_id: str) -> str:
    """The smallest entry id after `entry_id`."""
    milliseconds, sequence = entry_key(entry_id)
    return f"{milliseconds}-{sequence + 1}"


class Journal(Protocol):
    """The ordered log of journaled batches (opaque bytes) and the latest snapshot.

    - MUST (atomic, fenced append): `append` stores the batch whole or not at all, and only if
      `token` holds the lease at that instant: a deposed token never writes, not even once.
    - MUST (the writer's end): with `after_id` given, `append` stores only if the journal ends
      at `after_id` (its last entry, or the snapshot's `through_id` when that is later); else it
      raises `Fenced` and gives the lease up, so that the writer steps down and finds out what
      the store lost.
    - MUST (once): an `append` whose `append_id` is the id of the journal's last entry stores
      nothing and returns that entry's id (a retry after a lost reply is kept once).
    - MUST (order): entry ids only move forward: each append's id is greater than every id the
      journal ever gave, trimmed or not, and greater than the position raised by
      `raise_position`; `position()` never goes back.
    - MUST (read after append): once `append` has returned, `entries_after` and `tail` of any
      earlier id return the entry, with its bytes unchanged, in append order.
    - MUST (all or nothing snapshots): `save_snapshot` makes the new snapshot current only once
      every piece is stored, in one fenced step; until then (and forever, if it fails, is fenced
      or its pieces raise) `load_snapshot` returns the previous one, whole.
    - MUST (trim): making a snapshot through `through_id` current drops only entries at or
      before `through_id`; no entry after the latest snapshot is ever dropped.
    - MUST (events with their batch): `append` with `events` stores them under the entry's id
      in the same atomic, fenced step: they exist if and only if the entry was appended (a
      retry kept once keeps them once). They are kept apart from the journal (snapshots do
      not trim them), by the retention alone: oldest first, so what `events_from` returns is
      always every event entry from the oldest held on, with none missing.
    """

    async def append(
        self,
        batch: bytes,
        token: str,
        *,
        after_id: str | None = None,
        append_id: str = "",
        events: bytes = b"",
    ) -> str:
        """Appends `batch`, and `events` (when not empty) under the same id (see the MUSTs);
        returns its entry id once the store has it."""
        ...

    async def events_from(self, entry_id: str, count: int) -> list[tuple[str, bytes]]:
        """Up to `count` event entries (id, events) from `entry_id` on (inclusive; "0" for the
        oldest held), in order."""
        ...

    async def events_oldest(self) -> str:
        """The id of the oldest event entry held ("0" when none is)."""
        ...

    async def wait_for_replicas(self, replicas: int, timeout_ms: int) -> int:
        """How many replicas hold every write so far, waiting up to `timeout_ms` for `replicas`
        of them (0 for a store without replicas)."""
        ...

    def entries_after(self, entry_id: str) -> AsyncIterator[tuple[str, bytes]]:
        """The entries after `entry_id` ("0" for all), in order, as (id, bytes)."""
        ...

    async def tail(self, after_id: str, block_ms: int) -> list[tuple[str, bytes]]:
        """Some entries after `after_id` (at least one when there are any), waiting up to
        `block_ms` for the first."""
        ...

    async def save_snapshot(
        self, data: bytes | AsyncIterable[bytes], through_id: str, token: str
    ) -> int:
        """Stores a snapshot through `through_id` (its bytes, or its pieces as they come) and
        trims the entries it includes, if `token` holds the lease throughout (else `Fenced`).
        Returns its size in bytes."""
        ...

    async def load_snapshot(self) -> StoredSnapshot | None:
        """The current snapshot, whole, or None when there is none."""
        ...

    async def load_snapshot_through_id(self) -> str | None:
        """The last entry the current snapshot includes, without loading it."""
        ...

    async def position(self) -> str:
        """The last entry the store holds or includes in its snapshot, or ever gave ("0" for
        none): a store that restarted empty or came back from an older copy is behind the
        routers that saw it further on."""
        ...

    async def raise_position(self, through_id: str, token: str) -> None:
        """Makes the next entry id follow `through_id` (fenced; a no-op when the journal is
        already past it): after a router wrote its state back as a snapshot through
        `through_id`, the journal goes on from there."""
        ...


class Keeper(Protocol):
    """Keeps a held lease alive until stopped, without the writer's event loop: a loop that is
    merely busy keeps the lease, a writer that makes no progress loses it."""

    def start(self) -> None: ...

    def stop(self) -> None:
        """Stops renewing (the lease then expires unless released)."""
        ...


class Lease(Protocol):
    """One router's claim to lead a workspace: at most one token holds it at a time, and the
    journal's writes check that token atomically.

    - MUST (exclusive): `try_acquire` succeeds only when no unexpired lease is held; the winner
      gets a token whose epoch (`epoch_of`) is greater than every epoch given before, and
      greater than `highest_epoch` (even on a store whose epoch counter went back).
    - MUST (expiry): a lease neither renewed nor released is free after `ttl_ms`; its old token
      then fails `renew` and is fenced by every journal write.
    - MUST (release): `release` frees the lease only if this token still holds it.
    - MUST (keeper): a `keeper` renews the lease while `writer_alive()`; it calls `on_lost`
      (from any thread) once, when the writer stops being alive, the lease was taken or expired,
      or the store stayed unreachable until the lease ran out.
    """

    address: str
    ttl_ms: int

    @property
    def token(self) -> str:
        """The fencing token while this router holds the lease, else empty."""
        ...

    @property
    def highest_epoch(self) -> int:
        """The highest epoch this router has seen."""
        ...

    async def try_acquire(self) -> bool: ...

    async def renew(self) -> bool:
        """Extends the lease once; False (and the token dropped) when it was lost."""
        ...

    async def release(self) -> None: ...

    def forget(self) -> None:
        """Drops the token after the lease was lost."""
        ...

    async def leader_address(self) -> str:
        """The address of the router holding the lease, or empty when none does."""
        ...

    async def stored_epoch(self) -> int:
        """The store's epoch counter (0 for a new or emptied store)."""
        ...

    def keeper(
        self,
        *,
        acquired_at_s: float,
        writer_alive: Callable[[], bool],
        on_lost: Callable[[str], None],
    ) -> Keeper:
        """A keeper of this lease (held now, acquired at monotonic `acquired_at_s`)."""
        ...


def epoch_of(token: str) -> int:
    """The tenure number in a lease value (`epoch|address`), 0 when there is none."""
    epoch, _, _ = token.partition("|")
    return int(epoch) if epoch.isdigit() else 0
