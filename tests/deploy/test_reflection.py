"""Server reflection answers as `grpc.reflection.v1` and as `v1alpha`, to a real client (buf
curl, installed by `make node`) and to a raw v1 call."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2

from router.reflection import V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME
from tests.conftest import ServerThread

REPO_ROOT = Path(__file__).resolve().parents[2]
BUF = REPO_ROOT / "node_modules" / ".bin" / "buf"


def _buf() -> Path:
    if not BUF.exists():
        if os.environ.get("CI") == "true":
            pytest.fail("node_modules/.bin/buf is missing: `make test` installs it (make node)")
        pytest.skip("buf is not installed: run `make node` (make test does)")
    return BUF


def test_a_raw_v1_call_lists_the_services(router_server: ServerThread) -> None:
    with grpc.insecure_channel(router_server.address) as channel:
        call = channel.stream_stream(
            f"/{V1_SERVICE_NAME}/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        (answer,) = list(call(iter([request]), timeout=10))
    names = {service.name for service in answer.list_services_response.service}
    assert {"switchboard.v1.TaskService", "grpc.health.v1.Health"} <= names
    assert {V1_SERVICE_NAME, V1ALPHA_SERVICE_NAME} <= names


@pytest.mark.parametrize("protocol", ["grpc-v1", "grpc-v1alpha"])
def test_buf_curl_calls_through_reflection(router_server: ServerThread, protocol: str) -> None:
    buf = _buf()
    base = f"http://{router_server.address}"
    common = [str(buf), "curl", "--protocol", "grpc", "--http2-prior-knowledge",
              "--reflect-protocol", protocol]  # fmt: skip
    listed = subprocess.run(
        [*common, "--list-services", base],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    assert "switchboard.v1.WorkerService" in listed
    assert V1_SERVICE_NAME in listed
    # A call whose schema comes from reflection alone (no protos on this side).
    reply = subprocess.run(
        [*common, "-d", "{}", f"{base}/switchboard.v1.ClockService/GetTime"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "nowMs" in json.loads(reply) or "now_ms" in reply
    # Every listed service resolves to its file, the v1 reflection service's own included.
    methods = subprocess.run(
        [*common, "--list-methods", base],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip
    assert f"{V1_SERVICE_NAME}/ServerReflectionInfo" in methods
    assert "switchboard.v1.TaskService/CreateTask" in methods
