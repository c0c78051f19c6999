"""The expression language's limits, its error, and how a document value is classified for
comparisons (shared by evaluation over one document and masks over columns)."""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

EXPRESSION_CHARS_MAX: Final = 4096
"""Longest accepted source text, in characters."""

EXPRESSION_DEPTH_MAX: Final = 32
"""Deepest accepted nesting, counting each open parenthesis and each NOT (or ``!``)."""

ARRAY_ITEMS_MAX: Final = 256
"""Most items in one array constant (``key IN [...]``)."""

KEY_SEGMENTS_MAX: Final = 8
"""Most dot-separated segments in one key (``a.b.c`` has three)."""

BoolArray = npt.NDArray[np.bool_]


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class ExpressionError(ValueError):
    """An expression that cannot be parsed.

    ``position`` is the 0-based character offset in the source where the problem is, and
    ``reason`` says what is wrong; ``str(error)`` reads ``"position 14: expected a constant
    after '=='"``.
    """

    position: int
    reason: str

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"position {position}: {reason}")
        self.position = position
        self.reason = reason

    def __reduce__(self) -> tuple[type[ExpressionError], tuple[int, str]]:
        # The default reduction passes the formatted message as the only argument, which does
        # not fit __init__; errors cross process boundaries in tests and tooling.
        return (type(self), (self.position, self.reason))


# --------------------------------------------------------------------------------------------
# Values: how a document value is classified for comparisons
# --------------------------------------------------------------------------------------------

# Value kinds. NULL covers both a missing key and JSON null.
NULL: Final = 0
BOOL: Final = 1
NUMBER: Final = 2
STRING: Final = 3
LIST: Final = 4
OTHER: Final = 5  # an object (dict) or a foreign type: equal to no constant


class Missing:
    """The value of a key that is absent, or whose path crosses a non-object."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Final = Missing()


class Scalar(NamedTuple):
    """A constant, or a document value that can equal one, tagged with its kind.

    Equality of two scalars is exactly the language's ``==``: the kind is part of the tuple,
    so ``true`` never equals ``1``, and numbers are floats, so ``1`` equals ``1.0``.
    """

    kind: int
    value: bool | float | str | None


NULL_SCALAR: Final = Scalar(NULL, None)


def as_float(number: int | float) -> float:
    """The float64 that a number compares as (the language's numbers are IEEE doubles)."""
    try:
        return float(number)
    except OverflowError:
        # An int beyond the float range; it compares like an infinity of its sign.
        return math.inf if number > 0 else -math.inf


def scalar_of(value: object) -> Scalar | None:
    """The scalar a document value compares as, or None for a list, an object or a foreign type."""
    if value is MISSING or value is None:
        return NULL_SCALAR
    if isinstance(value, bool):  # before int: bool is a subclass of int but not a number here
        return Scalar(BOOL, value)
    if isinstance(value, int | float):
        return Scalar(NUMBER, as_float(value))
    if isinstance(value, str):
        return Scalar(STRING, value)
    return None


def list_elements(value: list[Any] | tuple[Any, ...]) -> frozenset[Scalar]:
    """The scalar elements of a list value; nested lists and objects can equal no constant."""
    return frozenset(scalar for scalar in map(scalar_of, value) if scalar is not None)


def resolve(document: Mapping[str, Any], segments: tuple[str, ...]) -> object:
    """The value at a dotted path, or MISSING when a segment is absent or crosses a non-object."""
    current: object = document
    for segment in segments:
        if not isinstance(current, Mapping):
            return MISSING
        current = current.get(segment, MISSING)
        if current is MISSING:
            return MISSING
    return current


# Ordering operators, shared by evaluate (on floats and strings) and mask (on float64 arrays), so
# that both paths apply the very same comparison.
ORDERINGS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
