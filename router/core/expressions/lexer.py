"""Source text to tokens, with the position of each for error messages."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

from router.core.errors import quoted
from router.core.expressions.values import (
    BOOL,
    KEY_SEGMENTS_MAX,
    NULL_SCALAR,
    NUMBER,
    STRING,
    ExpressionError,
    Scalar,
)


class TokenKind(enum.Enum):
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
class Token:
    kind: TokenKind
    position: int
    text: str
    constant: Scalar | None = None  # set for CONSTANT tokens


_KEYWORDS: Final = {
    "and": (TokenKind.AND, None),
    "or": (TokenKind.OR, None),
    "not": (TokenKind.NOT, None),
    "in": (TokenKind.IN, None),
    "contains": (TokenKind.CONTAINS, None),
    "has": (TokenKind.HAS, None),
    "true": (TokenKind.CONSTANT, Scalar(BOOL, True)),
    "false": (TokenKind.CONSTANT, Scalar(BOOL, False)),
    "null": (TokenKind.CONSTANT, NULL_SCALAR),
}
_PUNCTUATION: Final = {  # longest first: '<=' must win over '<'
    "==": TokenKind.COMPARE,
    "!=": TokenKind.COMPARE,
    "<=": TokenKind.COMPARE,
    ">=": TokenKind.COMPARE,
    "&&": TokenKind.AND,
    "||": TokenKind.OR,
    "<": TokenKind.COMPARE,
    ">": TokenKind.COMPARE,
    "!": TokenKind.NOT,
    "(": TokenKind.LPAREN,
    ")": TokenKind.RPAREN,
    "[": TokenKind.LBRACKET,
    "]": TokenKind.RBRACKET,
    ",": TokenKind.COMMA,
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


def tokenize(source: str) -> list[Token]:
    """The tokens of ``source``, ending with an END token at ``len(source)``."""
    tokens: list[Token] = []
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
                    tokens.append(Token(kind, index, text))
                    index += len(text)
                    break
            else:
                raise ExpressionError(index, _HINTS.get(char, f"unexpected character {char!r}"))
    tokens.append(Token(TokenKind.END, len(source), ""))
    return tokens


def _lex_name(source: str, start: int) -> Token:
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
        return Token(kind, start, text, constant)
    return Token(TokenKind.KEY, start, text)


def _match(pattern: re.Pattern[str], source: str, start: int) -> str:
    found = pattern.match(source, start)
    assert found is not None, "callers check the first character before matching"
    return found.group()


def _lex_string(source: str, start: int) -> Token:
    """A quoted string; the only escapes are \\', \\" and \\\\."""
    quote = source[start]
    chars: list[str] = []
    index = start + 1
    while index < len(source):
        char = source[index]
        if char == quote:
            text = source[start : index + 1]
            return Token(TokenKind.CONSTANT, start, text, Scalar(STRING, "".join(chars)))
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


def _lex_number(source: str, start: int) -> Token:
    text = _match(_NUMBER_RE, source, start)
    end = start + len(text)
    if end < len(source) and source[end] in _NUMBER_TAIL_CHARS:
        # '1e', '3abc', '1.2.3': report the whole malformed word rather than a confusing
        # "unexpected 'abc'" after a valid number.
        while end < len(source) and source[end] in _NUMBER_TAIL_CHARS | {"+", "-"}:
            end += 1
        raise ExpressionError(start, f"malformed number {quoted(source[start:end])}")
    return Token(TokenKind.CONSTANT, start, text, Scalar(NUMBER, float(text)))
