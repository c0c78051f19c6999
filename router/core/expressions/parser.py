"""Recursive descent from tokens to an expression tree; `parse` is the entry point."""

from __future__ import annotations

from typing import Final

from router.core.expressions.lexer import Token, TokenKind, tokenize
from router.core.expressions.nodes import (
    And,
    Compare,
    Contains,
    Expression,
    Has,
    In,
    Literal,
    Node,
    Not,
    Or,
)
from router.core.expressions.values import (
    ARRAY_ITEMS_MAX,
    BOOL,
    EXPRESSION_CHARS_MAX,
    EXPRESSION_DEPTH_MAX,
    ExpressionError,
    Scalar,
)

_FLIPPED: Final = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_DESCRIPTION_CHARS_MAX: Final = 32


def _describe(token: Token) -> str:
    """How an error message names a token: its text, quoted."""
    if token.kind is TokenKind.END:
        return "the end of the expression"
    text = token.text
    if len(text) > _DESCRIPTION_CHARS_MAX:
        text = text[: _DESCRIPTION_CHARS_MAX - 3] + "..."
    if token.kind is TokenKind.CONSTANT and text[0] in "'\"":
        return text  # a string constant already carries its quotes
    return f"'{text}'"


class _Parser:
    """Recursive descent over the grammar in docs/expressions.md.

    Precedence, loosest first: OR, AND, NOT; a condition (comparison, CONTAINS, HAS, IN, bare key,
    bare true/false) or a parenthesised expression binds tightest.
    """

    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._index = 0
        self._open_parens = 0
        self.paths: set[str] = set()

    def parse(self) -> Node:
        if self._peek().kind is TokenKind.END:
            raise ExpressionError(0, "empty expression")
        node = self._or(depth=0)
        token = self._peek()
        if token.kind is TokenKind.RPAREN:
            raise ExpressionError(token.position, "unbalanced parentheses: ')' has no matching '('")
        if token.kind is not TokenKind.END:
            raise self._expected("AND, OR or the end of the expression", token)
        return node

    # Token access ---------------------------------------------------------------------------

    def _peek(self, ahead: int = 0) -> Token:
        return self._tokens[min(self._index + ahead, len(self._tokens) - 1)]

    def _advance(self) -> Token:
        token = self._tokens[self._index]
        self._index += 1
        return token

    def _expected(self, what: str, found: Token) -> ExpressionError:
        """The error 'expected <what> after <previous token>[, found <token>]', at ``found``."""
        reason = f"expected {what}"
        if self._index > 0:
            reason += f" after {_describe(self._tokens[self._index - 1])}"
        if found.kind is not TokenKind.END:
            reason += f", found {_describe(found)}"
        return ExpressionError(found.position, reason)

    def _check_depth(self, depth: int, token: Token) -> None:
        if depth > EXPRESSION_DEPTH_MAX:
            raise ExpressionError(
                token.position,
                f"expression nests deeper than {EXPRESSION_DEPTH_MAX} levels "
                "of parentheses and NOT",
            )

    # Boolean structure ----------------------------------------------------------------------

    def _or(self, depth: int) -> Node:
        operands = [self._and(depth)]
        while self._peek().kind is TokenKind.OR:
            self._advance()
            operands.append(self._and(depth))
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def _and(self, depth: int) -> Node:
        operands = [self._unary(depth)]
        while self._peek().kind is TokenKind.AND:
            self._advance()
            operands.append(self._unary(depth))
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def _unary(self, depth: int) -> Node:
        token = self._peek()
        if token.kind is TokenKind.NOT:
            self._check_depth(depth + 1, token)
            self._advance()
            return Not(self._unary(depth + 1))
        return self._primary(depth)

    def _primary(self, depth: int) -> Node:
        token = self._peek()
        if token.kind is TokenKind.LPAREN:
            return self._parenthesised(depth)
        if token.kind is TokenKind.KEY:
            return self._key_first()
        if token.kind is TokenKind.CONSTANT:
            return self._constant_first()
        if token.kind is TokenKind.LBRACKET:
            raise ExpressionError(token.position, "an array is only allowed after IN or NOT IN")
        if token.kind is TokenKind.RPAREN and self._open_parens == 0:
            raise ExpressionError(token.position, "unbalanced parentheses: ')' has no matching '('")
        raise self._expected("a condition", token)

    def _parenthesised(self, depth: int) -> Node:
        opening = self._advance()
        self._check_depth(depth + 1, opening)
        self._open_parens += 1
        inner = self._or(depth + 1)
        self._open_parens -= 1
        closing = self._peek()
        if closing.kind is TokenKind.RPAREN:
            self._advance()
            return inner
        if closing.kind is TokenKind.END:
            raise ExpressionError(
                opening.position,
                f"unbalanced parentheses: '(' at position {opening.position} is never closed",
            )
        raise self._expected(f"')' to close '(' at position {opening.position}", closing)

    # Conditions -----------------------------------------------------------------------------

    def _key_first(self) -> Node:
        key = self._advance()
        path = key.text
        segments = tuple(path.split("."))
        self.paths.add(path)
        token = self._peek()
        if token.kind is TokenKind.COMPARE:
            self._advance()
            return Compare(path, segments, token.text, self._constant_operand())
        if token.kind is TokenKind.CONTAINS:
            self._advance()
            return Contains(path, segments, self._constant_operand())
        if token.kind is TokenKind.HAS:
            self._advance()
            return Has(path, segments, self._constant_operand())
        if token.kind is TokenKind.IN:
            self._advance()
            return In(path, segments, self._array_operand(), negated=False)
        if token.kind is TokenKind.NOT and self._peek(1).kind is TokenKind.IN:
            self._advance()
            self._advance()
            return In(path, segments, self._array_operand(), negated=True)
        # A bare key is a truth test.
        return Compare(path, segments, "==", Scalar(BOOL, True))

    def _constant_operand(self) -> Scalar:
        """The constant on the right of a comparison, CONTAINS or HAS."""
        token = self._peek()
        if token.kind is TokenKind.CONSTANT:
            assert token.constant is not None
            self._advance()
            return token.constant
        if token.kind is TokenKind.KEY:
            raise ExpressionError(
                token.position,
                f"compare a key with a constant; {_describe(token)} is a key "
                f"(quote it to compare with the string {_describe(token)})",
            )
        if token.kind is TokenKind.LBRACKET:
            raise ExpressionError(token.position, "an array is only allowed after IN or NOT IN")
        raise self._expected("a constant", token)

    def _constant_first(self) -> Node:
        """``constant op key`` (turned round to ``key op' constant``), or a bare true/false."""
        first = self._advance()
        assert first.constant is not None
        token = self._peek()
        if token.kind is TokenKind.COMPARE:
            self._advance()
            key = self._peek()
            if key.kind is TokenKind.KEY:
                self._advance()
                self.paths.add(key.text)
                segments = tuple(key.text.split("."))
                return Compare(key.text, segments, _FLIPPED[token.text], first.constant)
            if key.kind is TokenKind.CONSTANT:
                raise ExpressionError(
                    key.position, "compare a key with a constant; found two constants"
                )
            if key.kind is TokenKind.LBRACKET:
                raise ExpressionError(key.position, "an array is only allowed after IN or NOT IN")
            raise self._expected("a key", key)
        if first.constant.kind == BOOL:
            return Literal(first.constant.value is True)
        if token.kind in (TokenKind.IN, TokenKind.CONTAINS, TokenKind.HAS) or (
            token.kind is TokenKind.NOT and self._peek(1).kind is TokenKind.IN
        ):
            raise ExpressionError(
                token.position,
                f"the key must come before {_describe(token)}: key IN [...], "
                "key CONTAINS constant, key HAS constant",
            )
        raise self._expected("a comparison operator", token)

    def _array_operand(self) -> frozenset[Scalar]:
        """The array after IN or NOT IN."""
        opening = self._peek()
        if opening.kind is not TokenKind.LBRACKET:
            if opening.kind is TokenKind.END:
                raise self._expected("an array", opening)
            raise ExpressionError(
                opening.position,
                f"IN takes an array, like IN ['a', 'b'], found {_describe(opening)}",
            )
        self._advance()
        if self._peek().kind is TokenKind.RBRACKET:
            self._advance()
            return frozenset()
        items: list[Scalar] = []
        while True:
            token = self._peek()
            if token.kind is TokenKind.CONSTANT:
                assert token.constant is not None
                if len(items) == ARRAY_ITEMS_MAX:
                    raise ExpressionError(
                        token.position, f"array has more than {ARRAY_ITEMS_MAX} items"
                    )
                items.append(token.constant)
                self._advance()
            elif token.kind is TokenKind.LBRACKET:
                raise ExpressionError(token.position, "arrays cannot be nested")
            elif token.kind is TokenKind.KEY:
                raise ExpressionError(
                    token.position,
                    f"array items must be constants; {_describe(token)} is a key "
                    f"(quote it to use the string {_describe(token)})",
                )
            elif token.kind is TokenKind.END:
                raise self._unclosed_array(opening)
            else:
                raise self._expected("a constant", token)
            separator = self._peek()
            if separator.kind is TokenKind.COMMA:
                self._advance()
            elif separator.kind is TokenKind.RBRACKET:
                self._advance()
                return frozenset(items)
            elif separator.kind is TokenKind.END:
                raise self._unclosed_array(opening)
            else:
                raise self._expected("',' or ']'", separator)

    @staticmethod
    def _unclosed_array(opening: Token) -> ExpressionError:
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
    parser = _Parser(tokenize(source))
    root = parser.parse()
    return Expression(source, frozenset(parser.paths), root)


MATCH_ALL: Final[Expression] = parse("true")
"""The expression that every document matches (``true``)."""
