"""--min-replicas-acked against a real Redis primary and replica (`--replicaof`): a batch is
answered only once enough replicas hold it; otherwise its callers are told UNAVAILABLE."""

from __future__ import annotations

import time
from pathlib import Path

import grpc
import pytest

from router.server import ServerConfig
from router.service import REPLICA_ACK_TIMEOUT_MS
from tests.conftest import ServerThread
from tests.e2e.raw import Stubs
from tests.integration.support import RedisServer, all_tasks

SHORTFALL_ANSWER_MAX_S = REPLICA_ACK_TIMEOUT_MS / 1000 + 1.5
"""A create whose replica does not answer is refused after the WAIT timeout, plus slack."""


def wait_until_replicated(primary: RedisServer, replicas: int) -> None:
    deadline_s = time.monotonic() + 15
    while True:
        info = primary.client().info("replication")
        online = [
            value for key, value in info.items()
            if key.startswith("slave") and isinstance(value, dict) and value["state"] == "online"
        ]  # fmt: skip
        if len(online) >= replicas:
            return
        assert time.monotonic() < deadline_s, f"replication did not start: {info}"
        time.sleep(0.05)


def shortfalls(server: ServerThread) -> float | None:
    assert server.server is not None
    return server.server.registry.get_sample_value("switchboard_replica_ack_shortfalls_total")


def test_a_create_waits_for_the_replica_and_is_refused_without_it(tmp_path: Path) -> None:
    """Creates succeed while the replica keeps up; with it stopped, a create is answered
    UNAVAILABLE naming the replicas within about the WAIT timeout, and counted; with it back,
    the retry of that create (same client_request_id) returns the one task it made."""
    primary = RedisServer(tmp_path / "primary").start()
    replica = RedisServer(tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary.port))
    server = None
    try:
        replica.start()
        wait_until_replicated(primary, 1)
        config = ServerConfig(port=0, metrics_port=None, test_clock=True,
                              redis_url=primary.url, min_replicas_acked=1)  # fmt: skip
        server = ServerThread(config).start()
        with grpc.insecure_channel(server.address) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support")
            first = stubs.create("first").task.task_id
            assert shortfalls(server) == 0

            replica.pause()  # SIGSTOP: connected, but acknowledges nothing
            started_s = time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                stubs.create("second")  # journaled on the primary, held by no replica
            assert time.monotonic() - started_s <= SHORTFALL_ANSWER_MAX_S
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "only 0 of the 1 replicas" in (refused.value.details() or "")
            assert shortfalls(server) == 1

            replica.resume()
            wait_until_replicated(primary, 1)
            second = stubs.create("second").task.task_id  # the retry, once replicated
            assert stubs.create("second").task.task_id == second
            third = stubs.create("third").task.task_id
            assert shortfalls(server) == 1
            by_request = {t.client_request_id: t.task_id for t in all_tasks(stubs)}
            assert len(all_tasks(stubs)) == 3  # "second" was made once, by its first attempt
            assert by_request == {"first": first, "second": second, "third": third}
        assert primary.client().xlen("sb:{default}:journal") == replica.client().xlen(
            "sb:{default}:journal"
        )
    finally:
        if server is not None:
            server.stop()
        replica.stop()
        primary.stop()
