"""The fuzz suite's router: one per module, durable on a Redis of its own, with the test clock,
holding a little of everything (queues, workers, a policy, tasks and an offer) for fuzzed
requests to hit."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import resources_pb2 as pb
from router.server import ServerConfig
from router.store.embedded import EmbeddedRedis
from tests.conftest import ServerThread
from tests.e2e.raw import Stubs
from tests.fuzz.harness import FuzzTarget


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzTarget]:
    redis = EmbeddedRedis(Path(tmp_path_factory.mktemp("fuzz-redis")))
    redis.start()
    config = ServerConfig(
        port=0, metrics_port=None, test_clock=True, redis_url=redis.url, workspace="fuzz"
    )
    server = ServerThread(config).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            _seed(Stubs.of(channel))
            yield FuzzTarget(channel)
    finally:
        server.stop()
        redis.stop()


def _seed(stubs: Stubs) -> None:
    stubs.queue("support")
    stubs.queue("sales", target_expression="team == 'sales'")
    stubs.worker("w1", skills={"billing": 4}, languages=["en"], empathy=0.8)
    stubs.worker("w2", activity="break", attributes={"team": "sales"})
    route = pb.Route(queue_id="support", steps=[pb.RoutingStep(timeout_s=10), pb.RoutingStep()])
    policy = pb.RoutingPolicy(
        policy_id="p1",
        filters=[pb.PolicyFilter(name="gold", expression="tier == 'gold'", route=route)],
        default_route=pb.Route(queue_id="sales"),
    )
    stubs.admin.UpsertRoutingPolicy(apb.UpsertRoutingPolicyRequest(policy=policy), timeout=5)
    stubs.create(client_request_id="seed-1")  # offered to w1
    stubs.create(channel="chat", policy_id="p1", queue_id="", attributes={"tier": "gold"})


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_error_logged() -> Iterator[None]:
    """A refused request is the client's mistake: nothing of the router (nor of grpc, which logs
    an exception a handler lets through) may be logged as an error meanwhile."""
    errors = _Errors()
    loggers = [logging.getLogger(name) for name in ("router", "grpc")]
    for logger in loggers:
        logger.addHandler(errors)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeHandler(errors)
    assert not errors.records, [errors.format(record) for record in errors.records[:3]]
