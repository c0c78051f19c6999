"""Task and reservation ids: sequential until the workspace is seeded, then unguessable and the
same on every replay."""

from __future__ import annotations

import re

import pytest

from router.core import commands as cmd
from router.core import snapshot
from router.core.engine import Engine
from router.core.errors import FailedPrecondition, InvalidArgument
from router.core.model import QueueConfig, TaskSpec, WorkerProfile

KEY = bytes(range(32))
_RANDOM_ID = re.compile(r"(task|res)-[a-z2-7]{16}")


def _engine(key: bytes | None) -> Engine:
    engine = Engine()
    if key is not None:
        engine.apply(cmd.SeedIds(key), 0)
    engine.apply(cmd.UpsertQueue(QueueConfig("support")), 0)
    engine.apply(
        cmd.UpsertWorker(
            WorkerProfile("w1", capacity_by_channel={"voice": 1}, activity="available")
        ),
        0,
    )
    return engine


def _create(engine: Engine, now_ms: int) -> str:
    return engine.apply(
        cmd.CreateTask(TaskSpec(channel="voice", queue_id="support")), now_ms
    ).task.task_id


def test_an_unseeded_engine_counts_its_ids() -> None:
    engine = _engine(None)
    assert [_create(engine, t) for t in (1, 2)] == ["task-1", "task-2"]
    assert next(iter(engine.reservations)) == "res-1"


def test_a_seeded_engine_gives_ids_that_do_not_show_their_order() -> None:
    engine = _engine(KEY)
    task_ids = [_create(engine, t) for t in range(1, 50)]
    assert all(_RANDOM_ID.fullmatch(t) for t in task_ids)
    assert len(set(task_ids)) == len(task_ids)
    assert sorted(task_ids) != task_ids  # not a counter in disguise
    assert all(_RANDOM_ID.fullmatch(r) for r in engine.reservations)


def test_the_same_key_gives_the_same_ids_and_another_key_others() -> None:
    first, again, other = _engine(KEY), _engine(KEY), _engine(bytes(32))
    assert _create(first, 1) == _create(again, 1) != _create(other, 1)
    assert first.digest() == again.digest() != other.digest()


def test_a_snapshot_keeps_the_key() -> None:
    engine = _engine(KEY)
    _create(engine, 1)
    restored = snapshot.restore(snapshot.take(engine))
    assert restored.digest() == engine.digest()
    assert _create(restored, 2) == _create(engine, 2)


def test_the_key_is_set_once_and_must_be_32_bytes() -> None:
    with pytest.raises(InvalidArgument, match="32 bytes"):
        Engine().apply(cmd.SeedIds(b"short"), 0)
    engine = _engine(KEY)
    with pytest.raises(FailedPrecondition, match="already seeded"):
        engine.apply(cmd.SeedIds(bytes(32)), 1)


def test_derived_keys_differ_by_purpose_and_by_workspace() -> None:
    ids, other = _engine(KEY).identifiers, _engine(bytes(32)).identifiers
    assert ids.derived_key("page-tokens") != ids.derived_key("other")
    assert ids.derived_key("page-tokens") != other.derived_key("page-tokens")
    assert len(ids.derived_key("page-tokens")) == 32
