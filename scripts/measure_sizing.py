"""Sizing figures for docs/operations.md: the memory a router and its Redis take per worker and
per waiting task, measured on a real `switchboard serve` (durable, its embedded Redis) fed over
gRPC. Prints a table and writes JSON.

    python scripts/measure_sizing.py --workers 5000 --tasks 50000 --attributes-bytes 200

Workers are registered offline (so no task is offered); tasks wait in one queue, each with
`--attributes-bytes` of attributes. The router's figure is the growth of its resident set
(VmRSS) divided by the count; Redis' is the growth of `used_memory` (the journal of those
commands, before a snapshot trims it)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.servers import memory_kib  # noqa: E402
from router._proto.switchboard.v1 import admin_service_pb2 as apb  # noqa: E402
from router._proto.switchboard.v1 import admin_service_pb2_grpc as agrpc  # noqa: E402
from router._proto.switchboard.v1 import resources_pb2 as pb  # noqa: E402
from router._proto.switchboard.v1 import task_service_pb2 as tpb  # noqa: E402
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc  # noqa: E402
from router._proto.switchboard.v1 import worker_service_pb2 as wpb  # noqa: E402
from router._proto.switchboard.v1 import worker_service_pb2_grpc as wgrpc  # noqa: E402

CONCURRENCY = 64


def _settle_kib(pid: int) -> int:
    time.sleep(1.5)  # the periodic statistics ran; allocator settled
    return memory_kib(pid)["VmRSS"]


def _redis_bytes(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _run_all(calls: list[object]) -> None:
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for result in pool.map(lambda call: call(), calls):
            del result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=5000)
    parser.add_argument("--tasks", type=int, default=50000)
    parser.add_argument("--attributes-bytes", type=int, default=200)
    parser.add_argument("--json", type=Path, default=Path("bench-results/sizing.json"))
    args = parser.parse_args()
    data_dir = Path(tempfile.mkdtemp(prefix="switchboard-sizing-"))
    process = subprocess.Popen(
        [sys.executable, "-m", "router.cli", "serve", "--port", "0", "--metrics-port", "-1",
         "--data-dir", str(data_dir), "--snapshot-every", "100000000", "--log-level", "WARNING"],
        stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        match = re.search(r"serving on (\S+)", process.stdout.readline())
        assert match, "the router did not start"
        address = match.group(1)
        channel = grpc.insecure_channel(address)
        health = health_pb2_grpc.HealthStub(channel)
        while health.Check(health_pb2.HealthCheckRequest(), timeout=10).status != 1:
            time.sleep(0.05)
        store = redis.Redis(unix_socket_path=str(data_dir / "redis.sock"))
        admin, tasks = agrpc.AdminServiceStub(channel), tgrpc.TaskServiceStub(channel)
        workers = wgrpc.WorkerServiceStub(channel)
        admin.UpsertQueue(apb.UpsertQueueRequest(queue=pb.Queue(queue_id="q")), timeout=10)
        rss0, redis0 = _settle_kib(process.pid), _redis_bytes(store)

        def worker(i: int) -> object:
            w = pb.Worker(
                worker_id=f"w{i}", skills={"billing": 3, "sales": 2}, languages=["en"],
                capacity_by_channel={"voice": 1, "chat": 3}, activity="offline",
            )  # fmt: skip
            w.attributes.update({"team": f"team-{i % 50}", "site": "lisbon"})
            return lambda: workers.UpsertWorker(wpb.UpsertWorkerRequest(worker=w), timeout=30)

        _run_all([worker(i) for i in range(args.workers)])
        rss1, redis1 = _settle_kib(process.pid), _redis_bytes(store)
        filler = "x" * max(0, args.attributes_bytes - 40)

        def task(i: int) -> object:
            t = pb.Task(queue_id="q", channel="voice", required_skills={"billing": 2})
            t.attributes.update({"caller": f"+1555{i:07d}", "note": filler})
            request = tpb.CreateTaskRequest(task=t, client_request_id=f"r{i}")
            return lambda: tasks.CreateTask(request, timeout=30)

        started = time.monotonic()
        _run_all([task(i) for i in range(args.tasks)])
        elapsed = time.monotonic() - started
        rss2, redis2 = _settle_kib(process.pid), _redis_bytes(store)
        result = {
            "command": " ".join(["python", "scripts/measure_sizing.py", *sys.argv[1:]]),
            "workers": args.workers,
            "tasks": args.tasks,
            "attributes_bytes": args.attributes_bytes,
            "router_rss_idle_mib": round(rss0 / 1024, 1),
            "router_kib_per_worker": round((rss1 - rss0) / args.workers, 2),
            "router_kib_per_waiting_task": round((rss2 - rss1) / args.tasks, 2),
            "redis_kib_per_worker": round((redis1 - redis0) / 1024 / args.workers, 2),
            "redis_kib_per_waiting_task": round((redis2 - redis1) / 1024 / args.tasks, 2),
            "creates_per_s": round(args.tasks / elapsed),
        }
        store.close()
        channel.close()
    finally:
        process.terminate()
        process.wait(timeout=60)
    print(f"{'figure':<32} {'value':>12}")
    for key, value in result.items():
        if key != "command":
            print(f"{key:<32} {value!s:>12}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
