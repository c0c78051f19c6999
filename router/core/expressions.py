"""Target and filter expressions: a small, safe language over attribute documents.

A queue's target expression (``languages HAS 'es' AND skills.billing >= 3``) chooses the workers
that may serve it, and a routing policy's filters choose a queue for a task. Both are written in
the same language, which is parsed here into a tree of typed nodes; nothing is ever passed to
``eval``. An :class:`Expression` answers in two ways with the same meaning:

- :meth:`Expression.evaluate` over one document (task filters, one task at a time);
- :meth:`Expression.mask` over an :class:`AttributeColumns` (one row per worker), as a numpy
  boolean array computed with array operations over every row at once.

The user-facing reference (grammar, NULL and type rules, limits, error format) is
``docs/expressions.md``; keep the two in step.
"""

from __future__ import annotations

import enum
import math
import operator
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import numpy as np
import numpy.typing as npt

__all__ = [
    "ARRAY_ITEMS_MAX",
    "EXPRESSION_CHARS_MAX",
    "EXPRESSION_DEPTH_MAX",
    "KEY_SEGMENTS_MAX",
    "MATCH_ALL",
    "AttributeColumns",
    "Expression",
    "ExpressionError",
    "parse",
]

EXPRESSION_CHARS_MAX: Final = 4096
"""Longest accepted source text, in characters."""

EXPRESSION_DEPTH_MAX: Final = 32
"""Deepest accepted nesting, counting each open parenthesis and each NOT (or ``!``)."""

ARRAY_ITEMS_MAX: Final = 256
"""Most items in one array constant (``key IN [...]``)."""

KEY_SEGMENTS_MAX: Final = 8
"""Most dot-separated segments in one key (``a.b.c`` has three)."""

BoolArray = npt.NDArray[np.bool_]

# Rows are stored in arrays whose capacity doubles, starting from this many rows.
_ROW_CAPACITY_MIN: Final = 16
# Cached per-string lookup tables of one path; a bound, because every distinct constant used in
# an ordering or CONTAINS creates one, and a runaway set of constants must not grow memory forever.
_STRING_TABLES_MAX: Final = 1024


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
_NULL: Final = 0
_BOOL: Final = 1
_NUMBER: Final = 2
_STRING: Final = 3
_LIST: Final = 4
_OTHER: Final = 5  # an object (dict) or a foreign type: equal to no constant


