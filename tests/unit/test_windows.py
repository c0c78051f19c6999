"""The windowed statistics are state: a snapshot keeps them and a replay of the same commands
rebuilds them, equal (they are not in the digest, so this is where that is checked); and what
falls out of the longest window is dropped."""

from __future__ import annotations

import contextlib

from router.core import commands as cmd
from router.core import snapshot
from router.core.engine import Engine
from router.core.errors import CoreError
from router.core.model import QueueConfig
from router.core.windows import MINUTE_MS, WINDOW_MINUTES_MAX
from tests.unit.test_engine import Clock, add_worker, advance, apply, create


def _workload(engine: Engine, clock: Clock) -> list[tuple[int, cmd.Command[object]]]:
    """Applies a small workload; returns it as (time, command) to replay."""
    applied: list[tuple[int, cmd.Command[object]]] = []
    original = engine.apply

    def recording(command: cmd.Command[object], now_ms: int) -> object:
        applied.append((now_ms, command))
        return original(command, now_ms)

    engine.apply = recording  # type: ignore[method-assign]
    apply(engine, clock, cmd.UpsertQueue(QueueConfig("support", reservation_timeout_s=30)))
    add_worker(engine, clock, "ana")
    for _ in range(3):
        create(engine, clock)
        advance(clock, 45)
    advance(clock, 40)  # offers time out
    apply(engine, clock, cmd.SetActivity("ana", "break"))
    advance(clock, 70)
    apply(engine, clock, cmd.Tick())
    return applied


def test_a_snapshot_and_a_replay_keep_the_windows_equal() -> None:
    clock = Clock()
    engine = Engine()
    applied = _workload(engine, clock)
    windows = engine.windows.save()
    assert windows.queues["support"] and windows.channels["voice"] and windows.spans["ana"]
    assert snapshot.restore(snapshot.take(engine)).windows.save() == windows
    replayed = Engine()
    for now_ms, command in applied:
        with contextlib.suppress(CoreError):  # refused live, refused again
            replayed.apply(command, now_ms)
    assert replayed.windows.save() == windows


def test_what_no_window_reaches_is_dropped() -> None:
    clock = Clock()
    engine = Engine()
    _workload(engine, clock)
    advance(clock, (WINDOW_MINUTES_MAX + 2) * MINUTE_MS / 1000)
    apply(engine, clock, cmd.Tick())
    windows = engine.windows.save()
    first_minute = clock.now_ms // MINUTE_MS - WINDOW_MINUTES_MAX
    kept = [m for by in (windows.queues, windows.channels) for v in by.values() for m in v]
    assert kept and min(kept) >= first_minute  # the tasks' time-to-live ran out meanwhile
    assert [s.activity for s in windows.spans["ana"]] == ["break"]  # still on break
