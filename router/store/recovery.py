"""Recovery: the latest snapshot, then every journaled batch after it, applied in order.

The work runs in a worker thread on an engine nobody else sees yet, so that a router recovering
hundreds of thousands of tasks still answers health checks and refuses calls promptly (the loop
gets the interpreter back every few milliseconds) instead of freezing for the whole load."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from router.core import replay as core_replay
from router.core import snapshot
from router.core.engine import Engine
from router.core.events import Event
from router.store.formats import check_snapshot_version, decode_entry
from router.store.protocols import Journal

__all__ = ["REPLAY_CHUNK_ENTRIES", "Recovered", "recover", "replay"]

REPLAY_CHUNK_ENTRIES = 1000
"""Journal entries read from the store and applied per step of the replay."""


@dataclass(slots=True)
class Recovered:
    engine: Engine
    last_entry_id: str
    """The last journal entry applied ("0" when the journal was empty)."""
    replayed_batches: int


async def recover(journal: Journal) -> Recovered:
    """The engine the store holds: its snapshot restored, then the journal after it replayed.
    Raises the store's errors, and UnreadableFormat for a snapshot or entry of a format this
    router cannot read."""
    stored = await journal.load_snapshot()
    if stored is not None:
        check_snapshot_version(stored.data, stored.through_id)
    with _collector_paused():
        engine = (
            await asyncio.to_thread(snapshot.restore, stored.data)
            if stored is not None
            else Engine()
        )
        last_entry_id = stored.through_id if stored is not None else "0"
        replayed = 0
        entries: list[tuple[str, bytes]] = []
        async for entry in journal.entries_after(last_entry_id):
            entries.append(entry)
            if len(entries) == REPLAY_CHUNK_ENTRIES:
                await asyncio.to_thread(replay, engine, entries)
                replayed, last_entry_id = replayed + len(entries), entries[-1][0]
                entries = []
        if entries:
            await asyncio.to_thread(replay, engine, entries)
            replayed, last_entry_id = replayed + len(entries), entries[-1][0]
    # The recovered state lives on: keep the collector's full passes from walking it again.
    gc.freeze()
    return Recovered(engine, last_entry_id, replayed)


def replay(
    engine: Engine,
    entries: list[tuple[str, bytes]],
    *,
    on_events: Callable[[list[Event]], None] | None = None,
) -> None:
    """Applies journal entries (id, bytes) to an engine, as the live router applied them."""
    core_replay.replay(
        engine, (decode_entry(data, entry_id) for entry_id, data in entries), on_events=on_events
    )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pauses Python's cyclic garbage collector during a bulk load: the load creates a million
    objects that all live on, and the full collections they would trigger find nothing to free
    yet cost more than the load itself (measured: 100k tasks restore in 1.2 s instead of 2.7)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