class _Missing:
    """The value of a key that is absent, or whose path crosses a non-object."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()


class _Scalar(NamedTuple):
    """A constant, or a document value that can equal one, tagged with its kind.

    Equality of two scalars is exactly the language's ``==``: the kind is part of the tuple,
    so ``true`` never equals ``1``, and numbers are floats, so ``1`` equals ``1.0``.
    """

    kind: int
    value: bool | float | str | None


_NULL_SCALAR: Final = _Scalar(_NULL, None)


def _as_float(number: int | float) -> float:
    """The float64 that a number compares as (the language's numbers are IEEE doubles)."""
    try:
        return float(number)
    except OverflowError:
        # An int beyond the float range; it compares like an infinity of its sign.
        return math.inf if number > 0 else -math.inf


def _scalar_of(value: object) -> _Scalar | None:
    """The scalar a document value compares as, or None for a list, an object or a foreign type."""
    if value is _MISSING or value is None:
        return _NULL_SCALAR
    if isinstance(value, bool):  # before int: bool is a subclass of int but not a number here
        return _Scalar(_BOOL, value)
    if isinstance(value, int | float):
        return _Scalar(_NUMBER, _as_float(value))
    if isinstance(value, str):
        return _Scalar(_STRING, value)
    return None


def _is_list(value: object) -> bool:
    return isinstance(value, list | tuple)


def _list_elements(value: list[Any] | tuple[Any, ...]) -> frozenset[_Scalar]:
    """The scalar elements of a list value; nested lists and objects can equal no constant."""
    return frozenset(scalar for scalar in map(_scalar_of, value) if scalar is not None)


def _resolve(document: Mapping[str, Any], segments: tuple[str, ...]) -> object:
    """The value at a dotted path, or _MISSING when a segment is absent or crosses a non-object."""
    current: object = document
    for segment in segments:
        if not isinstance(current, Mapping):
            return _MISSING
        current = current.get(segment, _MISSING)
        if current is _MISSING:
            return _MISSING
    return current


# Ordering operators, shared by evaluate (on floats and strings) and mask (on float64 arrays), so
# that both paths apply the very same comparison.
_ORDERINGS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


# --------------------------------------------------------------------------------------------
# Columns: many documents, one row each, as typed numpy arrays
# --------------------------------------------------------------------------------------------


# One row's value as stored in the typed arrays of a path: kind, number (NaN when not a
# number), true-ness, string id (-1 when not a string), list elements (None when not a list).
_Encoded = tuple[int, float, bool, int, frozenset[_Scalar] | None]


class _PathColumn:
    """Typed columns of one dotted path over all rows (arrays sized to the row capacity).

    Every row holds exactly one kind; the other typed arrays hold their neutral value there
    (NaN, False, -1, None), so that a comparison on one typed array is false on rows of any other
    kind without consulting ``kinds``.
    """

    def __init__(self, segments: tuple[str, ...], capacity: int) -> None:
        self.segments = segments
        self.kinds = np.full(capacity, _NULL, dtype=np.int8)
        self.numbers = np.full(capacity, np.nan, dtype=np.float64)
        self.booleans = np.zeros(capacity, dtype=np.bool_)  # True only for the value true
        # Strings are interned: a row holds the id of its string, -1 for any other kind, so that
        # index -1 into a lookup table (whose last entry is False) answers "not a string".
        self.string_ids = np.full(capacity, -1, dtype=np.int32)
        self.strings: list[str] = []
        self.string_index: dict[str, int] = {}
        self.string_tables: dict[Hashable, BoolArray] = {}
        # List values: the scalar elements per row, and per asked-for constant a membership
        # column built on first use and then kept up to date by store().
        self.lists: list[frozenset[_Scalar] | None] = [None] * capacity
        self.list_row_count = 0
        self.members: dict[_Scalar, BoolArray] = {}

    def grow(self, capacity: int) -> None:
        """Extend every array to ``capacity`` rows; the new rows hold a missing value."""
        extra = capacity - len(self.kinds)
        self.kinds = np.concatenate([self.kinds, np.full(extra, _NULL, dtype=np.int8)])
        self.numbers = np.concatenate([self.numbers, np.full(extra, np.nan)])
        self.booleans = np.concatenate([self.booleans, np.zeros(extra, dtype=np.bool_)])
        self.string_ids = np.concatenate([self.string_ids, np.full(extra, -1, dtype=np.int32)])
        self.lists.extend([None] * extra)
        for constant, column in self.members.items():
            self.members[constant] = np.concatenate([column, np.zeros(extra, dtype=np.bool_)])

    def store(self, row: int, value: object) -> None:
        """Write one row's value at this path into every typed array of the path."""
        kind, number, boolean, string_id, elements = self._encode(value)
        self.kinds[row] = kind
        self.numbers[row] = number
        self.booleans[row] = boolean
        self.string_ids[row] = string_id
        previous = self.lists[row]
        self.list_row_count += (elements is not None) - (previous is not None)
        self.lists[row] = elements
        for constant, column in self.members.items():
            column[row] = elements is not None and constant in elements

    def fill(self, values: list[object]) -> None:
        """Write rows ``0 .. len(values) - 1`` of a path that has no membership columns yet.

        The same as store() row by row, but with one array assignment per typed array: this is
        the first mask() that asks for the path, over every row.
        """
        assert not self.members, "fill() is only for a path being built"
        if not values:
            return
        kinds, numbers, booleans, string_ids, lists = zip(*map(self._encode, values), strict=True)
        count = len(values)
        self.kinds[:count] = kinds
        self.numbers[:count] = numbers
        self.booleans[:count] = booleans
        self.string_ids[:count] = string_ids
        self.lists[:count] = lists
        self.list_row_count = count - lists.count(None)

    def _encode(self, value: object) -> _Encoded:
        """A value as its entries in (kinds, numbers, booleans, string_ids, lists)."""
        scalar = _scalar_of(value)
        if scalar is None:
            if isinstance(value, list | tuple):
                return (_LIST, math.nan, False, -1, _list_elements(value))
            return (_OTHER, math.nan, False, -1, None)
        payload = scalar.value
        return (
            scalar.kind,
            payload if isinstance(payload, float) else math.nan,
            payload is True,
            self._intern(payload) if isinstance(payload, str) else -1,
            None,
        )

    def _intern(self, text: str) -> int:
        string_id = self.string_index.get(text)
        if string_id is None:
            # Ids are never reused, so a cached lookup table stays valid for its prefix and only
            # needs extending; strings of overwritten rows stay interned.
            string_id = len(self.strings)
            self.strings.append(text)
            self.string_index[text] = string_id
        return string_id

    def _string_table(self, cache_key: Hashable, predicate: Callable[[str], bool]) -> BoolArray:
        """``predicate`` over every interned string, plus a final False for non-strings."""
        cached = self.string_tables.get(cache_key)
        covered = 0 if cached is None else len(cached) - 1
        if cached is not None and covered == len(self.strings):
            return cached
        fresh = np.fromiter(
            (predicate(text) for text in self.strings[covered:]),
            dtype=np.bool_,
            count=len(self.strings) - covered,
        )
        head = np.zeros(0, dtype=np.bool_) if cached is None else cached[:-1]
        table = np.concatenate([head, fresh, np.zeros(1, dtype=np.bool_)])
        if cached is None and len(self.string_tables) >= _STRING_TABLES_MAX:
            self.string_tables.clear()
        self.string_tables[cache_key] = table
        return table

    def _strings_where(
        self, cache_key: Hashable, predicate: Callable[[str], bool], row_count: int
    ) -> BoolArray:
        table = self._string_table(cache_key, predicate)
        result: BoolArray = table[self.string_ids[:row_count]]
        return result

    # Each query below returns a fresh array of ``row_count`` entries, never a view of a column:
    # callers combine results in place.

    def equal(self, constant: _Scalar, row_count: int) -> BoolArray:
        """Rows whose value ``== constant``."""
        payload = constant.value
        result: BoolArray
        if constant.kind == _NULL:
            result = self.kinds[:row_count] == _NULL
        elif isinstance(payload, bool):
            booleans = self.booleans[:row_count]
            result = (self.kinds[:row_count] == _BOOL) & (booleans if payload else ~booleans)
        elif isinstance(payload, float):
            result = self.numbers[:row_count] == payload
        elif isinstance(payload, str):
            string_id = self.string_index.get(payload)
            if string_id is None:
                result = np.zeros(row_count, dtype=np.bool_)
            else:
                result = self.string_ids[:row_count] == string_id
        else:  # pragma: no cover - constants are always one of the kinds above
            raise AssertionError(constant)
        return result

    def ordered(self, symbol: str, constant: _Scalar, row_count: int) -> BoolArray:
        """Rows whose value orders before or after the constant (numbers and strings only)."""
        payload = constant.value
        compare = _ORDERINGS[symbol]
        if isinstance(payload, float):
            # NaN marks the rows that hold no number, and every ordering with NaN is False.
            result: BoolArray = compare(self.numbers[:row_count], payload)
            return result
        if isinstance(payload, str):
            return self._strings_where(
                (symbol, payload), lambda text: bool(compare(text, payload)), row_count
            )
        return np.zeros(row_count, dtype=np.bool_)

    def member(self, constant: _Scalar, row_count: int) -> BoolArray:
        """Rows whose value is a list with an element ``== constant``."""
        if self.list_row_count == 0:
            return np.zeros(row_count, dtype=np.bool_)
        column = self.members.get(constant)
        if column is None:
            column = np.fromiter(
                (elements is not None and constant in elements for elements in self.lists),
                dtype=np.bool_,
                count=len(self.lists),
            )
            self.members[constant] = column
        return column[:row_count].copy()

    def contains(self, constant: _Scalar, row_count: int) -> BoolArray:
        """Rows where ``CONTAINS constant`` holds: list membership, or a substring of a string."""
        result = self.member(constant, row_count)
        needle = constant.value
        if isinstance(needle, str):
            result |= self._strings_where(
                ("contains", needle), lambda text: needle in text, row_count
            )
        return result

    def one_of(self, constants: frozenset[_Scalar], row_count: int) -> BoolArray:
        """Rows whose value ``==`` one of the constants (the ``IN`` operator)."""
        result = np.zeros(row_count, dtype=np.bool_)
        strings = frozenset(c.value for c in constants if isinstance(c.value, str))
        if strings:
            result |= self._strings_where(("in", strings), strings.__contains__, row_count)
        numbers = [c.value for c in constants if isinstance(c.value, float)]
        if numbers:
            result |= np.isin(self.numbers[:row_count], numbers)
        for constant in constants:
            if constant.kind in (_NULL, _BOOL):
                result |= self.equal(constant, row_count)
        return result


class AttributeColumns:
    """Columnar view of many documents (one row per worker) so that an Expression's mask is
    computed with numpy array operations over all rows, never by evaluating row by row in Python.

    The documents are kept per row. The first :meth:`Expression.mask` that asks for a dotted path
    builds that path's typed columns from every row (one pass in Python); from then on
    :meth:`set_row` and :meth:`clear_row` keep the columns of every built path up to date for the
    one row they touch, and masks are pure array operations.

    A document is kept by reference: do not mutate it after ``set_row``; call ``set_row`` again
    with the new document instead.
    """

    def __init__(self) -> None:
        self._row_count = 0
        self._capacity = 0
        self._documents: list[Mapping[str, Any] | None] = []
        self._columns: dict[str, _PathColumn] = {}

    @property
    def row_count(self) -> int:
        """One more than the highest row ever set or cleared; the length of every mask."""
        return self._row_count

    def set_row(self, row: int, document: Mapping[str, Any]) -> None:
        """Make ``row`` hold ``document``, growing the rows as needed.

        Rows may be set in any order; a row below ``row_count`` that was never set behaves as an
        empty document.
        """
        self._ensure_row(row)
        self._documents[row] = document
        for column in self._columns.values():
            column.store(row, _resolve(document, column.segments))

    def clear_row(self, row: int) -> None:
        """Make ``row`` an empty document (every key missing), growing the rows as needed."""
        self._ensure_row(row)
        self._documents[row] = None
        for column in self._columns.values():
            column.store(row, _MISSING)

    def _ensure_row(self, row: int) -> None:
        if row < 0:
            raise ValueError(f"row must be 0 or more, got {row}")
        if row >= self._capacity:
            capacity = max(row + 1, 2 * self._capacity, _ROW_CAPACITY_MIN)
            self._documents.extend([None] * (capacity - self._capacity))
            for column in self._columns.values():
                column.grow(capacity)
            self._capacity = capacity
        self._row_count = max(self._row_count, row + 1)

    def _column(self, path: str, segments: tuple[str, ...]) -> _PathColumn:
        """The typed columns of ``path``, built from every row on first use."""
        column = self._columns.get(path)
        if column is None:
            column = _PathColumn(segments, self._capacity)
            column.fill(
                [
                    _MISSING if document is None else _resolve(document, segments)
                    for document in self._documents[: self._row_count]
                ]
            )
            self._columns[path] = column
        return column


# --------------------------------------------------------------------------------------------
# The expression tree
# --------------------------------------------------------------------------------------------


class _Node(ABC):
    """A node of a parsed expression; evaluate() and mask() must agree on every document."""

    @abstractmethod
    def evaluate(self, document: Mapping[str, Any]) -> bool: ...

    @abstractmethod
    def mask(self, columns: AttributeColumns) -> BoolArray:
        """A fresh array of ``columns.row_count`` entries (callers combine results in place)."""


@dataclass(frozen=True)
class _Literal(_Node):
    value: bool

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        return self.value

    def mask(self, columns: AttributeColumns) -> BoolArray:
        return np.full(columns.row_count, self.value, dtype=np.bool_)


@dataclass(frozen=True)
class _Compare(_Node):
    """``key op constant`` with op one of == != < <= > >= (a bare key is ``key == true``)."""

    path: str
    segments: tuple[str, ...]
    symbol: str
    constant: _Scalar

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        scalar = _scalar_of(_resolve(document, self.segments))
        if self.symbol == "==":
            return scalar == self.constant
        if self.symbol == "!=":
            # Exactly the negation of '==', for NULL and mismatched types too.
            return scalar != self.constant
        if scalar is None or scalar.kind != self.constant.kind:
            return False
        if self.constant.kind not in (_NUMBER, _STRING):
            return False  # null and booleans are not ordered
        return bool(_ORDERINGS[self.symbol](scalar.value, self.constant.value))

    def mask(self, columns: AttributeColumns) -> BoolArray:
        column = columns._column(self.path, self.segments)
        if self.symbol == "==":
            return column.equal(self.constant, columns.row_count)
        if self.symbol == "!=":
            return ~column.equal(self.constant, columns.row_count)
        return column.ordered(self.symbol, self.constant, columns.row_count)


@dataclass(frozen=True)
class _Contains(_Node):
    """``key CONTAINS constant``: a list element, or a substring of a string value."""

    path: str
    segments: tuple[str, ...]
    constant: _Scalar

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        value = _resolve(document, self.segments)
        needle = self.constant.value
        if isinstance(value, str):
            return isinstance(needle, str) and needle in value
        if isinstance(value, list | tuple):
            return self.constant in _list_elements(value)
        return False

    def mask(self, columns: AttributeColumns) -> BoolArray:
        column = columns._column(self.path, self.segments)
        return column.contains(self.constant, columns.row_count)


@dataclass(frozen=True)
class _Has(_Node):
    """``key HAS constant``: the value is a list with an element equal to the constant."""

    path: str
    segments: tuple[str, ...]
    constant: _Scalar

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        value = _resolve(document, self.segments)
        if isinstance(value, list | tuple):
            return self.constant in _list_elements(value)
        return False

    def mask(self, columns: AttributeColumns) -> BoolArray:
        column = columns._column(self.path, self.segments)
        return column.member(self.constant, columns.row_count)


@dataclass(frozen=True)
class _In(_Node):
    """``key IN [...]`` (or ``NOT IN``, its exact negation): the value equals one of the items."""

    path: str
    segments: tuple[str, ...]
    constants: frozenset[_Scalar]
    negated: bool

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        scalar = _scalar_of(_resolve(document, self.segments))
        return (scalar in self.constants) != self.negated

    def mask(self, columns: AttributeColumns) -> BoolArray:
        column = columns._column(self.path, self.segments)
        found = column.one_of(self.constants, columns.row_count)
        return ~found if self.negated else found


@dataclass(frozen=True)
class _Not(_Node):
    operand: _Node

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        return not self.operand.evaluate(document)

    def mask(self, columns: AttributeColumns) -> BoolArray:
        return ~self.operand.mask(columns)


@dataclass(frozen=True)
class _And(_Node):
    # Flat rather than binary, so that a long chain of AND does not make a deep tree.
    operands: tuple[_Node, ...]

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        return all(operand.evaluate(document) for operand in self.operands)

    def mask(self, columns: AttributeColumns) -> BoolArray:
        result = self.operands[0].mask(columns)
        for operand in self.operands[1:]:
            result &= operand.mask(columns)
        return result


@dataclass(frozen=True)
class _Or(_Node):
    operands: tuple[_Node, ...]

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        return any(operand.evaluate(document) for operand in self.operands)

    def mask(self, columns: AttributeColumns) -> BoolArray:
        result = self.operands[0].mask(columns)
        for operand in self.operands[1:]:
            result |= operand.mask(columns)
        return result


@dataclass(frozen=True)
class Expression:
    """A parsed expression: immutable and hashable; two are equal when their sources are equal.

    Build one with :func:`parse`. ``keys`` holds every dotted path the expression reads.
    """

    source: str
    keys: frozenset[str]
    _root: _Node = field(repr=False, compare=False)

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        """Whether one document matches."""
        return self._root.evaluate(document)

    def mask(self, columns: AttributeColumns) -> BoolArray:
        """For every row of ``columns``, whether its document matches (a fresh bool array of
        ``columns.row_count`` entries, equal row by row to :meth:`evaluate`)."""
        return self._root.mask(columns)

    def __str__(self) -> str:
        return self.source


# --------------------------------------------------------------------------------------------
# Lexer
# --------------------------------------------------------------------------------------------


class _T(enum.Enum):
    KEY = "key"
    CONSTANT = "constant"
    AND = "AND"
    OR = "OR"
    NOT = "NOT"
    IN = "IN"
    CONTAINS = "CONTAINS"
    HAS = "HAS"
    COMPARE = "comparison"
    LPAREN = "("
    RPAREN = ")"
    LBRACKET = "["
    RBRACKET = "]"
    COMMA = ","
    END = "end"


@dataclass(frozen=True)
class _Token:
    kind: _T
    position: int
    text: str
    constant: _Scalar | None = None  # set for CONSTANT tokens


_KEYWORDS: Final = {
    "and": (_T.AND, None),
    "or": (_T.OR, None),
    "not": (_T.NOT, None),
    "in": (_T.IN, None),
    "contains": (_T.CONTAINS, None),
    "has": (_T.HAS, None),
    "true": (_T.CONSTANT, _Scalar(_BOOL, True)),
    "false": (_T.CONSTANT, _Scalar(_BOOL, False)),
    "null": (_T.CONSTANT, _NULL_SCALAR),
}
_PUNCTUATION: Final = {  # longest first: '<=' must win over '<'
    "==": _T.COMPARE,
    "!=": _T.COMPARE,
    "<=": _T.COMPARE,
    ">=": _T.COMPARE,
    "&&": _T.AND,
    "||": _T.OR,
    "<": _T.COMPARE,
    ">": _T.COMPARE,
    "!": _T.NOT,
    "(": _T.LPAREN,
    ")": _T.RPAREN,
    "[": _T.LBRACKET,
    "]": _T.RBRACKET,
    ",": _T.COMMA,
}
_HINTS: Final = {
    "=": "unexpected character '='; compare with '=='",
    "&": "unexpected character '&'; use '&&' or AND",
    "|": "unexpected character '|'; use '||' or OR",
}
# ASCII only: str.isdigit() and re's \d would accept digits of other scripts.
_DIGITS: Final = frozenset("0123456789")
_NAME_START: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_CHARS: Final = _NAME_START | _DIGITS
_NUMBER_TAIL_CHARS: Final = _NAME_CHARS | {"."}
_WHITESPACE: Final = frozenset(" \t\r\n")
_NAME_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER_RE: Final = re.compile(r"-?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_ESCAPES: Final = frozenset("'\"\\")


def _starts_number(source: str, index: int) -> bool:
    rest = source[index : index + 3]
    if rest[:1] == "-":
        rest = rest[1:]
    return rest[:1] in _DIGITS or (rest[:1] == "." and rest[1:2] in _DIGITS)


def _tokenize(source: str) -> list[_Token]:
    """The tokens of ``source``, ending with an END token at ``len(source)``."""
    tokens: list[_Token] = []
    index = 0
    while index < len(source):
        char = source[index]
        if char in _WHITESPACE:
            index += 1
        elif char in _NAME_START:
            token = _lex_name(source, index)
            tokens.append(token)
            index += len(token.text)
        elif char in "'\"":
            token = _lex_string(source, index)
            tokens.append(token)
            index += len(token.text)
        elif _starts_number(source, index):
            token = _lex_number(source, index)
            tokens.append(token)
            index += len(token.text)
        else:
            for text, kind in _PUNCTUATION.items():
                if source.startswith(text, index):
                    tokens.append(_Token(kind, index, text))
                    index += len(text)
                    break
            else:
                raise ExpressionError(index, _HINTS.get(char, f"unexpected character {char!r}"))
    tokens.append(_Token(_T.END, len(source), ""))
    return tokens


def _lex_name(source: str, start: int) -> _Token:
    """A keyword, or a key made of names joined by dots."""
    segment_starts = [start]
    end = start + len(_match(_NAME_RE, source, start))
    while source[end : end + 1] == ".":
        if source[end + 1 : end + 2] not in _NAME_START:
            raise ExpressionError(end + 1, "expected a name after '.' in a key")
        segment_starts.append(end + 1)
        end = end + 1 + len(_match(_NAME_RE, source, end + 1))
    if len(segment_starts) > KEY_SEGMENTS_MAX:
        raise ExpressionError(
            segment_starts[KEY_SEGMENTS_MAX],
            f"key has more than {KEY_SEGMENTS_MAX} segments",
        )
    text = source[start:end]
    keyword = _KEYWORDS.get(text.lower()) if len(segment_starts) == 1 else None
    if keyword is not None:
        kind, constant = keyword
        return _Token(kind, start, text, constant)
    return _Token(_T.KEY, start, text)


def _match(pattern: re.Pattern[str], source: str, start: int) -> str:
    found = pattern.match(source, start)
    assert found is not None, "callers check the first character before matching"
    return found.group()


def _lex_string(source: str, start: int) -> _Token:
    """A quoted string; the only escapes are \\', \\" and \\\\."""
    quote = source[start]
    chars: list[str] = []
    index = start + 1
    while index < len(source):
        char = source[index]
        if char == quote:
            text = source[start : index + 1]
            return _Token(_T.CONSTANT, start, text, _Scalar(_STRING, "".join(chars)))
        if char == "\\":
            escaped = source[index + 1 : index + 2]
            if escaped == "":
                break
            if escaped not in _ESCAPES:
                raise ExpressionError(
                    index,
                    f"unknown escape '\\{escaped}' in a string; "
                    "only \\', \\\" and \\\\ are allowed",
                )
            chars.append(escaped)
            index += 2
        else:
            chars.append(char)
            index += 1
    raise ExpressionError(start, f"unterminated string: no closing {quote}")


def _lex_number(source: str, start: int) -> _Token:
    text = _match(_NUMBER_RE, source, start)
    end = start + len(text)
    if end < len(source) and source[end] in _NUMBER_TAIL_CHARS:
        # '1e', '3abc', '1.2.3': report the whole malformed word rather than a confusing
        # "unexpected 'abc'" after a valid number.
        while end < len(source) and source[end] in _NUMBER_TAIL_CHARS | {"+", "-"}:
            end += 1
        raise ExpressionError(start, f"malformed number {source[start:end]!r}")
    return _Token(_T.CONSTANT, start, text, _Scalar(_NUMBER, float(text)))


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------

_FLIPPED: Final = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_DESCRIPTION_CHARS_MAX: Final = 32


def _describe(token: _Token) -> str:
    """How an error message names a token: its text, quoted."""
    if token.kind is _T.END:
        return "the end of the expression"
    text = token.text
    if len(text) > _DESCRIPTION_CHARS_MAX:
        text = text[: _DESCRIPTION_CHARS_MAX - 3] + "..."
    if token.kind is _T.CONSTANT and text[0] in "'\"":
        return text  # a string constant already carries its quotes
    return f"'{text}'"


class _Parser:
    """Recursive descent over the grammar in docs/expressions.md.

    Precedence, loosest first: OR, AND, NOT; a condition (comparison, CONTAINS, HAS, IN, bare key,
    bare true/false) or a parenthesised expression binds tightest.
    """

    def __init__(self, tokens: list[_Token]) -> None:
        self._tokens = tokens
        self._index = 0
        self._open_parens = 0
        self.paths: set[str] = set()

    def parse(self) -> _Node:
        if self._peek().kind is _T.END:
            raise ExpressionError(0, "empty expression")
        node = self._or(depth=0)
        token = self._peek()
        if token.kind is _T.RPAREN:
            raise ExpressionError(token.position, "unbalanced parentheses: ')' has no matching '('")
        if token.kind is not _T.END:
            raise self._expected("AND, OR or the end of the expression", token)
        return node

    # Token access ---------------------------------------------------------------------------

    def _peek(self, ahead: int = 0) -> _Token:
        return self._tokens[min(self._index + ahead, len(self._tokens) - 1)]

    def _advance(self) -> _Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _expected(self, what: str, found: _Token) -> ExpressionError:
        """The error 'expected <what> after <previous token>[, found <token>]', at ``found``."""
        reason = f"expected {what}"
        if self._index > 0:
            reason += f" after {_describe(self._tokens[self._index - 1])}"
        if found.kind is not _T.END:
            reason += f", found {_describe(found)}"
        return ExpressionError(found.position, reason)

    def _check_depth(self, depth: int, token: _Token) -> None:
        if depth > EXPRESSION_DEPTH_MAX:
            raise ExpressionError(
                token.position,
                f"expression nests deeper than {EXPRESSION_DEPTH_MAX} levels "
                "of parentheses and NOT",
            )

    # Boolean structure ----------------------------------------------------------------------

    def _or(self, depth: int) -> _Node:
        operands = [self._and(depth)]
        while self._peek().kind is _T.OR:
            self._advance()
            operands.append(self._and(depth))
        return operands[0] if len(operands) == 1 else _Or(tuple(operands))

    def _and(self, depth: int) -> _Node:
        operands = [self._unary(depth)]
        while self._peek().kind is _T.AND:
            self._advance()
            operands.append(self._unary(depth))
        return operands[0] if len(operands) == 1 else _And(tuple(operands))

    def _unary(self, depth: int) -> _Node:
        token = self._peek()
        if token.kind is _T.NOT:
            self._check_depth(depth + 1, token)
            self._advance()
            return _Not(self._unary(depth + 1))
        return self._primary(depth)

    def _primary(self, depth: int) -> _Node:
        token = self._peek()
        if token.kind is _T.LPAREN:
            return self._parenthesised(depth)
        if token.kind is _T.KEY:
            return self._key_first()
        if token.kind is _T.CONSTANT:
            return self._constant_first()
        if token.kind is _T.LBRACKET:
            raise ExpressionError(token.position, "an array is only allowed after IN or NOT IN")
        if token.kind is _T.RPAREN and self._open_parens == 0:
            raise ExpressionError(token.position, "unbalanced parentheses: ')' has no matching '('")
        raise self._expected("a condition", token)

    def _parenthesised(self, depth: int) -> _Node:
        opening = self._advance()
        self._check_depth(depth + 1, opening)
        self._open_parens += 1
        inner = self._or(depth + 1)
        self._open_parens -= 1
        closing = self._peek()
        if closing.kind is _T.RPAREN:
            self._advance()
            return inner
        if closing.kind is _T.END:
            raise ExpressionError(
                opening.position,
                f"unbalanced parentheses: '(' at position {opening.position} is never closed",
            )
        raise self._expected(f"')' to close '(' at position {opening.position}", closing)

    # Conditions -----------------------------------------------------------------------------

    def _key_first(self) -> _Node:
        key = self._advance()
        path = key.text
        segments = tuple(path.split("."))
        self.paths.add(path)
        token = self._peek()
        if token.kind is _T.COMPARE:
            self._advance()
            return _Compare(path, segments, token.text, self._constant_operand())
        if token.kind is _T.CONTAINS:
            self._advance()
            return _Contains(path, segments, self._constant_operand())
        if token.kind is _T.HAS:
            self._advance()
            return _Has(path, segments, self._constant_operand())
        if token.kind is _T.IN:
            self._advance()
            return _In(path, segments, self._array_operand(), negated=False)
        if token.kind is _T.NOT and self._peek(1).kind is _T.IN:
            self._advance()
            self._advance()
            return _In(path, segments, self._array_operand(), negated=True)
        # A bare key is a truth test.
        return _Compare(path, segments, "==", _Scalar(_BOOL, True))

    def _constant_operand(self) -> _Scalar:
        """The constant on the right of a comparison, CONTAINS or HAS."""
        token = self._peek()
        if token.kind is _T.CONSTANT:
            assert token.constant is not None
            self._advance()
            return token.constant
        if token.kind is _T.KEY:
            raise ExpressionError(
                token.position,
                f"compare a key with a constant; {_describe(token)} is a key "
                f"(quote it to compare with the string {_describe(token)})",
            )
        if token.kind is _T.LBRACKET:
            raise ExpressionError(token.position, "an array is only allowed after IN or NOT IN")
        raise self._expected("a constant", token)

    def _constant_first(self) -> _Node:
        """``constant op key`` (turned round to ``key op' constant``), or a bare true/false."""
        first = self._advance()
        assert first.constant is not None
        token = self._peek()
        if token.kind is _T.COMPARE:
            self._advance()
            key = self._peek()
            if key.kind is _T.KEY:
                self._advance()
                self.paths.add(key.text)
                segments = tuple(key.text.split("."))
                return _Compare(key.text, segments, _FLIPPED[token.text], first.constant)
            if key.kind is _T.CONSTANT:
                raise ExpressionError(
                    key.position, "compare a key with a constant; found two constants"
                )
            if key.kind is _T.LBRACKET:
                raise ExpressionError(key.position, "an array is only allowed after IN or NOT IN")
            raise self._expected("a key", key)
        if first.constant.kind == _BOOL:
            return _Literal(first.constant.value is True)
        if token.kind in (_T.IN, _T.CONTAINS, _T.HAS) or (
            token.kind is _T.NOT and self._peek(1).kind is _T.IN
        ):
            raise ExpressionError(
                token.position,
                f"the key must come before {_describe(token)}: key IN [...], "
                "key CONTAINS constant, key HAS constant",
            )
        raise self._expected("a comparison operator", token)

    def _array_operand(self) -> frozenset[_Scalar]:
        """The array after IN or NOT IN."""
        opening = self._peek()
        if opening.kind is not _T.LBRACKET:
            if opening.kind is _T.END:
                raise self._expected("an array", opening)
            raise ExpressionError(
                opening.position,
                f"IN takes an array, like IN ['a', 'b'], found {_describe(opening)}",
            )
        self._advance()
        if self._peek().kind is _T.RBRACKET:
            self._advance()
            return frozenset()
        items: list[_Scalar] = []
        while True:
            token = self._peek()
            if token.kind is _T.CONSTANT:
                assert token.constant is not None
                if len(items) == ARRAY_ITEMS_MAX:
                    raise ExpressionError(
                        token.position, f"array has more than {ARRAY_ITEMS_MAX} items"
                    )
                items.append(token.constant)
                self._advance()
            elif token.kind is _T.LBRACKET:
                raise ExpressionError(token.position, "arrays cannot be nested")
            elif token.kind is _T.KEY:
                raise ExpressionError(
                    token.position,
                    f"array items must be constants; {_describe(token)} is a key "
                    f"(quote it to use the string {_describe(token)})",
                )
            elif token.kind is _T.END:
                raise self._unclosed_array(opening)
            else:
                raise self._expected("a constant", token)
            separator = self._peek()
            if separator.kind is _T.COMMA:
                self._advance()
            elif separator.kind is _T.RBRACKET:
                self._advance()
                return frozenset(items)
            elif separator.kind is _T.END:
                raise self._unclosed_array(opening)
            else:
                raise self._expected("',' or ']'", separator)

    @staticmethod
    def _unclosed_array(opening: _Token) -> ExpressionError:
        return ExpressionError(
            opening.position,
            f"unbalanced brackets: '[' at position {opening.position} is never closed",
        )


def parse(source: str) -> Expression:
    """Parse an expression; raise :class:`ExpressionError` (with its position) if it is invalid."""
    if len(source) > EXPRESSION_CHARS_MAX:
        raise ExpressionError(
            EXPRESSION_CHARS_MAX,
            f"expression is longer than {EXPRESSION_CHARS_MAX} characters",
        )
    parser = _Parser(_tokenize(source))
    root = parser.parse()
    return Expression(source, frozenset(parser.paths), root)


MATCH_ALL: Final[Expression] = parse("true")
"""The expression that every document matches (``true``)."""
