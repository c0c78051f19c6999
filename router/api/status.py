"""One table from the core's errors to gRPC status codes."""

from __future__ import annotations

from typing import NoReturn

import grpc

from router.core.errors import CoreError, ErrorKind

LEADER_METADATA_KEY = "switchboard-leader"
"""Trailing metadata of an UNAVAILABLE answer from a standby: the leader's address, so that
clients go straight there."""

STATUS_OF_ERROR: dict[ErrorKind, grpc.StatusCode] = {
    ErrorKind.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    ErrorKind.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorKind.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    ErrorKind.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    ErrorKind.INTERNAL: grpc.StatusCode.INTERNAL,
}


async def abort(context: grpc.aio.ServicerContext, error: CoreError) -> NoReturn:
    await context.abort(STATUS_OF_ERROR[error.kind], error.message)
    raise AssertionError("unreachable: abort raises")
