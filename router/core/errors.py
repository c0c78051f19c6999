"""The core's error tree. The API maps each kind to one gRPC status code in one table."""

from enum import Enum
from typing import Final

QUOTED_CHARS_MAX: Final = 64
"""Most characters of a refused value an error message repeats: the rest is cut (see `quoted`),
so that a huge value never makes a huge message."""

INTERNAL_MESSAGE: Final = "the router failed on this request (a bug, logged by the router)"
"""What a caller hit by a bug is told: never the exception itself, which is logged."""


class ErrorKind(Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


def shown(value: str) -> str:
    """`value` as an error message shows it: at most `QUOTED_CHARS_MAX` characters, then an
    ellipsis and the full length when it is longer."""
    if len(value) <= QUOTED_CHARS_MAX:
        return value
    return f"{value[:QUOTED_CHARS_MAX]}… ({len(value)} characters)"


def quoted(value: str) -> str:
    """`value` quoted (as `repr` does) for an error message, cut as `shown` cuts it."""
    if len(value) <= QUOTED_CHARS_MAX:
        return repr(value)
    return f"{value[:QUOTED_CHARS_MAX]!r}… ({len(value)} characters)"


class CoreError(Exception):
    """A command the core refused. The state is unchanged when one is raised."""

    kind: ErrorKind = ErrorKind.FAILED_PRECONDITION

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(CoreError):
    """A field's value is not allowed; `field` names it (dotted path into the request)."""

    kind = ErrorKind.INVALID_ARGUMENT

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class NotFound(CoreError):
    kind = ErrorKind.NOT_FOUND


class AlreadyExists(CoreError):
    kind = ErrorKind.ALREADY_EXISTS


class FailedPrecondition(CoreError):
    kind = ErrorKind.FAILED_PRECONDITION


class PermissionDenied(CoreError):
    """A worker acting on what is another's (answering an offer made to someone else)."""

    kind = ErrorKind.PERMISSION_DENIED


class ResourceExhausted(CoreError):
    kind = ErrorKind.RESOURCE_EXHAUSTED


class OutOfRange(CoreError):
    """A position (an event cursor) outside what is held: older than the retention window, or
    ahead of the newest."""

    kind = ErrorKind.OUT_OF_RANGE


class Unavailable(CoreError):
    """The command could not be made durable (the store could not be written), so it took no
    effect; it is safe to retry."""

    kind = ErrorKind.UNAVAILABLE


class Internal(CoreError):
    """A bug met while applying the command (logged); the request is not known to have taken
    effect. The caller is told `INTERNAL_MESSAGE`, never the exception."""

    kind = ErrorKind.INTERNAL

    def __init__(self, message: str = INTERNAL_MESSAGE) -> None:
        super().__init__(message)
