#!/usr/bin/env python3
"""What reads cost at scale, on an engine of many tasks with ~8 KB of attributes each.

Usage (from the repository root; each case builds its state in a fresh process):
    python scripts/measure_reads.py digest --tasks 100000    # Engine.digest() of open tasks
    python scripts/measure_reads.py closed --tasks 100000    # gc.collect() with that many
                                                             # closed tasks kept
    python scripts/measure_reads.py memory --tasks 100000    # the heap they take
    python scripts/measure_reads.py list --tasks 100000      # ListTasks pages, served by the
                                                             # TaskService servicer on a loop

`list` calls the servicer's ListTasks coroutine directly on an event loop (no network), while a
ticker task measures the longest time the loop went without a turn: what an agent stream or the
lease renewal would wait. `held_ms_max` is wall-clock time, `held_cpu_ms_max` the process's CPU
time over the same stretch (on a shared machine the former also counts the time other programs
took the core). `serialize_ms` is the reply's SerializeToString, which gRPC runs on the loop
after the call returns. It uses only the servicer's request and reply, so it measures an older
checkout too (PYTHONPATH=that/checkout).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import time
import tracemalloc
from collections.abc import Awaitable
from typing import Any

from prometheus_client import CollectorRegistry

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router.api.tasks import TaskServicer
from router.clock import TestClock
from router.core import commands as cmd
from router.core.engine import Engine
from router.core.model import QueueConfig, TaskSpec
from router.obs.metrics import RouterMetrics
from router.privacy.task_data import TaskData
from router.service import RouterService

QUEUES = 10
CHANNELS = ("voice", "chat", "email")
FIELDS = 40
"""Fields of a task's attributes: 40 of ~190 characters, ~8 KB as JSON."""
START_MS = 1_700_000_000_000


def build(tasks: int, closed_share: float) -> Engine:
    """Tasks in 10 queues, on three channels; a share of them canceled (kept closed). The heap
    is then frozen, as the service freezes it (`gc.freeze()`), so that no full collection of the
    state lands inside a measurement."""
    rng = random.Random(7)
    pool = ["".join(rng.choices("abcdefghij ", k=185)) for _ in range(997)]
    engine = Engine()
    for q in range(QUEUES):
        engine.apply(cmd.UpsertQueue(QueueConfig(f"q{q}")), START_MS)
    for i in range(tasks):
        attributes = {
            f"field_{k}": f"{i}-{k}-{pool[(i * FIELDS + k) % len(pool)]}" for k in range(FIELDS)
        }
        queue = i % QUEUES  # each queue's tasks on one channel
        spec = TaskSpec(CHANNELS[queue % 3], f"q{queue}", attributes=attributes)
        created = engine.apply(cmd.CreateTask(spec), START_MS + i)
        if rng.random() < closed_share:
            engine.apply(cmd.CancelTask(created.task.task_id), START_MS + i)
        engine.take_events()
    gc.collect()
    gc.freeze()
    return engine


def measure_digest(tasks: int) -> dict[str, Any]:
    engine = build(tasks, 0.0)
    started_s, started_cpu_s = time.perf_counter(), time.process_time()
    digest = engine.digest()
    return {
        "digest_s": round(time.perf_counter() - started_s, 2),
        "digest_cpu_s": round(time.process_time() - started_cpu_s, 2),
        "digest": digest[:12],
    }


def measure_closed(tasks: int) -> dict[str, Any]:
    """What a full collection walks when the state is not frozen (as at a snapshot), and the
    CPU time it takes (the least of three)."""
    engine = build(tasks, 1.0)
    gc.unfreeze()
    gc.collect()
    collect_s = []
    for _ in range(3):
        started_s = time.process_time()  # CPU time: on a shared machine, wall time counts others
        gc.collect()
        collect_s.append(time.process_time() - started_s)
    return {
        "tasks_kept": len(engine.tasks),
        "gc_objects": len(gc.get_objects()),
        "gc_collect_cpu_ms": round(min(collect_s) * 1000),
    }


