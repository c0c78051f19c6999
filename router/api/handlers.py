"""Building a gRPC method handler like another: what server interceptors need to answer a call
with a behaviour of their own (a standby's refusal, the admission of requests)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

_MAKE = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def streaming(handler: grpc.RpcMethodHandler) -> tuple[bool, bool]:
    """Whether the method streams its requests, and its responses."""
    return handler.request_streaming, handler.response_streaming


def behavior_of(handler: grpc.RpcMethodHandler) -> Callable[..., Any]:
    """The function that serves the handler's calls, whatever its kind."""
    return {
        (False, False): handler.unary_unary,
        (False, True): handler.unary_stream,
        (True, False): handler.stream_unary,
        (True, True): handler.stream_stream,
    }[streaming(handler)]


def replaced(
    handler: grpc.RpcMethodHandler,
    behavior: Callable[..., Any],
    *,
    request_deserializer: Callable[[bytes], Any] | None = None,
) -> grpc.RpcMethodHandler:
    """A handler of the same kind and serializers as `handler` that serves calls with
    `behavior` (and decodes requests with `request_deserializer`, when given)."""
    return _MAKE[streaming(handler)](
        behavior,
        request_deserializer=request_deserializer or handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


async def first_request(
    requests: AsyncIterator[Any], timeout_s: float, context: grpc.aio.ServicerContext
) -> Any | None:
    """The first message of a request stream (None when the caller closed it at once); a stream
    that sends nothing for `timeout_s` ends DEADLINE_EXCEEDED, so that a silent caller holds no
    stream open (the only scoped request stream is Connect, whose first message is a hello)."""
    try:
        return await asyncio.wait_for(anext(requests, None), timeout_s)
    except TimeoutError:
        await context.abort(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"no hello within {timeout_s:g} s: the first message of a Connect stream must be a "
            "hello",
        )
        raise  # (abort raises)
