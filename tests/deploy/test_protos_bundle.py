"""The protos bundle (`make protos-bundle`): versioned, holds the API and the health and
reflection protos, compiles with protoc, and its grpc files describe exactly what is served."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2
from grpc_tools import protoc

from router.reflection import v1_file_descriptor

REPO_ROOT = Path(__file__).resolve().parents[2]


def _strip(proto: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    proto.ClearField("source_code_info")
    proto.ClearField("options")
    proto.ClearField("name")
    messages = list(proto.message_type)
    while messages:  # protoc fills in json_name; the runtime's descriptors leave it out
        message = messages.pop()
        messages.extend(message.nested_type)
        for field in message.field:
            field.ClearField("json_name")
    return proto


def test_the_bundle_compiles_and_matches_what_is_served(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "protos_bundle.py"), "--dist", str(tmp_path)],
        check=True, timeout=120, capture_output=True,
    )  # fmt: skip
    (bundle,) = tmp_path.glob("switchboard-protos-*.tar.gz")
    assert bundle.name == "switchboard-protos-0.1.0.tar.gz"
    with tarfile.open(bundle) as archive:
        archive.extractall(tmp_path / "x", filter="data")
    root = tmp_path / "x" / "switchboard-protos-0.1.0"
    assert (root / "VERSION").read_text().strip() == "0.1.0"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*.proto"))
    assert {"grpc/health/v1/health.proto", "grpc/reflection/v1/reflection.proto",
            "grpc/reflection/v1alpha/reflection.proto",
            "switchboard/v1/task_service.proto"} <= set(files)  # fmt: skip
    out = tmp_path / "set.binpb"
    include = Path(protoc.__file__).parent / "_proto"
    rc = protoc.main(["protoc", f"-I{root}", f"-I{include}",
                      f"--descriptor_set_out={out}", *files])  # fmt: skip
    assert rc == 0
    compiled = {
        f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    }
    served = descriptor_pb2.FileDescriptorProto()
    health_pb2.DESCRIPTOR.CopyToProto(served)
    assert _strip(compiled["grpc/health/v1/health.proto"]) == _strip(served)
    assert _strip(compiled["grpc/reflection/v1/reflection.proto"]) == _strip(v1_file_descriptor())
