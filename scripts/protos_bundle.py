"""`make protos-bundle`: the API's protos as a versioned artefact for clients in other languages,
`dist/switchboard-protos-<version>.tar.gz`, holding

    switchboard/v1/*.proto                 the API (from protos/)
    grpc/health/v1/health.proto            the health service the router serves
    grpc/reflection/v1/reflection.proto    server reflection, both versions served
    grpc/reflection/v1alpha/reflection.proto
    VERSION

The grpc files are written from the descriptors of the very packages the router serves them
with (grpcio-health-checking, grpcio-reflection; v1 as router.reflection makes it), so they
match the wire exactly. `google/protobuf/*.proto` is left to each language's runtime (protobufjs,
used by @grpc/proto-loader, ships it; so does protoc). `--dir DIR` writes the tree only."""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tarfile
import tomllib
from pathlib import Path

from google.protobuf import descriptor_pb2 as d

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from grpc_health.v1 import health_pb2  # noqa: E402
from grpc_reflection.v1alpha import reflection_pb2  # noqa: E402

from router.reflection import v1_file_descriptor  # noqa: E402

_SCALARS = {
    d.FieldDescriptorProto.TYPE_DOUBLE: "double",
    d.FieldDescriptorProto.TYPE_FLOAT: "float",
    d.FieldDescriptorProto.TYPE_INT64: "int64",
    d.FieldDescriptorProto.TYPE_UINT64: "uint64",
    d.FieldDescriptorProto.TYPE_INT32: "int32",
    d.FieldDescriptorProto.TYPE_BOOL: "bool",
    d.FieldDescriptorProto.TYPE_STRING: "string",
    d.FieldDescriptorProto.TYPE_BYTES: "bytes",
    d.FieldDescriptorProto.TYPE_UINT32: "uint32",
    d.FieldDescriptorProto.TYPE_SINT32: "sint32",
    d.FieldDescriptorProto.TYPE_SINT64: "sint64",
}


def version() -> str:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    return str(project["version"])


def grpc_files() -> dict[str, d.FileDescriptorProto]:
    files = {}
    for module in (health_pb2, reflection_pb2):
        proto = d.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(proto)
        # The canonical path (grpc/health/v1/...), not the Python package's (grpc_health/...).
        proto.name = proto.package.replace(".", "/") + "/" + Path(proto.name).name
        files[proto.name] = proto
    v1 = v1_file_descriptor()
    files[v1.name] = v1
    return files


def render(proto: d.FileDescriptorProto) -> str:
    """The .proto source of a proto3 file without extensions (what these grpc files use)."""
    assert proto.syntax == "proto3", proto.name
    lines = [
        f"// {proto.name}: written by scripts/protos_bundle.py from the descriptor",
        "// the router serves it with. By the gRPC Authors, Apache License 2.0.",
        "",
        'syntax = "proto3";',
        "",
        f"package {proto.package};",
        "",
    ]
    for field, value in proto.options.ListFields():
        text = f'"{value}"' if isinstance(value, str) else str(value).lower()
        lines.append(f"option {field.name} = {text};")
    for enum in proto.enum_type:
        lines += ["", *_enum(enum, "")]
    for message in proto.message_type:
        lines += ["", *_message(message, "", proto.package)]
    for service in proto.service:
        lines += ["", f"service {service.name} {{"]
        for method in service.method:
            request = ("stream " if method.client_streaming else "") + _short(
                method.input_type, proto.package
            )
            reply = ("stream " if method.server_streaming else "") + _short(
                method.output_type, proto.package
            )
            lines.append(f"  rpc {method.name}({request}) returns ({reply});")
        lines.append("}")
    return "\n".join(lines) + "\n"


def _short(type_name: str, package: str) -> str:
    return type_name.removeprefix(f".{package}.")


def _enum(enum: d.EnumDescriptorProto, indent: str) -> list[str]:
    lines = [f"{indent}enum {enum.name} {{"]
    lines += [f"{indent}  {value.name} = {value.number};" for value in enum.value]
    return [*lines, f"{indent}}}"]


def _message(message: d.DescriptorProto, indent: str, package: str) -> list[str]:
    lines = [f"{indent}message {message.name} {{"]
    inner = indent + "  "
    for enum in message.enum_type:
        lines += _enum(enum, inner)
    maps = {nested.name: nested for nested in message.nested_type if nested.options.map_entry}
    for nested in message.nested_type:
        if nested.name not in maps:
            lines += _message(nested, inner, package)
    oneofs: dict[int, list[str]] = {}
    for field in message.field:
        kind = _SCALARS.get(field.type) or _short(field.type_name, package)
        repeated = "repeated " if field.label == d.FieldDescriptorProto.LABEL_REPEATED else ""
        entry = maps.get(field.type_name.rsplit(".", 1)[-1])
        if entry is not None and field.type_name.endswith(f"{message.name}.{entry.name}"):
            key, value = entry.field
            types = [_SCALARS.get(f.type) or _short(f.type_name, package) for f in (key, value)]
            kind, repeated = f"map<{types[0]}, {types[1]}>", ""
        line = f"{repeated}{kind} {field.name} = {field.number};"
        if field.HasField("oneof_index"):
            oneofs.setdefault(field.oneof_index, []).append(line)
        else:
            lines.append(f"{inner}{line}")
    for index, fields in oneofs.items():
        lines.append(f"{inner}oneof {message.oneof_decl[index].name} {{")
        lines += [f"{inner}  {line}" for line in fields]
        lines.append(f"{inner}}}")
    return [*lines, f"{indent}}}"]


def write_tree(folder: Path) -> list[Path]:
    written = []
    for source in sorted((REPO_ROOT / "protos").rglob("*.proto")):
        target = folder / source.relative_to(REPO_ROOT / "protos")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        written.append(target)
    for name, proto in grpc_files().items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(proto))
        written.append(target)
    (folder / "VERSION").write_text(version() + "\n")
    return written


def write_bundle(dist: Path) -> Path:
    """A reproducible tarball (sorted names, fixed times and owners)."""
    dist.mkdir(parents=True, exist_ok=True)
    name = f"switchboard-protos-{version()}"
    bundle = dist / f"{name}.tar.gz"
    staging = dist / name
    shutil.rmtree(staging, ignore_errors=True)
    write_tree(staging)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            info = tarfile.TarInfo(f"{name}/{path.relative_to(staging)}")
            data = path.read_bytes()
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    bundle.write_bytes(buffer.getvalue())
    shutil.rmtree(staging)
    return bundle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dist", type=Path, default=REPO_ROOT / "dist")
    parser.add_argument("--dir", type=Path, help="write the tree into DIR instead of a tarball")
    args = parser.parse_args()
    if args.dir:
        write_tree(args.dir)
        print(args.dir)
    else:
        print(write_bundle(args.dist))
    return 0


if __name__ == "__main__":
    sys.exit(main())
