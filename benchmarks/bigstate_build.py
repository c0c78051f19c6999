"""The large-state benchmark's state: N waiting tasks and workers that cannot take them, built
through the core and stored as the snapshot of a fresh data folder, as a router leaves it.

    python -m benchmarks.bigstate_build --tasks N --data-dir FOLDER

prints one JSON line (what was built, and how long each part took). `benchmarks.bigstate` runs
it in a process of its own, so that the memory of the build is given back before the router
starts.

Every command goes through `Engine.apply`, as the service applies it: 8 queues, 5 channels, 6
skills, 1,000 workers (all offline: none can take a task, so every task waits) and N tasks. Each
task is of one of 300 task types (queue, channel, one or two required skills with minimum
levels, sometimes a preferred skill or a language, a priority), drawn with skewed popularity as
IVR menus produce them, and has its own small attributes (an order number, a tier, an intent, a
region), a customer id (from a pool of N/2 customers, so some contacts are repeats), a sentiment
and a client request id (a front end's retry key). Python's garbage collector is paused during
the build: the state is a million objects that all live on."""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.core import commands as cmd
from router.core import snapshot
from router.core.engine import Engine
from router.core.model import QueueConfig, TaskSpec, WorkerProfile
from router.store.connect import open_redis
from router.store.embedded import EmbeddedRedis
from router.store.journal import RedisJournal
from router.store.lease import RedisLease

WORKSPACE = "default"
"""The workspace `switchboard serve` leads by default."""
QUEUES = ("billing", "tech-support", "sales", "claims", "retention", "collections", "vip",
          "general")  # fmt: skip
CHANNELS = ("voice", "chat", "sms", "whatsapp", "email")
CHANNEL_WEIGHTS = (40, 30, 10, 10, 10)
SKILLS = ("billing", "tech", "sales", "claims", "retention", "spanish")
LANGUAGES = ("en", "es", "fr", "de")
TIERS = ("bronze", "silver", "gold", "platinum")
INTENTS = ("refund", "invoice", "outage", "upgrade", "cancel", "claim-status", "password")
REGIONS = ("eu-west", "eu-north", "us-east", "us-west", "apac")
WORKERS_DEFAULT = 1_000
TASK_TYPES = 300
TASK_SPACING_MS = 1
"""Router-clock time between two task creations: 1M tasks arrive over the last 17 minutes."""
SNAPSHOT_THROUGH_ID = "0-0"
"""The stored snapshot includes no journal entry: the journal starts after it."""
STORE_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Built:
    """What the build made, and how long each part took."""

    tasks: int
    workers: int
    queues: int
    build_s: float
    """Applying every command (with the collector paused)."""
    encode_s: float
    """`snapshot.take`: the same encoding a router's snapshot child does."""
    save_s: float
    """Storing it in the data folder's Redis (in 512 KiB pieces, each fsynced)."""
    snapshot_bytes: int
    build_rss_mb: float
    """This process's peak RSS: the engine and the encoded snapshot."""

    def as_json(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "workers": self.workers,
            "queues": self.queues,
            "build_s": round(self.build_s, 2),
            "encode_s": round(self.encode_s, 2),
            "save_s": round(self.save_s, 2),
            "snapshot_bytes": self.snapshot_bytes,
            "build_rss_mb": round(self.build_rss_mb, 1),
        }


def worker_profile(rng: random.Random, index: int) -> WorkerProfile:
    skills = {s: float(rng.randint(1, 5)) for s in rng.sample(SKILLS, rng.randint(1, 3))}
    return WorkerProfile(
        worker_id=f"agent-{index:05d}",
        display_name=f"Agent {index}",
        attributes={"team": f"team-{index % 40:02d}", "site": rng.choice(REGIONS)},
        skills=skills,
        languages=("en", *rng.sample(LANGUAGES[1:], rng.randint(0, 1))),
        empathy=round(rng.random(), 2),
        capacity_by_channel={"voice": 1, "chat": 3, "sms": 3, "whatsapp": 3, "email": 5},
        activity="offline",
    )


@dataclass(frozen=True, slots=True)
class TaskType:
    """What an IVR menu or a chat bot decides about a contact: where it goes and who can take
    it. A center has a few hundred of these; the contacts of one type differ in their own
    attributes, customer and mood."""

    queue_id: str
    channel: str
    required_skills: dict[str, float]
    preferred_skills: dict[str, float]
    language: str
    priority: int


