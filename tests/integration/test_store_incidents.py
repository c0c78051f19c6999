"""The store fails under a router in service, for real: its embedded Redis SIGKILLed again and
again under load on a busy disk, an external Redis that keeps nothing restarted empty under a
leader, and under a standby. Whatever a client was told was done must still be there."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc
import pytest

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router.server import ServerConfig
from tests.conftest import ServerThread
from tests.e2e.raw import Stubs
from tests.integration.support import DiskHog, Load, doubled, missing

RESUME_TIMEOUT_S = 20.0
"""Longest wait for acknowledgements after a kill: the restarted Redis keeps the dead leader's
lease until it expires (2 s), and the router follows before it leads again."""


def sigkill_the_embedded_redis_under_load(tmp_path: Path, kills: int) -> None:
    """A router on its embedded Redis, four clients creating tasks (one in two without a
    client_request_id), a process keeping the disk busy; the Redis SIGKILLed `kills` times, each
    time once the router serves again. Every acknowledged task must be there, none twice nor
    unasked for, and the router restarted on the same folder must have the same state."""
    config = ServerConfig(port=0, metrics_port=None, test_clock=True, data_dir=tmp_path / "data")
    hog = DiskHog(tmp_path / "busy-disk.bin")
    server = ServerThread(config).start()
    load = None
    try:
        assert server.server is not None and server.server._embedded is not None
        embedded, registry = server.server._embedded, server.server.registry
        with grpc.insecure_channel(server.address) as channel:
            Stubs.of(channel).queue("support")
        load = Load(server.address, threads=4, anonymous_every=2).start()
        load.wait_for_acks_after(0.0, 20, RESUME_TIMEOUT_S)
        for kill in range(1, kills + 1):
            killed_pid = embedded.pid
            assert killed_pid is not None
            os.kill(killed_pid, signal.SIGKILL)  # in the middle of the load
            # The router's supervisor restarts it (and counts it once it answers)...
            deadline_s = time.monotonic() + RESUME_TIMEOUT_S
            while registry.get_sample_value("switchboard_store_restarts_total") != kill:
                assert time.monotonic() < deadline_s, "the embedded Redis was not restarted"
                time.sleep(0.01)
            assert embedded.pid != killed_pid
            # ...and the clients are served again.
            load.wait_for_acks_after(time.monotonic(), 10, RESUME_TIMEOUT_S)
        load.stop()
        assert not load.refusals
        acked = load.acked
        print(f"{kills} kills: {len(acked.tasks)} tasks acknowledged, {load.retries} retries")
        with grpc.insecure_channel(server.address) as channel:
            stubs = Stubs.of(channel)
            assert missing(stubs, acked) == []
            assert doubled(stubs, load) == []
            live = stubs.admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=10)
    finally:
        if load is not None:
            load.stop()
        server.stop()
        hog.stop()
    restarted = ServerThread(config).start()
    try:
        with grpc.insecure_channel(restarted.address) as channel:
            stubs = Stubs.of(channel)
            assert missing(stubs, acked) == []
            assert doubled(stubs, load) == []
            # A batch journaled twice (a retried append that had landed) replays twice.
            replayed = stubs.admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=10)
            assert (replayed.tasks, replayed.digest) == (live.tasks, live.digest)
    finally:
        restarted.stop()


@pytest.mark.timeout(120)
def test_ten_sigkills_of_the_embedded_redis_on_a_busy_disk_lose_and_double_nothing(
    tmp_path: Path,
) -> None:
    """Redis writes and fsyncs each batch before it answers, even with the disk busy, and the
    router's retried appends are kept once: ten SIGKILLs of its Redis under load, and every task
    a client was told of is there, with its id, once."""
    sigkill_the_embedded_redis_under_load(tmp_path, kills=10)
