"""Many documents, one row each, as typed numpy arrays per dotted path: what masks are computed
over."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping
from typing import Any, Final

import numpy as np

from router.core.expressions.values import (
    BOOL,
    LIST,
    MISSING,
    NULL,
    ORDERINGS,
    OTHER,
    BoolArray,
    Scalar,
    list_elements,
    resolve,
    scalar_of,
)

# Rows are stored in arrays whose capacity doubles, starting from this many rows.
_ROW_CAPACITY_MIN: Final = 16
# Cached per-string lookup tables of one path; a bound, because every distinct constant used in
# an ordering or CONTAINS creates one, and a runaway set of constants must not grow memory forever.
_STRING_TABLES_MAX: Final = 1024

# One row's value as stored in the typed arrays of a path: kind, number (NaN when not a
# number), true-ness, string id (-1 when not a string), list elements (None when not a list).
_Encoded = tuple[int, float, bool, int, frozenset[Scalar] | None]


class _PathColumn:
    """Typed columns of one dotted path over all rows (arrays sized to the row capacity).

    Every row holds exactly one kind; the other typed arrays hold their neutral value there
    (NaN, False, -1, None), so that a comparison on one typed array is false on rows of any other
    kind without consulting ``kinds``.
    """

    def __init__(self, segments: tuple[str, ...], capacity: int) -> None:
        self.segments = segments
        self.kinds = np.full(capacity, NULL, dtype=np.int8)
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
        self.lists: list[frozenset[Scalar] | None] = [None] * capacity
        self.list_row_count = 0
        self.members: dict[Scalar, BoolArray] = {}

    def grow(self, capacity: int) -> None:
        """Extend every array to ``capacity`` rows; the new rows hold a missing value."""
        extra = capacity - len(self.kinds)
        self.kinds = np.concatenate([self.kinds, np.full(extra, NULL, dtype=np.int8)])
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
        scalar = scalar_of(value)
        if scalar is None:
            if isinstance(value, list | tuple):
                return (LIST, math.nan, False, -1, list_elements(value))
            return (OTHER, math.nan, False, -1, None)
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

    def equal(self, constant: Scalar, row_count: int) -> BoolArray:
        """Rows whose value ``== constant``."""
        payload = constant.value
        result: BoolArray
        if constant.kind == NULL:
            result = self.kinds[:row_count] == NULL
        elif isinstance(payload, bool):
            booleans = self.booleans[:row_count]
            result = (self.kinds[:row_count] == BOOL) & (booleans if payload else ~booleans)
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

    def ordered(self, symbol: str, constant: Scalar, row_count: int) -> BoolArray:
        """Rows whose value orders before or after the constant (numbers and strings only)."""
        payload = constant.value
        compare = ORDERINGS[symbol]
        if isinstance(payload, float):
            # NaN marks the rows that hold no number, and every ordering with NaN is False.
            result: BoolArray = compare(self.numbers[:row_count], payload)
            return result
        if isinstance(payload, str):
            return self._strings_where(
                (symbol, payload), lambda text: bool(compare(text, payload)), row_count
            )
        return np.zeros(row_count, dtype=np.bool_)

    def member(self, constant: Scalar, row_count: int) -> BoolArray:
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

    def contains(self, constant: Scalar, row_count: int) -> BoolArray:
        """Rows where ``CONTAINS constant`` holds: list membership, or a substring of a string."""
        result = self.member(constant, row_count)
        needle = constant.value
        if isinstance(needle, str):
            result |= self._strings_where(
                ("contains", needle), lambda text: needle in text, row_count
            )
        return result

    def one_of(self, constants: frozenset[Scalar], row_count: int) -> BoolArray:
        """Rows whose value ``==`` one of the constants (the ``IN`` operator)."""
        result = np.zeros(row_count, dtype=np.bool_)
        strings = frozenset(c.value for c in constants if isinstance(c.value, str))
        if strings:
            result |= self._strings_where(("in", strings), strings.__contains__, row_count)
        numbers = [c.value for c in constants if isinstance(c.value, float)]
        if numbers:
            result |= np.isin(self.numbers[:row_count], numbers)
        for constant in constants:
            if constant.kind in (NULL, BOOL):
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
            column.store(row, resolve(document, column.segments))

    def clear_row(self, row: int) -> None:
        """Make ``row`` an empty document (every key missing), growing the rows as needed."""
        self._ensure_row(row)
        self._documents[row] = None
        for column in self._columns.values():
            column.store(row, MISSING)

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
                    MISSING if document is None else resolve(document, segments)
                    for document in self._documents[: self._row_count]
                ]
            )
            self._columns[path] = column
        return column
