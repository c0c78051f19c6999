"""The API's one error mapping (`router.api.status`): every RPC method of every servicer goes
through it, and a refusal gets the same code and message as a unary status and as a Connect
stream's in-stream error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from router._proto.switchboard.v1 import admin_service_pb2_grpc as agrpc
from router._proto.switchboard.v1 import clock_service_pb2_grpc as cgrpc
from router._proto.switchboard.v1 import stats_service_pb2_grpc as sgrpc
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc
from router._proto.switchboard.v1 import worker_service_pb2_grpc as wgrpc
from router.api.admin import AdminServicer
from router.api.stats import ClockServicer, StatsServicer
from router.api.status import (
    MAPS_ERRORS_ATTRIBUTE,
    STATUS_MESSAGE_CHARS_MAX,
    connect_error,
    maps_errors,
    status_of,
)
from router.api.tasks import TaskServicer
from router.api.workers import WorkerServicer
from router.core.errors import (
    INTERNAL_MESSAGE,
    QUOTED_CHARS_MAX,
    CoreError,
    InvalidArgument,
    NotFound,
    Unavailable,
    quoted,
)

SERVICERS = [
    (TaskServicer, tgrpc.TaskServiceServicer),
    (WorkerServicer, wgrpc.WorkerServiceServicer),
    (AdminServicer, agrpc.AdminServiceServicer),
    (StatsServicer, sgrpc.StatsServiceServicer),
    (ClockServicer, cgrpc.ClockServiceServicer),
]


class Aborted(Exception):
    pass


class FakeContext:
    """What grpc.aio's context does on abort: remember the status and raise."""

    def __init__(self) -> None:
        self.status: tuple[grpc.StatusCode, str] | None = None

    async def abort(self, code: grpc.StatusCode, message: str) -> None:
        self.status = (code, message)
        raise Aborted


@pytest.mark.parametrize(("servicer", "base"), SERVICERS, ids=lambda c: c.__name__)
def test_every_rpc_method_maps_errors(servicer: type, base: type) -> None:
    rpcs = [name for name in vars(base) if not name.startswith("_")]
    assert rpcs
    for name in rpcs:
        method = getattr(servicer, name)
        assert method is not getattr(base, name), f"{servicer.__name__}.{name}: not implemented"
        assert getattr(method, MAPS_ERRORS_ATTRIBUTE, False), f"{servicer.__name__}.{name}"


class Refusing:
    def __init__(self, error: CoreError) -> None:
        self.error = error

    @maps_errors
    async def Unary(self, request: Any, context: Any) -> str:
        raise self.error

    @maps_errors
    async def Stream(self, request: Any, context: Any) -> AsyncIterator[str]:
        yield "first"
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidArgument("task.channel", "required"), grpc.StatusCode.INVALID_ARGUMENT),
        (NotFound("no task t-1"), grpc.StatusCode.NOT_FOUND),
        (Unavailable("the router's store is unreachable"), grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_unary_stream_and_in_stream_errors_agree(error: CoreError, status: grpc.StatusCode) -> None:
    async def scenario() -> None:
        refusing = Refusing(error)
        unary_context = FakeContext()
        with pytest.raises(Aborted):
            await refusing.Unary(None, unary_context)
        assert unary_context.status == (status, error.message)

        stream_context = FakeContext()
        received = []
        with pytest.raises(Aborted):
            async for message in refusing.Stream(None, stream_context):
                received.append(message)
        assert received == ["first"]
        assert stream_context.status == (status, error.message)

    asyncio.run(scenario())
    in_stream = connect_error("r7", error)
    assert in_stream.request_id == "r7"
    assert (in_stream.error.code, in_stream.error.message) == (status.name, error.message)


class Buggy:
    @maps_errors
    async def Unary(self, request: Any, context: Any) -> str:
        raise KeyError("a secret of the router's internals")

    @maps_errors
    async def Stream(self, request: Any, context: Any) -> AsyncIterator[str]:
        yield "first"
        raise ZeroDivisionError("another one")


def test_a_bug_is_internal_with_a_generic_message_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        unary_context = FakeContext()
        with pytest.raises(Aborted):
            await Buggy().Unary(None, unary_context)
        assert unary_context.status == (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
        stream_context = FakeContext()
        with pytest.raises(Aborted):
            async for _ in Buggy().Stream(None, stream_context):
                pass
        assert stream_context.status == (grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)

    asyncio.run(scenario())
    logged = [record for record in caplog.records if record.levelname == "ERROR"]
    assert [record.exc_info[0] for record in logged if record.exc_info] == [
        KeyError, ZeroDivisionError
    ]  # fmt: skip
    assert "secret" not in INTERNAL_MESSAGE


def test_a_status_message_is_capped() -> None:
    code, message = status_of(InvalidArgument("field", "x" * 100_000))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(message) == STATUS_MESSAGE_CHARS_MAX and message.endswith("…")
    assert message.startswith("field: xxx")
    in_stream = connect_error("r1", InvalidArgument("field", "y" * 100_000))
    assert len(in_stream.error.message) == STATUS_MESSAGE_CHARS_MAX


def test_a_refused_value_is_quoted_short() -> None:
    assert quoted("abc") == "'abc'"
    long = quoted("z" * 5000)
    assert long == f"{'z' * QUOTED_CHARS_MAX!r}… (5000 characters)"