def task_types(rng: random.Random, count: int = TASK_TYPES) -> list[TaskType]:
    types = []
    for _ in range(count):
        types.append(
            TaskType(
                queue_id=rng.choice(QUEUES),
                channel=rng.choices(CHANNELS, CHANNEL_WEIGHTS)[0],
                required_skills={
                    s: float(rng.randint(1, 3)) for s in rng.sample(SKILLS, rng.randint(1, 2))
                },
                preferred_skills={rng.choice(SKILLS): 1.0} if rng.random() < 0.3 else {},
                language=rng.choice(LANGUAGES) if rng.random() < 0.2 else "",
                priority=rng.choice((0, 0, 0, 0, 1, 2, 5)),
            )
        )
    return types


def task_spec(rng: random.Random, kind: TaskType, customers: int) -> TaskSpec:
    return TaskSpec(
        channel=kind.channel,
        queue_id=kind.queue_id,
        attributes={
            "order_id": f"A{rng.randrange(10**8):08d}",
            "tier": TIERS[int(rng.random() * len(TIERS))],
            "intent": INTENTS[int(rng.random() * len(INTENTS))],
            "region": REGIONS[int(rng.random() * len(REGIONS))],
        },
        required_skills=kind.required_skills,
        preferred_skills=kind.preferred_skills,
        language=kind.language,
        priority=kind.priority,
        customer_id=f"cust-{int(rng.random() * customers):07d}",
        sentiment=round(rng.uniform(-1, 1), 2),
    )


def build_engine(tasks: int, *, workers: int = WORKERS_DEFAULT, seed: int = 7) -> Engine:
    """An engine with `tasks` waiting tasks (ids task-1 to task-N) and `workers` offline
    workers, every command applied through `Engine.apply`."""
    rng = random.Random(seed)
    engine = Engine()
    now_ms = time.time_ns() // 1_000_000 - tasks * TASK_SPACING_MS
    for queue_id in QUEUES:
        engine.apply(cmd.UpsertQueue(QueueConfig(queue_id=queue_id, display_name=queue_id)), now_ms)
    for index in range(workers):
        engine.apply(cmd.UpsertWorker(worker_profile(rng, index)), now_ms)
    customers = max(1, tasks // 2)
    types = task_types(rng)
    # Skewed popularity, as IVR menus produce it: the first types are the most common.
    weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(len(types))))
    for index in range(tasks):
        now_ms += TASK_SPACING_MS
        kind = rng.choices(types, cum_weights=weights)[0]
        request_id = f"{rng.getrandbits(128):032x}"
        engine.apply(cmd.CreateTask(task_spec(rng, kind, customers), request_id), now_ms)
        if index % 1024 == 0:
            engine.take_events()
    engine.take_events()
    assert len(engine.waiting) == tasks, "every task must wait (no worker is available)"
    return engine


async def save_as_snapshot(data: bytes, data_dir: Path) -> None:
    """Stores `data` as the snapshot of the data folder's Redis (started for it, stopped
    after), through a lease taken and given back as a router's would be."""
    embedded = EmbeddedRedis(data_dir)
    await asyncio.to_thread(embedded.start)
    try:
        client = open_redis(embedded.url, timeout_s=STORE_TIMEOUT_S)
        try:
            journal = RedisJournal(client, WORKSPACE)
            lease = RedisLease(
                client, WORKSPACE, "benchmarks.bigstate_build", ttl_s=STORE_TIMEOUT_S
            )
            if not await lease.try_acquire():
                raise RuntimeError(f"the lease of {data_dir} is held: is a router running on it?")
            await journal.save_snapshot(data, SNAPSHOT_THROUGH_ID, lease.token)
            await lease.release()
        finally:
            await client.aclose()
    finally:
        await asyncio.to_thread(embedded.stop)


def build_and_save(tasks: int, data_dir: Path, *, workers: int = WORKERS_DEFAULT) -> Built:
    gc.disable()
    started_s = time.perf_counter()
    engine = build_engine(tasks, workers=workers)
    built_s = time.perf_counter()
    data = snapshot.take(engine)
    encoded_s = time.perf_counter()
    queues = len(engine.queues)
    del engine  # its memory is not needed to store the bytes
    asyncio.run(save_as_snapshot(data, data_dir))
    saved_s = time.perf_counter()
    return Built(
        tasks=tasks,
        workers=workers,
        queues=queues,
        build_s=built_s - started_s,
        encode_s=encoded_s - built_s,
        save_s=saved_s - encoded_s,
        snapshot_bytes=len(data),
        build_rss_mb=_peak_rss_mb(),
    )


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bigstate_build", description=__doc__
    )
    parser.add_argument("--tasks", type=int, required=True, help="waiting tasks to build")
    parser.add_argument("--workers", type=int, default=WORKERS_DEFAULT, help="offline workers")
    parser.add_argument("--data-dir", type=Path, required=True, help="a new data folder")
    args = parser.parse_args(argv)
    built = build_and_save(args.tasks, args.data_dir, workers=args.workers)
    print(json.dumps(built.as_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
