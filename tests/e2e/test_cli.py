"""`switchboard serve` as a real process: it listens, serves health and reflection, takes a
snapshot when sent SIGUSR1, and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc
from router.store.embedded import EmbeddedRedis
from workers import AdminClient

SNAPSHOT_KEY = "sb:{default}:snapshot"
JOURNAL_KEY = "sb:{default}:journal"


def test_serve_listens_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "router.cli", "serve", "--port", "0", "--metrics-port", "-1",
         "--data-dir", str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"serving on (\S+)", line)
        assert match, f"unexpected first line: {line!r}"
        with grpc.insecure_channel(match.group(1)) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline_s = time.monotonic() + 15  # a durable router serves once it holds the lease
            while health.Check(health_pb2.HealthCheckRequest(), timeout=10).status != (
                health_pb2.HealthCheckResponse.SERVING
            ):
                assert time.monotonic() < deadline_s, "the router did not start serving"
                time.sleep(0.05)
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            answer = next(reflection.ServerReflectionInfo(iter([request]), timeout=10))
            names = {s.name for s in answer.list_services_response.service}
            assert {"switchboard.v1.TaskService", "switchboard.v1.WorkerService"} <= names
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _wait_until_serving(address: str) -> None:
    with grpc.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline_s = time.monotonic() + 15  # a durable router serves once it holds the lease
        while health.Check(health_pb2.HealthCheckRequest(), timeout=10).status != (
            health_pb2.HealthCheckResponse.SERVING
        ):
            assert time.monotonic() < deadline_s, "the router did not start serving"
            time.sleep(0.05)


def test_sigusr1_makes_serve_write_a_snapshot(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "router.cli", "serve", "--port", "0", "--metrics-port", "-1",
         "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    store = None
    try:
        assert process.stdout is not None
        match = re.search(r"serving on (\S+)", process.stdout.readline())
        assert match
        address = match.group(1)
        _wait_until_serving(address)
        asyncio.run(_upsert_queue(address, pb.Queue(queue_id="support")))
        with grpc.insecure_channel(address) as channel:
            task = pb.Task(queue_id="support", channel="chat")
            tgrpc.TaskServiceStub(channel).CreateTask(tpb.CreateTaskRequest(task=task), timeout=10)
        store = redis.Redis(unix_socket_path=str(EmbeddedRedis(data_dir).socket_path))
        ((last_entry_id, _),) = store.xrevrange(JOURNAL_KEY, count=1)
        assert store.hget(SNAPSHOT_KEY, "through_id") is None  # none is due on its own yet

        process.send_signal(signal.SIGUSR1)
        deadline_s = time.monotonic() + 15
        while (through_id := store.hget(SNAPSHOT_KEY, "through_id")) is None:
            assert time.monotonic() < deadline_s, "no snapshot was written after SIGUSR1"
            time.sleep(0.05)
        assert through_id == last_entry_id  # everything journaled is in it
        assert int(store.hget(SNAPSHOT_KEY, "bytes") or 0) > 0
        assert process.poll() is None  # SIGUSR1 did not stop it

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if store is not None:
            store.close()
        if process.poll() is None:
            process.kill()
            process.wait()


async def _upsert_queue(address: str, queue: pb.Queue) -> None:
    async with AdminClient(address) as admin:
        await admin.upsert_queue(queue)


def test_the_readme_quickstart_runs(router_server: object) -> None:
    address = router_server.address  # type: ignore[attr-defined]
    result = subprocess.run(
        [sys.executable, "examples/quickstart.py", address],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^offered task-\S+ to ana$", result.stdout, re.MULTILINE)
    assert "completed -> TASK_STATUS_WRAPPING" in result.stdout
