"""The generated gRPC code is current and importable as `router._proto`."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
GEN_PROTO = REPO_ROOT / "scripts" / "gen_proto.py"
PROTO_PACKAGE = "router._proto.switchboard.v1"

# Each API service: the module that defines it, and its name.
SERVICES = [
    ("task_service", "TaskService"),
    ("worker_service", "WorkerService"),
    ("admin_service", "AdminService"),
    ("stats_service", "StatsService"),
    ("clock_service", "ClockService"),
]


def test_generated_code_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(GEN_PROTO), "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, (
        "router/_proto/ is stale: run `make proto`\n" + result.stdout + result.stderr
    )


def test_every_proto_file_has_generated_modules() -> None:
    protos = sorted(p.stem for p in (REPO_ROOT / "protos" / "switchboard" / "v1").glob("*.proto"))
    assert protos, "no .proto files found"
    generated = REPO_ROOT / "router" / "_proto" / "switchboard" / "v1"
    for stem in protos:
        for suffix in ("_pb2", "_pb2_grpc"):
            module = importlib.import_module(f"{PROTO_PACKAGE}.{stem}{suffix}")
            # The module generated in the tree, not one of the same name found elsewhere.
            assert module.__file__ is not None
            assert Path(module.__file__).resolve() == generated / f"{stem}{suffix}.py"
        pb2 = importlib.import_module(f"{PROTO_PACKAGE}.{stem}_pb2")
        assert pb2.DESCRIPTOR.name == f"switchboard/v1/{stem}.proto"


@pytest.mark.parametrize(("module_stem", "service"), SERVICES)
def test_service_stubs_are_exposed(module_stem: str, service: str) -> None:
    grpc_module = importlib.import_module(f"{PROTO_PACKAGE}.{module_stem}_pb2_grpc")
    for suffix in ("Stub", "Servicer"):
        assert hasattr(grpc_module, service + suffix), f"{module_stem}: no {service}{suffix}"
    assert hasattr(grpc_module, f"add_{service}Servicer_to_server")

    pb2 = importlib.import_module(f"{PROTO_PACKAGE}.{module_stem}_pb2")
    assert service in pb2.DESCRIPTOR.services_by_name


def test_messages_round_trip_through_the_rewritten_imports() -> None:
    # task_service imports resources: this fails if an import was left un-rewritten.
    resources_pb2 = importlib.import_module(f"{PROTO_PACKAGE}.resources_pb2")
    task_service_pb2 = importlib.import_module(f"{PROTO_PACKAGE}.task_service_pb2")
    request = task_service_pb2.CreateTaskRequest(client_request_id="req-1")
    assert isinstance(request.task, resources_pb2.Task)
    decoded = task_service_pb2.CreateTaskRequest.FromString(request.SerializeToString())
    assert decoded.client_request_id == "req-1"
