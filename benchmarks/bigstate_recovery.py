"""Where a router's recovery spends its time: the steps of `router.store.recovery.recover`, each
timed alone, on the store of a router that is running (read only: nothing is written).

    python -m benchmarks.bigstate_recovery --redis-url URL [--profile PATH]

prints one JSON line, in seconds: `read_s` (the snapshot's pieces read from Redis,
`read_journal_s` the journal's entries after it), `decode_s`
(the bytes decoded into records, msgspec), `restore_s` (`snapshot.restore` as a whole: the decode
again, then the engine rebuilt from the records: indexes, columns, the waiting index), so that
`restore_s - decode_s` is the rebuild; `replay_s` (the journal after the snapshot, applied),
`freeze_s` (`gc.freeze`), and the sizes. The collector is paused as `recover` pauses it. With
`--profile`, the restore runs under cProfile (slower), statistics to PATH, and the heaviest
functions are printed to standard error. `benchmarks.bigstate` runs it in a process of its own,
so that its copy of the state is given back when it ends."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import pstats
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from router.core import snapshot
from router.store.connect import open_redis
from router.store.journal import RedisJournal, StoredSnapshot
from router.store.recovery import replay

STORE_TIMEOUT_S = 60.0


async def _read(
    redis_url: str, workspace: str
) -> tuple[StoredSnapshot, float, list[tuple[str, bytes]], float]:
    """The snapshot and the journal after it, with the seconds each took to read."""
    client = open_redis(redis_url, timeout_s=STORE_TIMEOUT_S)
    try:
        journal = RedisJournal(client, workspace)
        started_s = time.perf_counter()
        stored = await journal.load_snapshot()
        snapshot_s = time.perf_counter() - started_s
        if stored is None:
            raise SystemExit("the store holds no snapshot")
        started_s = time.perf_counter()
        entries = [entry async for entry in journal.entries_after(stored.through_id)]
        return stored, snapshot_s, entries, time.perf_counter() - started_s
    finally:
        await client.aclose()


def time_recovery(
    redis_url: str, workspace: str = "default", profile_path: Path | None = None
) -> dict[str, Any]:
    gc.disable()
    stored, read_s, entries, read_journal_s = asyncio.run(_read(redis_url, workspace))
    data = stored.data

    started_s = time.perf_counter()
    # The same typed decode `snapshot.restore` starts with (its record types are private).
    decoded = msgspec.msgpack.decode(data, type=snapshot._Snapshot)
    decode_s = time.perf_counter() - started_s
    del decoded

    profiler = cProfile.Profile() if profile_path is not None else None
    started_s = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    engine = snapshot.restore(data)
    if profiler is not None:
        profiler.disable()
    restore_s = time.perf_counter() - started_s

    started_s = time.perf_counter()
    replay(engine, entries)
    replay_s = time.perf_counter() - started_s

    gc.enable()
    started_s = time.perf_counter()
    gc.freeze()
    freeze_s = time.perf_counter() - started_s
    if profiler is not None and profile_path is not None:
        profiler.dump_stats(profile_path)
        pstats.Stats(str(profile_path), stream=sys.stderr).sort_stats("cumulative").print_stats(25)
    return {
        "snapshot_bytes": len(data),
        "through_id": stored.through_id,
        "tasks": len(engine.tasks),
        "workers": len(engine.workers),
        "journal_entries": len(entries),
        "read_s": round(read_s, 3),
        "read_journal_s": round(read_journal_s, 3),
        "decode_s": round(decode_s, 3),
        "restore_s": round(restore_s, 3),
        "rebuild_s": round(restore_s - decode_s, 3),
        "replay_s": round(replay_s, 3),
        "freeze_s": round(freeze_s, 3),
        "profiled": profiler is not None,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bigstate_recovery",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--redis-url", required=True, help="the store (unix:// or redis://)")
    parser.add_argument("--workspace", default="default")
    parser.add_argument("--profile", type=Path, metavar="PATH", help="cProfile the restore")
    args = parser.parse_args(argv)
    print(json.dumps(time_recovery(args.redis_url, args.workspace, args.profile)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
