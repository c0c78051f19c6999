"""Fuzzing the live router's whole API: requests of every RPC of every service (walked from the
protos), raw bytes, and expressions of queue targets and policy filters. No answer may be
UNKNOWN or INTERNAL, the router must keep serving, and a refused request must leave the state
as it was (see `tests.fuzz.harness`).

`make test` runs a short, derandomized pass (the same examples every time); the `slow` tests
run many more random ones: `pytest tests/fuzz -m slow`. A failure prints the example and how to
reproduce it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from google.protobuf.descriptor import MethodDescriptor
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import resources_pb2 as pb
from router.server import SERVICE_NAMES
from tests.fuzz.harness import FuzzTarget
from tests.fuzz.strategies import (
    api_methods,
    expressions,
    method_path,
    raw_bodies,
    requests,
)

METHODS = list(api_methods())
_POOL = {method.full_name: method for method in METHODS}
_COMMON: dict[str, Any] = {
    "deadline": None,
    "database": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
SHORT = settings(max_examples=6, derandomize=True, **_COMMON)
"""The pass of `make test`: a few seconds."""
LONG = settings(max_examples=300, **_COMMON)
"""The soak (`-m slow`): random examples, about 20 minutes."""
LONG_TIMEOUT_S = 900


def test_every_service_the_router_serves_is_fuzzed() -> None:
    served = {method.containing_service.full_name for method in METHODS}
    assert served == set(SERVICE_NAMES)
    assert len(METHODS) >= 30


def _marked(test: Callable[..., None], marks: list[pytest.MarkDecorator]) -> Callable[..., None]:
    for mark in marks:
        test = mark(test)
    return test


def _method(name: str) -> MethodDescriptor:
    return _POOL[f"switchboard.v1.{name}"]


def _request_tests(fuzz_settings: settings) -> Callable[..., None]:
    @pytest.mark.parametrize("method", METHODS, ids=method_path)
    @fuzz_settings
    @given(data=st.data())
    def test(fuzz_target: FuzzTarget, method: MethodDescriptor, data: st.DataObject) -> None:
        one = requests(method)
        sent = data.draw(st.lists(one, min_size=1, max_size=3) if method.client_streaming
                         else one.map(lambda request: [request]))  # fmt: skip
        event(fuzz_target.request(method, sent).code.name)

    return test


def _raw_tests(fuzz_settings: settings) -> Callable[..., None]:
    @pytest.mark.parametrize("method", METHODS, ids=method_path)
    @fuzz_settings
    @given(body=raw_bodies())
    def test(fuzz_target: FuzzTarget, method: MethodDescriptor, body: bytes) -> None:
        event(fuzz_target.raw(method, body).code.name)

    return test


def _expression_tests(fuzz_settings: settings) -> Callable[..., None]:
    @fuzz_settings
    @given(target=expressions(), condition=expressions(), step=expressions())
    def test(fuzz_target: FuzzTarget, target: str, condition: str, step: str) -> None:
        queue = apb.UpsertQueueRequest(queue=pb.Queue(queue_id="fuzzed", target_expression=target))
        outcome = fuzz_target.request(_method("AdminService.UpsertQueue"), [queue])
        event(f"queue {outcome.code.name}")
        route = pb.Route(
            queue_id="support", steps=[pb.RoutingStep(timeout_s=5, worker_expression=step)]
        )
        policy = pb.RoutingPolicy(
            policy_id="fuzzed",
            filters=[pb.PolicyFilter(name="f", expression=condition, route=route)],
        )
        request = apb.UpsertRoutingPolicyRequest(policy=policy)
        outcome = fuzz_target.request(_method("AdminService.UpsertRoutingPolicy"), [request])
        event(f"policy {outcome.code.name}")

    return test


test_requests = _request_tests(SHORT)
test_raw_bytes = _raw_tests(SHORT)
test_expressions = _expression_tests(settings(SHORT, max_examples=30))
_soak = [pytest.mark.slow, pytest.mark.timeout(LONG_TIMEOUT_S)]
test_requests_long = _marked(_request_tests(LONG), _soak)
test_raw_bytes_long = _marked(_raw_tests(LONG), _soak)
test_expressions_long = _marked(_expression_tests(settings(LONG, max_examples=1000)), _soak)
