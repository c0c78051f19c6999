"""Admission of every request before its servicer: a decoding that never raises, and the length
limit of every string (`router.api.bounds`).

grpc.aio decodes a request with its handler's `request_deserializer` before the servicer runs,
and an exception there (bytes that are not the message, a string that is not UTF-8, messages
nested deeper than protobuf decodes) reaches the client as UNKNOWN with the exception's text,
logged by grpc as an error with a traceback. `RequestAdmission`, a server interceptor, gives every
handler a deserializer that turns such a request into a `Refusal` instead of raising, and a
behaviour that answers a Refusal with INVALID_ARGUMENT ("request is not a valid
switchboard.v1.CreateTaskRequest: ..."); a message of a request stream that is refused ends the
stream so. A request of the API with a string over its limit is refused the same way, naming the
field, before anything reads it."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.message import Message

from router.api.bounds import check_strings
from router.api.handlers import behavior_of, replaced, streaming
from router.api.status import capped
from router.core.errors import InvalidArgument
from router.core.limits import ATTRIBUTES_DEPTH_MAX

API_METHOD_PREFIX = "/switchboard.v1."
"""Methods whose requests are held to the string limits (health and reflection are decoded
safely too, but their strings are theirs)."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """What the deserializer returns in place of a request it refuses."""

    message: str


class RequestAdmission(grpc.aio.ServerInterceptor):
    """Wraps every handler so that a malformed request is INVALID_ARGUMENT, never UNKNOWN.

    Put it last among the interceptors: those before it that answer in a handler of their own
    (a standby's refusal) reuse its safe deserializer."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        return _admitted(handler, handler_call_details.method.startswith(API_METHOD_PREFIX))


def _admitted(handler: grpc.RpcMethodHandler, bounded: bool) -> grpc.RpcMethodHandler:
    behavior = behavior_of(handler)
    if not (inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)):
        return handler  # grpc.aio runs a synchronous behaviour itself; none is ours
    wrap = {
        (False, False): _unary_request,
        (False, True): _unary_request_stream,
        (True, False): _request_stream,
        (True, True): _request_stream_stream,
    }[streaming(handler)]
    deserializer = _safe_deserializer(handler.request_deserializer, bounded=bounded)
    return replaced(handler, wrap(behavior), request_deserializer=deserializer)


def _safe_deserializer(
    deserializer: Callable[[bytes], Message], *, bounded: bool
) -> Callable[[bytes], Message | Refusal]:
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)
    name = descriptor.full_name if descriptor is not None else "request message"

    def deserialize(raw: bytes) -> Message | Refusal:
        try:
            request = deserializer(raw)
        except Exception as error:  # DecodeError: whatever the bytes, the client's mistake
            return Refusal(f"request is not a valid {name}: {_decode_problem(error)}")
        if bounded:
            try:
                check_strings(request)
            except InvalidArgument as error:
                return Refusal(error.message)
        return request

    return deserialize


def _decode_problem(error: Exception) -> str:
    """What protobuf's decoder said, in words for the client (upb's reason, after its "Error
    parsing message with type '...':" preamble)."""
    reason = str(error).rpartition("': ")[2].strip() or "malformed"
    if "MaxDepth" in reason:
        return (
            "its messages nest deeper than protobuf decodes (attributes may nest at most "
            f"{ATTRIBUTES_DEPTH_MAX} levels)"
        )
    return f"the bytes do not decode ({capped(reason)})"


async def _refuse(context: grpc.aio.ServicerContext, refusal: Refusal) -> None:
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, capped(refusal.message))


def _unary_request(behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        if isinstance(request, Refusal):
            await _refuse(context, request)
        return await behavior(request, context)

    return unary


def _unary_request_stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def stream(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        if isinstance(request, Refusal):
            await _refuse(context, request)
        async for response in _responses(behavior(request, context)):
            yield response

    return stream


def _request_stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def unary(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> Any:
        return await behavior(_admitted_requests(requests, context), context)

    return unary


def _request_stream_stream(behavior: Callable[..., Any]) -> Callable[..., Any]:
    async def stream(
        requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Any]:
        responses = behavior(_admitted_requests(requests, context), context)
        async for response in _responses(responses):
            yield response

    return stream


async def _admitted_requests(
    requests: AsyncIterator[Any], context: grpc.aio.ServicerContext
) -> AsyncIterator[Any]:
    """The stream's requests; the first refused one ends the call with INVALID_ARGUMENT (the
    abort raises in whoever reads the stream, and sets the call's status wherever that is)."""
    async for request in requests:
        if isinstance(request, Refusal):
            await _refuse(context, request)
        yield request


async def _responses(result: Any) -> AsyncIterator[Any]:
    """The responses of a response-streaming behaviour: an async generator, or a coroutine that
    writes them with `context.write` (nothing to relay then)."""
    if inspect.isasyncgen(result):
        async for response in result:
            yield response
    else:
        await result
