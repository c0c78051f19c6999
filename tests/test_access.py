"""The access table covers every RPC of every service the protos define, names none that does
not exist, and is what a real router enforces: every role against every RPC, over gRPC."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

import router._proto.switchboard.v1 as protos
from router.api.access import ACCESS, role_table
from router.api.authn import AuthConfig, Role
from router.mint import mint_token
from router.server import ServerConfig
from tests.conftest import ServerThread

README = Path(__file__).resolve().parents[1] / "README.md"
SECRET = b"a-test-secret-of-at-least-thirty-two-bytes"


def _proto_methods() -> dict[str, bool]:
    """Every RPC's full name, and whether its requests stream."""
    methods = {}
    for module_info in pkgutil.iter_modules(protos.__path__):
        if not module_info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"{protos.__name__}.{module_info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                methods[f"/{service.full_name}/{method.name}"] = method.client_streaming
    return methods


def test_the_table_names_every_rpc_and_only_those() -> None:
    methods = set(_proto_methods())
    assert methods - ACCESS.keys() == set(), "RPCs without an access rule"
    assert ACCESS.keys() - methods == set(), "rules for RPCs that do not exist"


def test_the_readme_role_table_is_the_access_table() -> None:
    rows = re.findall(
        r"^\| `(/switchboard\.v1\.[A-Za-z]+/[A-Za-z]+)` \| ([^|]*) \|", README.read_text(), re.M
    )
    readme = {method: [r.strip(" `") for r in roles.split(",")] for method, roles in rows}
    assert readme == dict(role_table())


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    secret = tmp_path_factory.mktemp("auth") / "secret"
    secret.write_bytes(SECRET)
    config = ServerConfig(port=0, metrics_port=None, durable=False,
                          auth=AuthConfig(hs256_secret_file=secret))  # fmt: skip
    server = ServerThread(config).start()
    yield server
    server.stop()


def _call(channel: grpc.Channel, method: str, streaming: bool, token: str) -> grpc.StatusCode:
    """The status of `method` called with an empty request (and, for a stream, one empty
    message), OK included."""
    metadata = (("authorization", f"Bearer {token}"),)
    identity = {"request_serializer": None, "response_deserializer": None}
    try:
        if streaming:
            call = channel.stream_stream(method, **identity)
            for _ in call(iter([b""]), metadata=metadata, timeout=5):
                break
        else:
            channel.unary_unary(method, **identity)(b"", metadata=metadata, timeout=5)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        return code
    return grpc.StatusCode.OK


@pytest.mark.parametrize("role", list(Role))
def test_each_role_is_refused_exactly_the_rpcs_the_table_denies_it(
    router: ServerThread, role: Role
) -> None:
    token = mint_token(role=role, worker_id="w1", queues=["q1"], key=SECRET, algorithm="HS256")
    with grpc.insecure_channel(router.address) as channel:
        for method, streaming in _proto_methods().items():
            rule = ACCESS[method]
            code = _call(channel, method, streaming, token)
            assert code is not grpc.StatusCode.UNAUTHENTICATED, method
            if role is not Role.ADMIN and role not in rule.roles:
                assert code is grpc.StatusCode.PERMISSION_DENIED, (role, method)
            elif role is Role.ADMIN or rule.scope is None:
                # allowed: whatever the servicer says of an empty request, not a refusal
                assert code is not grpc.StatusCode.PERMISSION_DENIED, (role, method)
