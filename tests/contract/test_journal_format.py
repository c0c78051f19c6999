"""The bytes the store keeps: a journal entry is framed from its commands' bytes as encoded at
submit, exactly as the journal always framed them, so that every journal written before replays
to the same state; an entry or snapshot of a format version this router cannot read is refused,
naming the version."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from router.core import codec, snapshot
from router.core.engine import Engine
from router.core.errors import CoreError
from router.core.replay import apply_batch, replay
from router.store.errors import UnreadableFormat
from router.store.formats import (
    check_snapshot_version,
    decode_entry,
    encode_entry,
    snapshot_version,
)
from router.store.memory import MemoryJournal, MemoryLease, MemoryStore
from router.store.recovery import recover
from tests.unit.test_simulation import run

V2_DATA = Path(__file__).parents[1] / "unit" / "fixtures" / "engine-v2.msgpack"
"""A version-2 snapshot and the journal (as `codec.encode_batch` wrote it) that made it."""


def test_an_entry_is_byte_for_byte_what_the_journal_always_wrote() -> None:
    _, log, _ = run(3, 150)
    for start in range(0, len(log), 7):
        commands = tuple(command for command, _ in log[start : start + 7])
        now_ms = log[start][1]
        old = codec.encode_batch(codec.Batch(now_ms, commands))
        assert encode_entry(now_ms, [codec.encode_command(c) for c in commands]) == old
        assert decode_entry(old) == codec.decode_batch(old)


def test_the_committed_journal_replays_through_the_store_to_its_snapshot() -> None:
    saved = msgspec.msgpack.decode(V2_DATA.read_bytes())
    restored = snapshot.restore(saved["snapshot"])
    assert snapshot_version(saved["snapshot"]) == 2
    check_snapshot_version(saved["snapshot"])

    async def recovered() -> Engine:
        store = MemoryStore()
        lease = MemoryLease(store, "a:1", 30)
        assert await lease.try_acquire()
        journal = MemoryJournal(store)
        for data in saved["journal"]:
            await journal.append(data, lease.token)
        return (await recover(journal)).engine

    assert asyncio.run(recovered()).digest() == restored.digest()


def test_apply_batch_gives_each_commands_outcome_in_order() -> None:
    engine = Engine()
    _, log, _ = run(4, 60)
    batch = codec.Batch(log[-1][1], tuple(command for command, _ in log))
    outcomes = apply_batch(engine, batch)
    assert len(outcomes) == len(batch.commands)
    assert any(isinstance(o, CoreError) for o in outcomes)  # refusals are outcomes
    replica = Engine()
    assert replay(replica, [batch]) == 1
    assert replica.digest() == engine.digest()


def test_a_bug_in_replay_is_raised() -> None:
    class Buggy(Engine):
        def apply(self, command: object, now_ms: int) -> object:  # type: ignore[override]
            raise RuntimeError("a bug")

    batch = codec.Batch(1, (codec.decode_command(codec.encode_command(run(1, 1)[1][0][0])),))
    assert isinstance(apply_batch(Buggy(), batch)[0], RuntimeError)
    with pytest.raises(RuntimeError, match="a bug"):
        replay(Buggy(), [batch])


def test_an_entry_of_an_unknown_format_version_is_refused_naming_it() -> None:
    entry = msgspec.msgpack.encode({"v": 2, "now_ms": 5, "commands": []})
    with pytest.raises(
        UnreadableFormat, match=r"entry 7-0 is in format version 2; .*reads version 1"
    ):
        decode_entry(entry, "7-0")
    # Version 1 may say so, or not.
    assert decode_entry(msgspec.msgpack.encode({"v": 1, "now_ms": 5, "commands": []})).now_ms == 5
    with pytest.raises(codec.CodecError):
        decode_entry(b"\x00garbage")

    async def recovering() -> None:
        store = MemoryStore()
        lease = MemoryLease(store, "a:1", 30)
        assert await lease.try_acquire()
        journal = MemoryJournal(store)
        await journal.append(codec.encode_batch(codec.Batch(1, ())), lease.token)
        await journal.append(entry, lease.token)
        await recover(journal)

    with pytest.raises(UnreadableFormat, match="format version 2"):
        asyncio.run(recovering())


def test_a_snapshot_of_a_later_format_version_is_refused_naming_it() -> None:
    document = {"version": 99, "something": ["else"]}  # a layout this router does not know
    data = msgspec.msgpack.encode(document)
    assert snapshot_version(data) == 99
    with pytest.raises(UnreadableFormat, match=r"through 5-0 is in format version 99"):
        check_snapshot_version(data, "5-0")
    big = msgspec.msgpack.encode({"version": 70_000})
    assert snapshot_version(big) == 70_000
    assert snapshot_version(snapshot.take(Engine())) == snapshot.SNAPSHOT_VERSION
    assert snapshot_version(b"") is None and snapshot_version(b"\x00") is None

    async def recovering() -> None:
        store = MemoryStore()
        lease = MemoryLease(store, "a:1", 30)
        assert await lease.try_acquire()
        await MemoryJournal(store).save_snapshot(data, "5-0", lease.token)
        await recover(MemoryJournal(store))

    with pytest.raises(UnreadableFormat, match="version 99"):
        asyncio.run(recovering())
    check_snapshot_version(snapshot.take(Engine()))  # the current one passes
