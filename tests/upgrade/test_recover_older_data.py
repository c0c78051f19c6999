"""Upgrades keep working: the current router recovers a data folder written by an older one (a
snapshot and the journal after it, in the embedded Redis' append-only file) to the same state."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import grpc

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import admin_service_pb2_grpc as agrpc
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc
from router.server import ServerConfig
from tests.conftest import ServerThread

FIXTURES = Path(__file__).parent


def test_a_data_folder_from_before_the_reshaping_recovers_to_the_same_digest(
    tmp_path: Path,
) -> None:
    fixture = FIXTURES / "data-v3"
    expected = json.loads((fixture / "expected.json").read_text())
    data_dir = tmp_path / "data"
    shutil.copytree(fixture / "data", data_dir)  # the router's Redis rewrites its files
    config = ServerConfig(
        port=0,
        metrics_port=None,
        test_clock=True,
        test_clock_start_ms=expected["clock_ms"],
        data_dir=data_dir,
    )
    server = ServerThread(config).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            digest = agrpc.AdminServiceStub(channel).GetStateDigest(
                apb.GetStateDigestRequest(), timeout=30
            )
            tasks = tgrpc.TaskServiceStub(channel).ListTasks(tpb.ListTasksRequest(), timeout=5)
    finally:
        server.stop()
    assert (digest.digest, digest.tasks, digest.workers) == (
        expected["digest"],
        expected["tasks"],
        expected["workers"],
    )
    assert {task.attributes["order"] for task in tasks.tasks} >= {"A-1", "A-2"}