def measure_memory(tasks: int) -> dict[str, Any]:
    """What building that many closed tasks left allocated: the live heap as tracemalloc sees
    it (RSS overstates it with the memory freed records leave behind)."""
    gc.collect()
    tracemalloc.start()
    engine = build(tasks, 1.0)
    gc.unfreeze()
    gc.collect()
    return {
        "tasks_kept": len(engine.tasks),
        "state_mb": round(tracemalloc.get_traced_memory()[0] / 1e6),
    }


class _Context:
    async def abort(self, code: Any, details: str) -> None:
        raise RuntimeError(f"{code}: {details}")


async def _timed(call: Awaitable[tpb.ListTasksResponse]) -> dict[str, Any]:
    """Runs one call beside a ticker that records the longest gap between its turns."""
    held_s = held_cpu_s = 0.0
    done = False

    async def tick() -> None:
        nonlocal held_s, held_cpu_s
        while not done:
            turn_s, turn_cpu_s = time.perf_counter(), time.process_time()
            await asyncio.sleep(0)
            held_s = max(held_s, time.perf_counter() - turn_s)
            held_cpu_s = max(held_cpu_s, time.process_time() - turn_cpu_s)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    started_s = time.perf_counter()
    reply = await call
    total_s = time.perf_counter() - started_s
    done = True
    await ticker
    started_s = time.perf_counter()
    data = reply.SerializeToString()
    return {
        "tasks": len(reply.tasks),
        "reply_mb": round(len(data) / 2**20, 2),
        "total_ms": round(total_s * 1000, 1),
        "held_ms_max": round(held_s * 1000, 1),
        "held_cpu_ms_max": round(held_cpu_s * 1000, 1),
        "serialize_ms": round((time.perf_counter() - started_s) * 1000, 1),
        "next_page_token": reply.next_page_token,
    }


async def _list_cases(servicer: TaskServicer, tasks: int) -> list[dict[str, Any]]:
    cases = {
        "first page": tpb.ListTasksRequest(page_size=1000),
        "from the middle": tpb.ListTasksRequest(page_size=1000, page_token=str(tasks // 2)),
        "one queue's canceled": tpb.ListTasksRequest(
            page_size=1000, queue_id="q3", status=pb.TASK_STATUS_CANCELED
        ),
        "no match (q1 holds chat tasks)": tpb.ListTasksRequest(
            page_size=1000, queue_id="q1", channel="voice"
        ),
    }
    results = []
    for name, request in cases.items():
        result = await _timed(servicer.ListTasks(request, _Context()))
        results.append({"case": name, **result})
    pages: list[dict[str, Any]] = []
    token = ""
    while not pages or token:
        request = tpb.ListTasksRequest(page_size=1000, page_token=token)
        pages.append(await _timed(servicer.ListTasks(request, _Context())))
        token = pages[-1]["next_page_token"]
    results.append(
        {
            "case": "walk every page",
            "pages": len(pages),
            "tasks": sum(page["tasks"] for page in pages),
            "total_ms": round(sum(page["total_ms"] for page in pages), 1),
            "held_ms_max": max(page["held_ms_max"] for page in pages),
            "held_cpu_ms_max": max(page["held_cpu_ms_max"] for page in pages),
            "serialize_ms_max": max(page["serialize_ms"] for page in pages),
        }
    )
    return results


def measure_list(tasks: int) -> list[dict[str, Any]]:
    engine = build(tasks, 0.2)
    service = RouterService(engine, TestClock(START_MS), RouterMetrics(CollectorRegistry()))
    servicer = TaskServicer(service, TaskData(service.customer_keys))
    return asyncio.run(_list_cases(servicer, tasks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("case", choices=("digest", "closed", "memory", "list"))
    parser.add_argument("--tasks", type=int, default=100_000)
    args = parser.parse_args()
    if args.case == "digest":
        print({"tasks": args.tasks, **measure_digest(args.tasks)})
    elif args.case == "closed":
        print({"tasks": args.tasks, **measure_closed(args.tasks)})
    elif args.case == "memory":
        print({"tasks": args.tasks, **measure_memory(args.tasks)})
    else:
        for row in measure_list(args.tasks):
            print(row)


if __name__ == "__main__":
    main()
