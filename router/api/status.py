"""The one mapping from the router's errors to gRPC status codes and messages.

Servicers raise: a `CoreError` from the core or the single writer (a refused command), an
`InvalidArgument` from validation (`router.api.convert`, `router.api.paging`), or `Unavailable`
when the store could not be written or this router does not lead. Every RPC method is wrapped
by `@maps_errors`, which turns those into the status of `STATUS_OF_ERROR` with the error's
message; the Connect stream answers a message it refuses with `connect_error()`, the same code
(by name) and the same message, in-stream. No servicer builds a status by hand."""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast

import grpc

from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router.core.errors import CoreError, ErrorKind

LEADER_METADATA_KEY = "switchboard-leader"
"""Trailing metadata of an UNAVAILABLE answer from a standby: the leader's address, so that
clients go straight there. (The SDK keeps its own copy, `workers._errors.LEADER_METADATA_KEY`,
so as not to import the server; a test checks that the two agree.)"""

STATUS_OF_ERROR: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}

MAPS_ERRORS_ATTRIBUTE = "__maps_errors__"
"""Set on every method wrapped by `maps_errors` (a test checks that every RPC method is)."""

Method = TypeVar("Method", bound=Callable[..., Any])


def status_of(error: CoreError) -> tuple[grpc.StatusCode, str]:
    """The status code and message a caller is given for `error`."""
    return STATUS_OF_ERROR[error.kind], error.message


async def abort(context: grpc.aio.ServicerContext, error: CoreError) -> NoReturn:
    """Ends the call with the status of `error`."""
    code, message = status_of(error)
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")


async def abort_unavailable(
    context: grpc.aio.ServicerContext, message: str, *, leader_address: str = ""
) -> NoReturn:
    """Ends the call with UNAVAILABLE, naming the leader (when known) in the trailing metadata."""
    if leader_address:
        context.set_trailing_metadata(((LEADER_METADATA_KEY, leader_address),))
    await context.abort(grpc.StatusCode.UNAVAILABLE, message)
    raise AssertionError("unreachable: abort raises")


def connect_error(request_id: str, error: CoreError) -> wpb.ConnectResponse:
    """The Connect stream's in-stream answer to a message it refused: the code's name and the
    message a unary call would have had."""
    code, message = status_of(error)
    return wpb.ConnectResponse(
        request_id=request_id, error=wpb.ConnectResponse.Error(code=code.name, message=message)
    )


def maps_errors(method: Method) -> Method:
    """Wraps a servicer's RPC method (unary, or a response stream written as an async
    generator) so that a `CoreError` it raises ends the call with the error's status."""
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def stream(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            # aclosing: the generator's own clean-up runs as soon as the call ends.
            async with contextlib.aclosing(method(self, request, context)) as responses:
                try:
                    async for response in cast(AsyncIterator[Any], responses):
                        yield response
                except CoreError as error:
                    await abort(context, error)

        wrapper: Callable[..., Any] = stream
    else:

        @functools.wraps(method)
        async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await cast(Callable[..., Awaitable[Any]], method)(self, request, context)
            except CoreError as error:
                await abort(context, error)

        wrapper = unary
    setattr(wrapper, MAPS_ERRORS_ATTRIBUTE, True)
    return cast(Method, wrapper)
