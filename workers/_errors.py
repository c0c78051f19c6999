"""The SDK's error tree, and the one place where gRPC status codes become typed exceptions.

Every call of the SDK raises a `SwitchboardError` (or one of its subclasses) for a refusal of the
router, whether the refusal came as the status of a unary call or as an `error{code}` answer on
the Connect stream, so that callers catch one tree whatever the transport::

    SwitchboardError            any refusal; .code (grpc.StatusCode) and .message
    ├── InvalidArgument         a field's value is not allowed (the message names the field)
    ├── NotFound                no such task, worker, queue or offer
    ├── AlreadyExists           a client_request_id reused with a different payload
    ├── FailedPrecondition      an illegal transition, e.g. accepting an offer that expired
    ├── ResourceExhausted       a limit was hit or the queue is full
    ├── PermissionDenied        the caller may not do this
    ├── Unauthenticated         the caller's credentials are missing or wrong
    └── Unavailable             the router cannot answer now (not the leader, store down,
                                connection lost): safe to retry

Codes without a class of their own (DEADLINE_EXCEEDED, INTERNAL, ...) raise the base class.
"""

from __future__ import annotations

import grpc

LEADER_METADATA_KEY = "switchboard-leader"
"""Trailing metadata of an UNAVAILABLE answer from a standby: the leader's address. The router's
`router.api.status.LEADER_METADATA_KEY`, copied so that the SDK never imports the server (a test
checks that the two agree)."""


class SwitchboardError(Exception):
    """A request the router refused or could not answer. `code` says how, `message` why."""

    def __init__(self, code: grpc.StatusCode, message: str, *, leader_address: str = "") -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.leader_address = leader_address
        """With UNAVAILABLE from a standby: where the leader is (empty when unknown)."""


class InvalidArgument(SwitchboardError):
    """A field's value is not allowed; the message starts with the field's name."""


class NotFound(SwitchboardError):
    """The task, worker, queue or offer named does not exist."""


class AlreadyExists(SwitchboardError):
    """A client_request_id was reused with a different payload."""


class FailedPrecondition(SwitchboardError):
    """The request is not allowed in the current state (an illegal transition)."""


class ResourceExhausted(SwitchboardError):
    """A documented limit was reached (e.g. a full queue)."""


class PermissionDenied(SwitchboardError):
    """The caller is not allowed to do this."""


class Unauthenticated(SwitchboardError):
    """The caller's credentials are missing or invalid."""


class Unavailable(SwitchboardError):
    """The router could not answer now; nothing was promised, so retrying is safe."""


_ERROR_CLASS_OF_CODE: dict[grpc.StatusCode, type[SwitchboardError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
}


def error_for(
    code: grpc.StatusCode | str, message: str, *, leader_address: str = ""
) -> SwitchboardError:
    """The typed exception for a gRPC status code, given as a `grpc.StatusCode` (a unary call's
    status) or as its name (the `code` of a Connect stream `error`). An unknown name maps to
    UNKNOWN rather than failing, so a newer router never crashes an older SDK."""
    if isinstance(code, str):
        code = grpc.StatusCode.__members__.get(code, grpc.StatusCode.UNKNOWN)
    error_class = _ERROR_CLASS_OF_CODE.get(code, SwitchboardError)
    return error_class(code, message, leader_address=leader_address)


def error_from_rpc(error: grpc.aio.AioRpcError) -> SwitchboardError:
    """The typed exception for a failed gRPC call."""
    leader_address = ""
    for key, value in error.trailing_metadata() or ():
        if key == LEADER_METADATA_KEY:
            leader_address = value if isinstance(value, str) else value.decode()
    return error_for(error.code(), error.details() or "", leader_address=leader_address)
