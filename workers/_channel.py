"""The gRPC channel the SDK opens to a router, with its options set on purpose."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import grpc

from workers._credentials import TlsSettings
from workers._errors import error_from_rpc

T = TypeVar("T")

KEEPALIVE_TIME_MS = 20_000
"""Transport pings keep an agent's idle stream alive through NATs and load balancers. The router
accepts pings as often as every 10 s; twice that leaves room for timer jitter, which would
otherwise earn the client a "too many pings" GOAWAY."""


def open_channel(
    address: str,
    *,
    reconnect_backoff_s: tuple[float, float],
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
    tls: TlsSettings | None = None,
) -> grpc.aio.Channel:
    """A channel to `address` (over TLS with `tls`) whose own reconnect back-off follows the
    SDK's, so that grpc does not wait its default 1 s to 120 s between attempts under the SDK's
    retries."""
    first_s, largest_s = reconnect_backoff_s
    options: list[tuple[str, Any]] = [
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.initial_reconnect_backoff_ms", max(1, round(first_s * 1000))),
        ("grpc.min_reconnect_backoff_ms", max(1, round(first_s * 1000))),
        ("grpc.max_reconnect_backoff_ms", max(1, round(largest_s * 1000))),
    ]
    chain = list(interceptors)
    if tls is None:
        return grpc.aio.insecure_channel(address, options=options, interceptors=chain)
    if tls.server_name:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.aio.secure_channel(
        address, tls.channel_credentials(), options=options, interceptors=chain
    )


async def unary(call: Awaitable[T]) -> T:
    """Awaits a unary call, turning a failed status into the SDK's typed exception."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        raise error_from_rpc(error) from None
