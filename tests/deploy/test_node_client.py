"""examples/node, run by node against a live router (127.0.0.1, its own embedded Redis): the
front end creates a task with Struct attributes, the desktop connects, accepts, completes and
wraps up; the router then holds the task completed with the attributes as sent (not nulls). The
protos come from the bundle `make protos-bundle` writes, unpacked: the artefact is what's tested."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.json_format import MessageToDict

from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc
from router.server import ServerConfig
from tests.conftest import ServerThread

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples" / "node"
GRPC_JS = REPO_ROOT / "node_modules" / "@grpc" / "grpc-js"


@pytest.fixture
def protos(tmp_path: Path) -> Path:
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "protos_bundle.py"),
         "--dist", str(tmp_path / "dist")],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    (bundle,) = (tmp_path / "dist").glob("switchboard-protos-*.tar.gz")
    with tarfile.open(bundle) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (folder,) = (tmp_path / "unpacked").iterdir()
    return folder


@pytest.fixture
def live_router(tmp_path: Path) -> Iterator[ServerThread]:
    config = ServerConfig(port=0, metrics_port=None, data_dir=tmp_path / "data")
    server = ServerThread(config).start()
    yield server
    server.stop()


def _node() -> str:
    node = shutil.which("node")
    if node is None or not GRPC_JS.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("node or node_modules/@grpc/grpc-js is missing (make test runs make node)")
        pytest.skip("node or @grpc/grpc-js is not installed: run `make node`")
    return node


def test_node_front_end_and_desktop_route_a_task(live_router: ServerThread, protos: Path) -> None:
    node = _node()
    env = {**os.environ, "SWITCHBOARD_PROTOS": str(protos)}
    address = live_router.address
    desktop = subprocess.Popen(
        [node, str(EXAMPLES / "desktop.js"), address], env=env, cwd=REPO_ROOT,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert desktop.stdout is not None
        attached = json.loads(desktop.stdout.readline())
        assert attached == {"event": "attached", "worker_id": "ana"}
        front = subprocess.run(
            [node, str(EXAMPLES / "frontend.js"), address],
            env={**env, "REQUEST_ID": "node-call-1"}, cwd=REPO_ROOT, capture_output=True,
            text=True, timeout=60, check=False,
        )  # fmt: skip
        assert front.returncode == 0, front.stderr
        created = json.loads(front.stdout)
        assert isinstance(created["created_at_ms"], str) and int(created["created_at_ms"]) > 0
        assert created["attributes"] == {
            "caller": "+15550100", "customer": {"tier": "gold"}, "vip": True, "calls": 3,
        }  # fmt: skip
        out, err = desktop.communicate(timeout=60)
        assert desktop.returncode == 0, err
        completed = json.loads(out.strip().splitlines()[-1])
        assert completed == {
            "event": "completed", "task_id": created["task_id"], "status": "TASK_STATUS_COMPLETED",
        }  # fmt: skip
    finally:
        if desktop.poll() is None:
            desktop.kill()
            desktop.wait()
    with grpc.insecure_channel(address) as channel:
        reply = tgrpc.TaskServiceStub(channel).GetTask(
            tpb.GetTaskRequest(task_id=created["task_id"]), timeout=10
        )
    assert reply.task.status == 5  # TASK_STATUS_COMPLETED
    assert MessageToDict(reply.task.attributes) == created["attributes"]  # no null values
