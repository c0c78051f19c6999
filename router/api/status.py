"""The one mapping from the router's errors to gRPC status codes and messages.

Servicers raise: a `CoreError` from the core or the single writer (a refused command), an
`InvalidArgument` from validation (`router.api.convert`, `router.api.paging`), or `Unavailable`
when the store could not be written or this router does not lead. Every RPC method is wrapped
by `@maps_errors`, which turns those into the status of `STATUS_OF_ERROR` with the error's
message; the Connect stream answers a message it refuses with `connect_error()`, the same code
(by name) and the same message, in-stream. No servicer builds a status by hand.

Any other exception is a bug: it is logged once, with its traceback, and the caller gets
INTERNAL with a message that says nothing of it (never UNKNOWN, never a Python exception's text).
Every message is cut to `STATUS_MESSAGE_CHARS_MAX`: gRPC carries it in a header, and one over
the 16 KiB header limit would reach the client as RESOURCE_EXHAUSTED instead."""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar, cast

import grpc

from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router.core.errors import INTERNAL_MESSAGE, CoreError, ErrorKind

log = logging.getLogger(__name__)

LEADER_METADATA_KEY = "switchboard-leader"
"""Trailing metadata of an UNAVAILABLE answer from a standby: the leader's address, so that
clients go straight there. (The SDK keeps its own copy, `workers._errors.LEADER_METADATA_KEY`,
so as not to import the server; a test checks that the two agree.)"""

STATUS_OF_ERROR: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.PERMISSION_DENIED: grpc.StatusCode.PERMISSION_DENIED,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.OUT_OF_RANGE: grpc.StatusCode.OUT_OF_RANGE,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}

STATUS_MESSAGE_CHARS_MAX = 1024
"""Longest status message: percent-encoded, 1,024 characters of up to 4 UTF-8 bytes stay under
gRPC's 16 KiB limit on a reply's headers. Messages quote at most a short prefix of a bad value
(`router.core.errors.quoted`); this cut is the safety net."""

MAPS_ERRORS_ATTRIBUTE = "__maps_errors__"
"""Set on every method wrapped by `maps_errors` (a test checks that every RPC method is)."""

Method = TypeVar("Method", bound=Callable[..., Any])


def status_of(error: CoreError) -> tuple[grpc.StatusCode, str]:
    """The status code and message a caller is given for `error`."""
    return STATUS_OF_ERROR[error.kind], capped(error.message)


def capped(message: str) -> str:
    """`message` cut to `STATUS_MESSAGE_CHARS_MAX` characters (the cut marked by an ellipsis)."""
    if len(message) <= STATUS_MESSAGE_CHARS_MAX:
        return message
    return message[: STATUS_MESSAGE_CHARS_MAX - 1] + "…"


async def abort_internal(context: grpc.aio.ServicerContext, method: str) -> NoReturn:
    """Ends the call with INTERNAL for a bug met in `method`, which it logs (with the traceback
    of the exception being handled)."""
    log.exception("%s failed: a bug", method)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
    raise AssertionError("unreachable: abort raises")


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
    await context.abort(grpc.StatusCode.UNAVAILABLE, capped(message))
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
    generator) so that a `CoreError` it raises ends the call with the error's status, and any
    other exception (a bug) with INTERNAL."""
    name = method.__qualname__
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
                except grpc.aio.AbortError:  # the method ended the call itself
                    raise
                except Exception:
                    await abort_internal(context, name)

        wrapper: Callable[..., Any] = stream
    else:

        @functools.wraps(method)
        async def unary(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
            try:
                return await cast(Callable[..., Awaitable[Any]], method)(self, request, context)
            except CoreError as error:
                await abort(context, error)
            except grpc.aio.AbortError:  # the method ended the call itself
                raise
            except Exception:
                await abort_internal(context, name)

        wrapper = unary
    setattr(wrapper, MAPS_ERRORS_ATTRIBUTE, True)
    return cast(Method, wrapper)
