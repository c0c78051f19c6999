"""The core's error tree. The API maps each kind to one gRPC status code in one table."""

from enum import Enum


class ErrorKind(Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL = "INTERNAL"


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
    effect."""

    kind = ErrorKind.INTERNAL
