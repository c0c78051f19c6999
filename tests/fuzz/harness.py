"""Sends fuzzed requests to a live router and checks what a client must be able to rely on:
no answer is UNKNOWN or INTERNAL (in a status or in a Connect stream's error), the router stays
up (health answers SERVING), and a refused request changes nothing (the state digest before and
after it are equal)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import admin_service_pb2_grpc as agrpc
from tests.fuzz.strategies import message_class, method_path

CALL_TIMEOUT_S = 10.0
NEVER = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL})
"""What no request, however malformed, may be answered with: UNKNOWN is grpc's answer to an
exception the router let through, INTERNAL the router's to a bug of its own."""


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    responses: list[object] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.details[:300]!r} after {len(self.responses)} responses"


class FuzzTarget:
    """A router under fuzzing, reached by one channel."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel
        self._admin = agrpc.AdminServiceStub(channel)
        self._health = health_pb2_grpc.HealthStub(channel)
        self._digest: str | None = None
        """The state digest as of the last call, when known (a success may change it)."""

    def request(self, method: MethodDescriptor, requests: list[Message]) -> Outcome:
        """Sends a request (or, to a request-streaming method, a stream of them) and checks the
        answer; returns it."""
        path = method_path(method)
        output = message_class(method.output_type)
        serialize, deserialize = _serialize, output.FromString
        if method.client_streaming:
            call: Callable[[], Outcome] = lambda: _stream(  # noqa: E731
                self._channel.stream_stream(path, serialize, deserialize), requests
            )
        elif method.server_streaming:
            call = lambda: _stream(  # noqa: E731
                self._channel.unary_stream(path, serialize, deserialize), requests[0]
            )
        else:
            call = lambda: _unary(  # noqa: E731
                self._channel.unary_unary(path, serialize, deserialize), requests[0]
            )
        return self._checked(method, call)

    def raw(self, method: MethodDescriptor, body: bytes) -> Outcome:
        """Sends `body` as the request's bytes, whatever they are."""
        path = method_path(method)
        if method.client_streaming:
            call: Callable[[], Outcome] = lambda: _stream(  # noqa: E731
                self._channel.stream_stream(path, None, None), [body]
            )
        elif method.server_streaming:
            call = lambda: _stream(self._channel.unary_stream(path, None, None), body)  # noqa: E731
        else:
            call = lambda: _unary(self._channel.unary_unary(path, None, None), body)  # noqa: E731
        return self._checked(method, call)

    def _checked(self, method: MethodDescriptor, call: Callable[[], Outcome]) -> Outcome:
        before = self._known_digest()
        outcome = call()
        assert outcome.code not in NEVER, f"{method_path(method)} answered {outcome}"
        for response in outcome.responses:
            error = getattr(response, "error", None)
            if error is not None and response.WhichOneof("kind") == "error":  # type: ignore[attr-defined]
                assert error.code not in {code.name for code in NEVER}, (
                    f"{method_path(method)} answered in-stream {error.code}: {error.message!r}"
                )
        refused = outcome.code != grpc.StatusCode.OK
        if refused and not outcome.responses:  # nothing of it was taken
            after = self._fetch_digest()
            assert after == before, f"{method_path(method)} refused ({outcome}) yet changed state"
        elif not _reads_only(method):
            self._digest = None
        self.assert_serving()
        return outcome

    def assert_serving(self) -> None:
        reply = self._health.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

    def _known_digest(self) -> str:
        return self._digest if self._digest is not None else self._fetch_digest()

    def _fetch_digest(self) -> str:
        reply = self._admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=CALL_TIMEOUT_S)
        self._digest = reply.digest
        return reply.digest


def _reads_only(method: MethodDescriptor) -> bool:
    return method.name.startswith(("Get", "List"))


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _unary(call: grpc.UnaryUnaryMultiCallable, request: object) -> Outcome:
    try:
        response = call(request, timeout=CALL_TIMEOUT_S)
    except grpc.RpcError as error:
        return Outcome(error.code(), error.details() or "")
    return Outcome(grpc.StatusCode.OK, "", [response])


def _stream(call: Callable[..., Iterator[object]], request: object) -> Outcome:
    """A streaming call: the request side (when a list) closes after its last message, and the
    router ends the stream then."""
    responses: list[object] = []
    arguments = iter(request) if isinstance(request, list) else request
    try:
        for response in call(arguments, timeout=CALL_TIMEOUT_S):
            responses.append(response)
    except grpc.RpcError as error:
        return Outcome(error.code(), error.details() or "", responses)
    return Outcome(grpc.StatusCode.OK, "", responses)
