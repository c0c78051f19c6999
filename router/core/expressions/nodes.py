"""The parsed expression tree: each node evaluates one document and masks a column set, with the
same meaning."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from router.core.expressions.columns import AttributeColumns
from router.core.expressions.values import (
    NUMBER,
    ORDERINGS,
    STRING,
    BoolArray,
    Scalar,
    list_elements,
    resolve,
    scalar_of,
)


class Node(ABC):
    """A node of a parsed expression; evaluate() and mask() must agree on every document."""

    @abstractmethod
    def evaluate(self, document: Mapping[str, Any]) -> bool: ...

    @abstractmethod
    def mask(self, columns: AttributeColumns) -> BoolArray:
        """A fresh array of ``columns.row_count`` entries (callers combine results in place)."""


@dataclass(frozen=True)
class Literal(Node):
    value: bool

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        return self.value

    def mask(self, columns: AttributeColumns) -> BoolArray:
        return np.full(columns.row_count, self.value, dtype=np.bool_)


@dataclass(frozen=True)
class Compare(Node):
    """``key op constant`` with op one of == != < <= > >= (a bare key is ``key == true``)."""

    path: str
    segments: tuple[str, ...]
    symbol: str
    constant: Scalar

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        scalar = scalar_of(resolve(document, self.segments))
        if self.symbol == "==":
            return scalar == self.constant
        if self.symbol == "!=":
            # Exactly the negation of '==', for NULL and mismatched types too.
            return scalar != self.constant
        if scalar is None or scalar.kind != self.constant.kind:
            return False
        if self.constant.kind not in (NUMBER, STRING):
            return False  # null and booleans are not ordered
        return bool(ORDERINGS[self.symbol](scalar.value, self.constant.value))

    def mask(self, columns: AttributeColumns) -> BoolArray:
        column = columns._column(self.path, self.segments)
        if self.symbol == "==":
            return column.equal(self.constant, columns.row_count)
        if self.symbol == "!=":
            return ~column.equal(self.constant, columns.row_count)
        return column.ordered(self.symbol, self.constant, columns.row_count)


@dataclass(frozen=True)
class Contains(Node):
    """``key CONTAINS constant``: a list element, or a substring of a string value."""

    path: str
    segments: tuple[str, ...]
    constant: Scalar

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        value = resolve(document, self.segments)
        needle = self.constant.value
        if isinstance(value, str):
            return isinstance(needle, str) and needle in value
        if isinstance(value, list | tuple):
            return self.constant in list_elements(value)
        return False

    def mask(self, columns: AttributeColumns) -> BoolArray:
        column = columns._column(self.path, self.segments)
        return column.contains(self.constant, columns.row_count)


@dataclass(frozen=True)
class Has(Node):
    """``key HAS constant``: the value is a list with an element equal to the constant."""

    path: str
    segments: tuple[str, ...]
    constant: Scalar

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        value = resolve(document, self.segments)
        if isinstance(value, list | tuple):
            return self.constant in list_elements(value)
        return False

    def mask(self, columns: AttributeColumns) -> BoolArray:
        column = columns._column(self.path, self.segments)
        return column.member(self.constant, columns.row_count)


@dataclass(frozen=True)
class In(Node):
    """``key IN [...]`` (or ``NOT IN``, its exact negation): the value equals one of the items."""

    path: str
    segments: tuple[str, ...]
    constants: frozenset[Scalar]
    negated: bool

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        scalar = scalar_of(resolve(document, self.segments))
        return (scalar in self.constants) != self.negated

    def mask(self, columns: AttributeColumns) -> BoolArray:
        column = columns._column(self.path, self.segments)
        found = column.one_of(self.constants, columns.row_count)
        return ~found if self.negated else found


@dataclass(frozen=True)
class Not(Node):
    operand: Node

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        return not self.operand.evaluate(document)

    def mask(self, columns: AttributeColumns) -> BoolArray:
        return ~self.operand.mask(columns)


@dataclass(frozen=True)
class And(Node):
    # Flat rather than binary, so that a long chain of AND does not make a deep tree.
    operands: tuple[Node, ...]

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        return all(operand.evaluate(document) for operand in self.operands)

    def mask(self, columns: AttributeColumns) -> BoolArray:
        result = self.operands[0].mask(columns)
        for operand in self.operands[1:]:
            result &= operand.mask(columns)
        return result


@dataclass(frozen=True)
class Or(Node):
    operands: tuple[Node, ...]

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
    _root: Node = field(repr=False, compare=False)

    def evaluate(self, document: Mapping[str, Any]) -> bool:
        """Whether one document matches."""
        return self._root.evaluate(document)

    def mask(self, columns: AttributeColumns) -> BoolArray:
        """For every row of ``columns``, whether its document matches (a fresh bool array of
        ``columns.row_count`` entries, equal row by row to :meth:`evaluate`)."""
        return self._root.mask(columns)

    def __str__(self) -> str:
        return self.source
