"""Target and filter expressions: parsing, semantics, errors, limits, and columnar masks.

The central property: for every expression and every set of documents, ``expr.mask(columns)``
equals ``expr.evaluate(document)`` row by row, including after rows are overwritten and cleared.
"""

from __future__ import annotations

import math
import pickle
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router.core.expressions import (
    ARRAY_ITEMS_MAX,
    EXPRESSION_CHARS_MAX,
    EXPRESSION_DEPTH_MAX,
    KEY_SEGMENTS_MAX,
    MATCH_ALL,
    AttributeColumns,
    Expression,
    ExpressionError,
    parse,
)

Document = dict[str, Any]


def matches(source: str, document: Document) -> bool:
    """evaluate() on one document, cross-checked against mask() over a one-row column set."""
    expression = parse(source)
    result = expression.evaluate(document)
    columns = AttributeColumns()
    columns.set_row(0, document)
    assert expression.mask(columns).tolist() == [result], source
    return result


def error_of(source: str) -> ExpressionError:
    with pytest.raises(ExpressionError) as caught:
        parse(source)
    return caught.value


# ------------------------------------------------------------------------------------------
# Parsing: every operator and constant form
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "document", "expected"),
    [
        # comparison operators, both operand orders
        ("level == 3", {"level": 3}, True),
        ("level != 3", {"level": 3}, False),
        ("level < 3", {"level": 2}, True),
        ("level <= 3", {"level": 3}, True),
        ("level > 3", {"level": 3}, False),
        ("level >= 3", {"level": 3}, True),
        ("3 < level", {"level": 4}, True),
        ("3 < level", {"level": 2}, False),
        ("3 >= level", {"level": 3}, True),
        ("'gold' == tier", {"tier": "gold"}, True),
        ("true == vip", {"vip": True}, True),
        ("level==3", {"level": 3}, True),
        # number forms
        ("n == -3", {"n": -3}, True),
        ("n == 1.5", {"n": 1.5}, True),
        ("n == 1e3", {"n": 1000}, True),
        ("n == 1.5E-2", {"n": 0.015}, True),
        ("n == 2e+1", {"n": 20}, True),
        ("n == .5", {"n": 0.5}, True),
        ("n == -.5", {"n": -0.5}, True),
        ("n == 2.", {"n": 2}, True),
        ("n == 007", {"n": 7}, True),
        ("n > -1", {"n": 0}, True),
        # string forms and escapes
        ("s == 'a b'", {"s": "a b"}, True),
        ('s == "a b"', {"s": "a b"}, True),
        ("s == 'it\\'s'", {"s": "it's"}, True),
        ('s == "say \\"hi\\""', {"s": 'say "hi"'}, True),
        ("s == 'back\\\\slash'", {"s": "back\\slash"}, True),
        ('s == "it\'s"', {"s": "it's"}, True),
        ("s == ''", {"s": ""}, True),
        ("s == 'AND'", {"s": "AND"}, True),
        ("s == 'été'", {"s": "été"}, True),
        # keyword constants, any case
        ("x == null", {}, True),
        ("x == NULL", {"x": None}, True),
        ("x == True", {"x": True}, True),
        ("x == FALSE", {"x": False}, True),
        # CONTAINS, HAS, IN, NOT IN
        ("tags CONTAINS 'vip'", {"tags": ["vip", "new"]}, True),
        ("name CONTAINS 'ann'", {"name": "joanna"}, True),
        ("languages HAS 'es'", {"languages": ["en", "es"]}, True),
        ("languages has 'fr'", {"languages": ["en", "es"]}, False),
        ("tier IN ['gold', 'silver']", {"tier": "silver"}, True),
        ("tier in ['gold', 'silver']", {"tier": "bronze"}, False),
        ("tier NOT IN ['gold', 'silver']", {"tier": "bronze"}, True),
        ("tier not in ['gold']", {"tier": "gold"}, False),
        ("n IN [1, 'a', true, null, 2.5]", {"n": 2.5}, True),
        ("n IN []", {"n": 1}, False),
        ("n NOT IN []", {"n": 1}, True),
        # boolean structure and synonyms
        ("a AND b", {"a": True, "b": True}, True),
        ("a and b", {"a": True, "b": False}, False),
        ("a && b", {"a": True, "b": True}, True),
        ("a OR b", {"a": False, "b": True}, True),
        ("a || b", {"a": False, "b": False}, False),
        ("NOT a", {"a": True}, False),
        ("not a", {"a": False}, True),
        ("!a", {"a": False}, True),
        ("! a", {"a": True}, False),
        ("!!a", {"a": True}, True),
        ("NOT NOT a", {"a": True}, True),
        ("(a)", {"a": True}, True),
        ("((a == 1))", {"a": 1}, True),
        ("a AND b AND c AND d", {"a": True, "b": True, "c": True, "d": True}, True),
        ("a OR b OR c OR d", {"d": True}, True),
        # bare key and bare literals
        ("vip", {"vip": True}, True),
        ("true", {}, True),
        ("false", {}, False),
        ("TRUE OR x", {}, True),
        ("NOT false", {}, True),
        # whitespace of every kind
        ("\ta\n==\r\n1 ", {"a": 1}, True),
    ],
)
def test_operators_and_constants(source: str, document: Document, expected: bool) -> None:
    assert matches(source, document) is expected


@pytest.mark.parametrize(
    ("source", "document", "expected"),
    [
        # NOT binds tighter than AND: (NOT a) AND b
        ("NOT a AND b", {"a": False, "b": False}, False),
        ("NOT (a AND b)", {"a": False, "b": False}, True),
        # AND binds tighter than OR: a OR (b AND c)
        ("a OR b AND c", {"a": True}, True),
        ("(a OR b) AND c", {"a": True}, False),
        ("a AND b OR c", {"c": True}, True),
        ("a AND (b OR c)", {"c": True}, False),
        # NOT binds tighter than OR: (NOT a) OR b
        ("NOT a OR b", {"a": True, "b": True}, True),
        ("NOT (a OR b)", {"a": True, "b": True}, False),
        # NOT applies to a whole comparison
        ("NOT level > 3", {"level": 5}, False),
        ("!a && b || c", {"a": True, "b": True}, False),
        ("!a && b || c", {"a": False, "b": True}, True),
    ],
)
def test_precedence(source: str, document: Document, expected: bool) -> None:
    assert matches(source, document) is expected


def test_keywords_are_case_insensitive_but_keys_are_not() -> None:
    assert matches("a AnD b oR c", {"a": True, "b": True})
    assert matches(
        "x iN [1] And y nOt In [2] aND z HaS 3 AND w cOnTaInS 'q'",
        {"x": 1, "y": 1, "z": [3], "w": "qq"},
    )
    assert not matches("Vip", {"vip": True})


def test_a_dotted_path_is_always_a_key_even_when_a_segment_is_a_keyword() -> None:
    assert matches("flags.in == 1", {"flags": {"in": 1}})
    assert matches("true.x == 1", {"true": {"x": 1}})


# ------------------------------------------------------------------------------------------
# Semantics: NULL, types, nested keys
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "document", "expected"),
    [
        # missing and null
        ("x == null", {}, True),
        ("x == null", {"x": None}, True),
        ("x == null", {"x": 0}, False),
        ("x == null", {"x": ""}, False),
        ("x != null", {}, False),
        ("x != null", {"x": None}, False),
        ("x != null", {"x": False}, True),
        ("x == 1", {}, False),
        ("x != 1", {}, True),
        ("x != 1", {"x": None}, True),
        ("x < 1", {}, False),
        ("x <= 1", {"x": None}, False),
        ("x > 1", {}, False),
        ("x >= 1", {}, False),
        ("x < null", {"x": 1}, False),
        ("x >= null", {}, False),
        # type mismatch: false for every comparison except !=
        ("x == 3", {"x": "3"}, False),
        ("x != 3", {"x": "3"}, True),
        ("x < 3", {"x": "2"}, False),
        ("x > '2'", {"x": 3}, False),
        ("x == 'a'", {"x": ["a"]}, False),
        ("x != 'a'", {"x": ["a"]}, True),
        ("x == 1", {"x": {"y": 1}}, False),
        ("x != 1", {"x": {"y": 1}}, True),
        # booleans are not numbers, and are not ordered
        ("x == 1", {"x": True}, False),
        ("x != 1", {"x": True}, True),
        ("x == 0", {"x": False}, False),
        ("x == true", {"x": 1}, False),
        ("x >= 1", {"x": True}, False),
        ("x < true", {"x": False}, False),
        ("x > false", {"x": True}, False),
        # ints and floats compare numerically, as IEEE doubles
        ("x == 1", {"x": 1.0}, True),
        ("x == 1.0", {"x": 1}, True),
        ("x < 1.5", {"x": 1}, True),
        ("x == 0", {"x": -0.0}, True),
        ("x == 9007199254740993", {"x": 9007199254740992}, True),
        ("x > 1e308", {"x": 10**400}, True),
        ("x < -1e308", {"x": -(10**400)}, True),
        ("x == 1e999", {"x": math.inf}, True),
        ("x == 1", {"x": math.nan}, False),
        ("x != 1", {"x": math.nan}, True),
        ("x < 1", {"x": math.nan}, False),
        # strings order by code point
        ("x < 'b'", {"x": "a"}, True),
        ("x < 'b'", {"x": "B"}, True),
        ("x > 'b'", {"x": "ba"}, True),
        ("x <= 'b'", {"x": "b"}, True),
        ("x > 'Z'", {"x": "a"}, True),
        # CONTAINS: substring of a string, element of a list
        ("x CONTAINS 'a'", {"x": "cat"}, True),
        ("x CONTAINS 'z'", {"x": "cat"}, False),
        ("x CONTAINS ''", {"x": "cat"}, True),
        ("x CONTAINS 'a'", {"x": ["a", "b"]}, True),
        ("x CONTAINS 'a'", {"x": ["cat"]}, False),
        ("x CONTAINS 1", {"x": [1.0, 2]}, True),
        ("x CONTAINS 1", {"x": "123"}, False),
        ("x CONTAINS true", {"x": [1]}, False),
        ("x CONTAINS null", {"x": [None]}, True),
        ("x CONTAINS 'a'", {}, False),
        ("x CONTAINS 'a'", {"x": None}, False),
        ("x CONTAINS 'a'", {"x": 5}, False),
        ("x CONTAINS 'a'", {"x": {"a": 1}}, False),
        ("x CONTAINS 'a'", {"x": [["a"]]}, False),
        # HAS: lists only
        ("x HAS 'a'", {"x": ["a"]}, True),
        ("x HAS 'a'", {"x": "a"}, False),
        ("x HAS 'a'", {"x": "cat"}, False),
        ("x HAS 'a'", {}, False),
        ("x HAS 1", {"x": [True]}, False),
        ("x HAS 1", {"x": [1.0]}, True),
        ("x HAS null", {"x": [None]}, True),
        ("x HAS 'a'", {"x": []}, False),
        ("x HAS 'a'", {"x": ("a",)}, True),
        # IN and NOT IN: equality with an item, NOT IN is its negation
        ("x IN [1, 2]", {"x": 2.0}, True),
        ("x IN [1, 2]", {"x": True}, False),
        ("x IN [1, 2]", {}, False),
        ("x NOT IN [1, 2]", {}, True),
        ("x NOT IN [1, 2]", {"x": None}, True),
        ("x IN [null]", {}, True),
        ("x NOT IN [null, 1]", {"x": None}, False),
        ("x IN ['a']", {"x": ["a"]}, False),
        ("x NOT IN ['a']", {"x": ["a"]}, True),
        ("x IN [true]", {"x": 1}, False),
        # bare key is "== true"
        ("x", {"x": True}, True),
        ("x", {"x": False}, False),
        ("x", {"x": 1}, False),
        ("x", {"x": "true"}, False),
        ("x", {}, False),
        ("NOT x", {}, True),
        ("NOT x", {"x": 1}, True),
    ],
)
def test_null_and_type_semantics(source: str, document: Document, expected: bool) -> None:
    assert matches(source, document) is expected


@pytest.mark.parametrize(
    ("source", "document", "expected"),
    [
        ("customer.tier == 'gold'", {"customer": {"tier": "gold"}}, True),
        ("customer.tier == 'gold'", {"customer": {"tier": "silver"}}, False),
        ("skills.billing >= 3", {"skills": {"billing": 4.5}}, True),
        ("a.b.c.d == 1", {"a": {"b": {"c": {"d": 1}}}}, True),
        # a path through a non-object is missing
        ("customer.tier == null", {"customer": "gold"}, True),
        ("customer.tier == null", {"customer": ["gold"]}, True),
        ("customer.tier == null", {"customer": None}, True),
        ("customer.tier == null", {}, True),
        ("customer.tier != 'gold'", {"customer": "gold"}, True),
        ("customer.tier NOT IN ['gold']", {"customer": 3}, True),
        # a dot in a document key is not a path separator
        ("customer.tier == 'gold'", {"customer.tier": "gold"}, False),
        # the object itself equals no constant
        ("customer == null", {"customer": {}}, False),
        ("customer", {"customer": {"vip": True}}, False),
    ],
)
def test_nested_keys(source: str, document: Document, expected: bool) -> None:
    assert matches(source, document) is expected


def test_keys_lists_every_dotted_path_read() -> None:
    expression = parse(
        "skills.billing >= 3 AND (tier IN ['gold'] OR 2 < level) AND NOT vip "
        "AND languages HAS 'es' AND name CONTAINS 'a' AND skills.billing != 5"
    )
    assert expression.keys == frozenset(
        {"skills.billing", "tier", "level", "vip", "languages", "name"}
    )
    assert parse("true OR false").keys == frozenset()
    assert MATCH_ALL.keys == frozenset()


# ------------------------------------------------------------------------------------------
# The Expression object
# ------------------------------------------------------------------------------------------


def test_match_all_matches_every_document_and_every_row() -> None:
    assert parse("true") == MATCH_ALL
    assert MATCH_ALL.evaluate({})
    assert MATCH_ALL.evaluate({"x": None})
    columns = AttributeColumns()
    columns.set_row(2, {"a": 1})
    assert MATCH_ALL.mask(columns).tolist() == [True, True, True]


def test_expression_is_immutable_hashable_and_keeps_its_source() -> None:
    expression = parse("tier == 'gold'")
    assert expression.source == "tier == 'gold'"
    assert str(expression) == "tier == 'gold'"
    assert expression == parse("tier == 'gold'")
    assert expression != parse("tier == 'silver'")
    assert len({expression, parse("tier == 'gold'"), parse("a")}) == 2
    with pytest.raises(AttributeError):
        expression.source = "x"  # type: ignore[misc]
    assert isinstance(expression, Expression)


# ------------------------------------------------------------------------------------------
# Errors: every kind, with its exact position
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "position", "reason"),
    [
        # empty expression
        ("", 0, "empty expression"),
        ("   ", 0, "empty expression"),
        # unexpected character
        ("a == 1 @", 7, "unexpected character '@'"),
        ("a = 1", 2, "unexpected character '='; compare with '=='"),
        ("a & b", 2, "unexpected character '&'; use '&&' or AND"),
        ("a | b", 2, "unexpected character '|'; use '||' or OR"),
        ("naïve == 1", 2, "unexpected character 'ï'"),
        ("a == - 1", 5, "unexpected character '-'"),
        ("a.", 2, "expected a name after '.' in a key"),
        ("a..b == 1", 2, "expected a name after '.' in a key"),
        ("a.1 == 1", 2, "expected a name after '.' in a key"),
        ("n == 1e", 5, "malformed number '1e'"),
        ("n == 3abc", 5, "malformed number '3abc'"),
        ("n == 1.2.3", 5, "malformed number '1.2.3'"),
        # unterminated string, bad escape
        ("name == 'ann", 8, "unterminated string: no closing '"),
        ('name == "ann', 8, 'unterminated string: no closing "'),
        ("name == 'ann\\'", 8, "unterminated string: no closing '"),
        ("name == 'ann\\", 8, "unterminated string: no closing '"),
        (
            "s == 'a\\nb'",
            7,
            "unknown escape '\\n' in a string; only \\', \\\" and \\\\ are allowed",
        ),
        # unbalanced parentheses and brackets
        ("(a", 0, "unbalanced parentheses: '(' at position 0 is never closed"),
        ("a AND ((b OR c)", 6, "unbalanced parentheses: '(' at position 6 is never closed"),
        ("a)", 1, "unbalanced parentheses: ')' has no matching '('"),
        (")", 0, "unbalanced parentheses: ')' has no matching '('"),
        ("(a) OR b)", 8, "unbalanced parentheses: ')' has no matching '('"),
        ("(a b)", 3, "expected ')' to close '(' at position 0 after 'a', found 'b'"),
        ("x IN [1, 2", 5, "unbalanced brackets: '[' at position 5 is never closed"),
        ("x IN [1,", 5, "unbalanced brackets: '[' at position 5 is never closed"),
        ("x IN [", 5, "unbalanced brackets: '[' at position 5 is never closed"),
        # missing operand
        ("a ==", 4, "expected a constant after '=='"),
        ("customer.tier == ", 17, "expected a constant after '=='"),
        ("a == )", 5, "expected a constant after '==', found ')'"),
        ("a == AND b", 5, "expected a constant after '==', found 'AND'"),
        ("a CONTAINS", 10, "expected a constant after 'CONTAINS'"),
        ("a HAS OR b", 6, "expected a constant after 'HAS', found 'OR'"),
        ("3 <", 3, "expected a key after '<'"),
        ("3 < )", 4, "expected a key after '<', found ')'"),
        ("a AND", 5, "expected a condition after 'AND'"),
        ("a OR OR b", 5, "expected a condition after 'OR', found 'OR'"),
        ("NOT", 3, "expected a condition after 'NOT'"),
        ("AND a", 0, "expected a condition, found 'AND'"),
        ("== 3", 0, "expected a condition, found '=='"),
        ("()", 1, "expected a condition after '(', found ')'"),
        ("a AND ()", 7, "expected a condition after '(', found ')'"),
        ("x IN", 4, "expected an array after 'IN'"),
        ("x NOT IN", 8, "expected an array after 'IN'"),
        ("x IN [1,]", 8, "expected a constant after ',', found ']'"),
        ("x IN [,1]", 6, "expected a constant after '[', found ','"),
        ("x IN [1 2]", 8, "expected ',' or ']' after '1', found '2'"),
        ("3", 1, "expected a comparison operator after '3'"),
        ("'gold'", 6, "expected a comparison operator after 'gold'"),
        ("null AND a", 5, "expected a comparison operator after 'null', found 'AND'"),
        # trailing input
        ("a b", 2, "expected AND, OR or the end of the expression after 'a', found 'b'"),
        ("a == 1 2", 7, "expected AND, OR or the end of the expression after '1', found '2'"),
        ("a NOT b", 2, "expected AND, OR or the end of the expression after 'a', found 'NOT'"),
        ("x IN [1] [2]", 9, "expected AND, OR or the end of the expression after ']', found '['"),
        # key compared with key, constant with constant
        (
            "tier == gold",
            8,
            "compare a key with a constant; 'gold' is a key "
            "(quote it to compare with the string 'gold')",
        ),
        ("a < b.c", 4, "compare a key with a constant; 'b.c' is a key"),
        ("a CONTAINS b", 11, "compare a key with a constant; 'b' is a key"),
        ("a HAS b", 6, "compare a key with a constant; 'b' is a key"),
        ("1 == 2", 5, "compare a key with a constant; found two constants"),
        ("'a' != \"b\"", 7, "compare a key with a constant; found two constants"),
        # arrays only after IN
        ("x IN 'gold'", 5, "IN takes an array, like IN ['a', 'b'], found 'gold'"),
        ("x NOT IN 3", 9, "IN takes an array, like IN ['a', 'b'], found '3'"),
        ("x IN y", 5, "IN takes an array, like IN ['a', 'b'], found 'y'"),
        ("x == [1]", 5, "an array is only allowed after IN or NOT IN"),
        ("x HAS [1]", 6, "an array is only allowed after IN or NOT IN"),
        ("[1] == x", 0, "an array is only allowed after IN or NOT IN"),
        ("1 == [1]", 5, "an array is only allowed after IN or NOT IN"),
        ("x IN [[1]]", 6, "arrays cannot be nested"),
        ("x IN [1, y]", 9, "array items must be constants; 'y' is a key"),
        ("'es' IN languages", 5, "the key must come before 'IN'"),
        ("'es' HAS languages", 5, "the key must come before 'HAS'"),
        ("'es' NOT IN languages", 5, "the key must come before 'NOT'"),
    ],
)
def test_errors_name_the_exact_position(source: str, position: int, reason: str) -> None:
    error = error_of(source)
    assert error.position == position
    assert error.reason.startswith(reason), error.reason
    assert str(error) == f"position {position}: {error.reason}"


def test_error_is_a_value_error_that_survives_pickling() -> None:
    error = error_of("a ==")
    assert isinstance(error, ValueError)
    assert str(error) == "position 4: expected a constant after '=='"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.position, copy.reason, str(copy)) == (error.position, error.reason, str(error))


def test_a_long_offending_token_is_shortened_in_the_message() -> None:
    error = error_of("x IN '" + "a" * 500 + "'")
    assert error.position == 5
    assert len(error.reason) < 100


# ------------------------------------------------------------------------------------------
# Limits
# ------------------------------------------------------------------------------------------


def test_source_length_limit() -> None:
    prefix = "s == '"
    longest = prefix + "a" * (EXPRESSION_CHARS_MAX - len(prefix) - 1) + "'"
    assert len(longest) == EXPRESSION_CHARS_MAX
    assert parse(longest).evaluate({"s": longest[len(prefix) : -1]})
    error = error_of(longest + " ")
    assert error.position == EXPRESSION_CHARS_MAX
    assert error.reason == f"expression is longer than {EXPRESSION_CHARS_MAX} characters"


def test_depth_limit_counts_parentheses_and_not() -> None:
    depth = EXPRESSION_DEPTH_MAX
    assert parse("(" * depth + "a" + ")" * depth).evaluate({"a": True})
    assert parse("NOT " * depth + "a").evaluate({"a": depth % 2 == 0})
    assert parse("!(" * (depth // 2) + "a" + ")" * (depth // 2)).evaluate({"a": True})

    error = error_of("(" * (depth + 1) + "a" + ")" * (depth + 1))
    assert error.position == depth
    assert error.reason == (
        f"expression nests deeper than {EXPRESSION_DEPTH_MAX} levels of parentheses and NOT"
    )
    assert error_of("NOT " * (depth + 1) + "a").position == 4 * depth
    assert error_of("!(" * (depth // 2) + "!a" + ")" * (depth // 2)).position == depth


def test_depth_limit_does_not_count_long_chains() -> None:
    chain = " AND ".join(f"k{i} != {i}" for i in range(200))
    assert parse(chain).evaluate({})
    chain = " OR ".join(f"k{i} == {i}" for i in range(200))
    assert parse(chain).evaluate({"k199": 199})


def test_array_items_limit() -> None:
    items = ", ".join(str(i) for i in range(ARRAY_ITEMS_MAX))
    assert parse(f"x IN [{items}]").evaluate({"x": ARRAY_ITEMS_MAX - 1})
    source = "x IN [" + ", ".join(["1"] * (ARRAY_ITEMS_MAX + 1)) + "]"
    error = error_of(source)
    assert error.position == len("x IN [") + 3 * ARRAY_ITEMS_MAX
    assert error.reason == f"array has more than {ARRAY_ITEMS_MAX} items"


def test_key_segments_limit() -> None:
    names = [chr(ord("a") + i) for i in range(KEY_SEGMENTS_MAX + 1)]
    document: Any = 1
    for name in reversed(names[:KEY_SEGMENTS_MAX]):
        document = {name: document}
    assert parse(".".join(names[:KEY_SEGMENTS_MAX]) + " == 1").evaluate(document)
    error = error_of(".".join(names) + " == 1")
    assert error.position == 2 * KEY_SEGMENTS_MAX
    assert error.reason == f"key has more than {KEY_SEGMENTS_MAX} segments"


# ------------------------------------------------------------------------------------------
# AttributeColumns
# ------------------------------------------------------------------------------------------


def test_columns_grow_and_unset_rows_are_empty_documents() -> None:
    columns = AttributeColumns()
    assert columns.row_count == 0
    assert parse("a == 1").mask(columns).shape == (0,)
    columns.set_row(5, {"a": 1})
    columns.set_row(2, {"a": 2})
    assert columns.row_count == 6
    assert parse("a == 1").mask(columns).tolist() == [False] * 5 + [True]
    assert parse("a == null").mask(columns).tolist() == [True, True, False, True, True, False]
    columns.set_row(40, {"a": 1})  # grows past a materialised path
    mask = parse("a == 1").mask(columns)
    assert mask.dtype == np.bool_
    assert np.flatnonzero(mask).tolist() == [5, 40]


def test_set_row_and_clear_row_update_materialised_columns() -> None:
    columns = AttributeColumns()
    expression = parse("languages HAS 'es' AND level >= 3 OR name CONTAINS 'an'")
    columns.set_row(0, {"languages": ["es"], "level": 3})
    columns.set_row(1, {"name": "joanna"})
    assert expression.mask(columns).tolist() == [True, True]
    columns.set_row(0, {"languages": ["en"], "level": 3})
    columns.set_row(1, {"name": "bob"})
    columns.set_row(2, {"languages": ["es"], "level": 4, "name": "x"})
    assert expression.mask(columns).tolist() == [False, False, True]
    columns.clear_row(2)
    assert expression.mask(columns).tolist() == [False, False, False]
    assert parse("name == null").mask(columns).tolist() == [True, False, True]
    columns.clear_row(4)
    assert columns.row_count == 5


def test_masks_are_fresh_arrays() -> None:
    columns = AttributeColumns()
    for row in range(4):
        columns.set_row(row, {"tags": ["a"] if row % 2 else [], "n": row})
    for source in ["tags HAS 'a'", "tags CONTAINS 'a'", "n IN [1, 2]", "n > 1", "true"]:
        expression = parse(source)
        first = expression.mask(columns)
        first[:] = ~first
        assert expression.mask(columns).tolist() == (~first).tolist(), source


def test_negative_row_is_rejected() -> None:
    columns = AttributeColumns()
    with pytest.raises(ValueError, match="row must be 0 or more"):
        columns.set_row(-1, {})
    with pytest.raises(ValueError, match="row must be 0 or more"):
        columns.clear_row(-1)


def test_mask_timing_on_ten_thousand_rows() -> None:
    """Prints the cost of a 3-clause mask over 10,000 rows; asserts only correctness."""
    rows = 10_000
    columns = AttributeColumns()
    documents = [
        {
            "skills": {"billing": row % 6},
            "languages": ["en", "es"] if row % 3 == 0 else ["en"],
            "tier": ["gold", "silver", "bronze"][row % 3],
        }
        for row in range(rows)
    ]
    for row, document in enumerate(documents):
        columns.set_row(row, document)
    expression = parse("skills.billing >= 3 AND languages HAS 'es' AND tier != 'bronze'")
    started = time.perf_counter()
    mask = expression.mask(columns)
    first_ms = (time.perf_counter() - started) * 1000
    repeats = 200
    started = time.perf_counter()
    for _ in range(repeats):
        expression.mask(columns)
    mask_ms = (time.perf_counter() - started) * 1000 / repeats
    print(f"\nmask over {rows} rows: first {first_ms:.2f} ms, then {mask_ms:.3f} ms")
    assert mask.tolist() == [expression.evaluate(document) for document in documents]


# ------------------------------------------------------------------------------------------
# Properties: mask() equals evaluate() on every row, and the NOT algebra
# ------------------------------------------------------------------------------------------

KEYS = ["a", "b", "c", "c.d", "c.d.e", "zz"]
# (source text, Python value) of constants; the value feeds the specification oracle below.
CONSTANTS: list[tuple[str, Any]] = [
    ("null", None),
    ("true", True),
    ("FALSE", False),
    ("0", 0),
    ("1", 1),
    ("1.0", 1.0),
    ("-2.5", -2.5),
    ("1e0", 1.0),
    ("3", 3),
    ("'x'", "x"),
    ('"y"', "y"),
    ("''", ""),
    ("'xy'", "xy"),
    ("'X'", "X"),
    ("'it\\'s'", "it's"),
]
COMPARISONS = ["==", "!=", "<", "<=", ">", ">="]
FLIPPED = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}

scalar_values = st.one_of(
    st.sampled_from(
        [None, True, False, 0, 1, 1.0, -2.5, 3, "x", "y", "", "xy", "X", "it's", "xyz"]
    ),
    st.integers(-3, 3),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 2**60, 10**400]),
)
values = st.recursive(
    scalar_values,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["d", "e"]), children, max_size=2)
    ),
    max_leaves=6,
)
documents = st.dictionaries(st.sampled_from(["a", "b", "c"]), values, max_size=3)

key_texts = st.sampled_from(KEYS)
constant_texts = st.sampled_from([text for text, _ in CONSTANTS])
array_texts = st.lists(constant_texts, max_size=4).map(lambda items: f"[{', '.join(items)}]")


def _atom(draw: st.DrawFn) -> str:
    key = draw(key_texts)
    constant = draw(constant_texts)
    form = draw(st.integers(0, 8))
    if form == 0:
        return f"{key} {draw(st.sampled_from(COMPARISONS))} {constant}"
    if form == 1:
        return f"{constant} {draw(st.sampled_from(COMPARISONS))} {key}"
    if form == 2:
        return f"{key} {draw(st.sampled_from(['CONTAINS', 'contains']))} {constant}"
    if form == 3:
        return f"{key} {draw(st.sampled_from(['HAS', 'has']))} {constant}"
    if form == 4:
        return f"{key} IN {draw(array_texts)}"
    if form == 5:
        return f"{key} NOT IN {draw(array_texts)}"
    if form == 6:
        return key
    if form == 7:
        return draw(st.sampled_from(["true", "false"]))
    return f"{key} == {constant}"


atoms = st.composite(_atom)()
expressions = st.recursive(
    atoms,
    lambda inner: st.one_of(
        inner.map(lambda x: f"NOT ({x})"),
        inner.map(lambda x: f"!{x}" if " " not in x else f"!({x})"),
        st.tuples(inner, st.sampled_from(["AND", "and", "&&", "OR", "or", "||"]), inner).map(
            lambda t: f"({t[0]}) {t[1]} ({t[2]})"
        ),
        # Unparenthesised, so that precedence is exercised too.
        st.tuples(inner, st.sampled_from(["AND", "OR"]), inner).map(
            lambda t: f"{t[0]} {t[1]} {t[2]}"
        ),
    ),
    max_leaves=8,
)
edits: st.SearchStrategy[tuple[str, int, Document]] = st.one_of(
    st.tuples(st.just("set"), st.integers(0, 9), documents),
    st.tuples(st.just("clear"), st.integers(0, 9), st.just({})),
)

PROPERTY_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def assert_mask_matches(
    expression: Expression, columns: AttributeColumns, rows: dict[int, Document]
) -> None:
    mask = expression.mask(columns)
    assert mask.dtype == np.bool_
    assert mask.shape == (columns.row_count,)
    expected = [expression.evaluate(rows.get(row, {})) for row in range(columns.row_count)]
    assert mask.tolist() == expected, expression.source


@PROPERTY_SETTINGS
@given(
    initial=st.lists(documents, max_size=8),
    order=st.randoms(use_true_random=False),
    sources=st.lists(expressions, min_size=2, max_size=4),
    changes=st.lists(edits, max_size=12),
)
def test_mask_equals_evaluate_on_every_row(
    initial: list[Document],
    order: Any,
    sources: list[str],
    changes: list[tuple[str, int, Document]],
) -> None:
    columns = AttributeColumns()
    rows: dict[int, Document] = dict(enumerate(initial))
    shuffled = list(rows.items())
    order.shuffle(shuffled)  # rows may be set in any order
    for row, document in shuffled:
        columns.set_row(row, document)
    parsed = [parse(source) for source in sources]
    # All but the last expression build their columns now and are checked after every edit
    # (incremental maintenance); the last is first asked for after the edits (late building).
    early, late = parsed[:-1], parsed[-1]
    for expression in early:
        assert_mask_matches(expression, columns, rows)
    for action, row, document in changes:
        if action == "set":
            columns.set_row(row, document)
            rows[row] = document
        else:
            columns.clear_row(row)
            rows[row] = {}
        for expression in early:
            assert_mask_matches(expression, columns, rows)
    assert_mask_matches(late, columns, rows)


EVERY_KIND_OF_VALUE: list[Any] = [
    _ABSENT := object(),
    None,
    True,
    False,
    0,
    1.5,
    math.nan,
    "x",
    "xy",
    ["x", 1],
    [True],
    [],
    {"d": 1},
]
PROBES = [
    "v",
    "v == null",
    "v != null",
    "v == true",
    "v == false",
    "v == 0",
    "v > 1",
    "v == 'x'",
    "v < 'xz'",
    "v CONTAINS 'x'",
    "v HAS 'x'",
    "v HAS 1",
    "v HAS true",
    "v IN ['x', 0, false, null]",
    "v NOT IN [1.5, 'xy', true]",
    "v.d == 1",
]


def test_overwriting_a_row_with_any_kind_of_value_updates_every_built_column() -> None:
    probes = [parse(source) for source in PROBES]
    for before in EVERY_KIND_OF_VALUE:
        for after in EVERY_KIND_OF_VALUE:
            columns = AttributeColumns()
            rows = {0: {"v": "xy"}, 1: {} if before is _ABSENT else {"v": before}}
            for row, document in rows.items():
                columns.set_row(row, document)
            for expression in probes:
                assert_mask_matches(expression, columns, rows)
            rows[1] = {} if after is _ABSENT else {"v": after}
            columns.set_row(1, rows[1])
            for expression in probes:
                assert_mask_matches(expression, columns, rows)
            columns.clear_row(1)
            rows[1] = {}
            for expression in probes:
                assert_mask_matches(expression, columns, rows)


_MISSING = object()


def _lookup(document: Document, key: str) -> Any:
    value: Any = document
    for segment in key.split("."):
        if not isinstance(value, dict) or segment not in value:
            return _MISSING
        value = value[segment]
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _spec_equal(value: Any, constant: Any) -> bool:
    """The brief's equality, written independently of the module."""
    if constant is None:
        return value is _MISSING or value is None
    if isinstance(constant, bool):
        return isinstance(value, bool) and value == constant
    if _is_number(constant):
        return _is_number(value) and _float(value) == float(constant)
    return isinstance(value, str) and value == constant


def _float(value: int | float) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def _spec_compare(value: Any, op: str, constant: Any) -> bool:
    if op == "==":
        return _spec_equal(value, constant)
    if op == "!=":
        return not _spec_equal(value, constant)
    if _is_number(value) and _is_number(constant):
        left, right = _float(value), float(constant)
    elif isinstance(value, str) and isinstance(constant, str):
        left, right = value, constant  # type: ignore[assignment]
    else:
        return False
    return {"<": left < right, "<=": left <= right, ">": left > right, ">=": left >= right}[op]


@PROPERTY_SETTINGS
@given(
    rows=st.lists(documents, min_size=1, max_size=6),
    key=key_texts,
    op=st.sampled_from(COMPARISONS),
    constant=st.sampled_from(CONSTANTS),
    items=st.lists(st.sampled_from(CONSTANTS), max_size=4),
)
def test_atoms_follow_the_specification_and_the_not_algebra(
    rows: list[Document],
    key: str,
    op: str,
    constant: tuple[str, Any],
    items: list[tuple[str, Any]],
) -> None:
    text, value = constant
    array = "[" + ", ".join(item_text for item_text, _ in items) + "]"
    columns = AttributeColumns()
    for row, document in enumerate(rows):
        columns.set_row(row, document)

    def check(source: str, expected: list[bool]) -> None:
        expression = parse(source)
        assert [expression.evaluate(document) for document in rows] == expected, source
        assert expression.mask(columns).tolist() == expected, source

    found = [_lookup(document, key) for document in rows]
    compared = [_spec_compare(v, op, value) for v in found]
    check(f"{key} {op} {text}", compared)
    check(f"{text} {FLIPPED[op]} {key}", compared)
    check(f"NOT ({key} {op} {text})", [not c for c in compared])
    equal = [_spec_equal(v, value) for v in found]
    check(f"{key} != {text}", [not e for e in equal])
    check(f"NOT {key} == {text}", [not e for e in equal])
    check(f"{key} IN [{text}]", equal)

    member = [
        isinstance(v, list) and any(_spec_equal(element, value) for element in v) for v in found
    ]
    check(f"{key} HAS {text}", member)
    substring = [isinstance(v, str) and isinstance(value, str) and value in v for v in found]
    check(f"{key} CONTAINS {text}", [m or s for m, s in zip(member, substring, strict=True)])

    inside = [any(_spec_equal(v, item) for _, item in items) for v in found]
    check(f"{key} IN {array}", inside)
    check(f"{key} NOT IN {array}", [not i for i in inside])
    check(f"NOT ({key} IN {array})", [not i for i in inside])
    check(key, [_spec_equal(v, True) for v in found])


TOKEN_SOUP = [
    "a", "b.c", "==", "!=", "<", ">=", "AND", "or", "NOT", "!", "&&", "||", "(", ")", "[", "]",
    ",", "IN", "HAS", "CONTAINS", "'x'", '"y', "1", "-2.5", "true", "null", "=", ".", "\\", "1e",
]  # fmt: skip
SOUP_DOCUMENTS: list[Document] = [
    {},
    {"a": True, "b": {"c": 1}},
    {"a": ["x", 1], "b": {"c": "x"}},
    {"a": "xy", "b": None},
]


@settings(max_examples=400, deadline=None)
@given(
    source=st.one_of(
        st.lists(st.sampled_from(TOKEN_SOUP), max_size=10).map(" ".join),
        st.lists(st.sampled_from(TOKEN_SOUP), max_size=10).map("".join),
        st.text(max_size=30),
    )
)
def test_parse_either_succeeds_or_raises_a_positioned_error(source: str) -> None:
    try:
        expression = parse(source)
    except ExpressionError as error:
        assert 0 <= error.position <= len(source)
        assert str(error).startswith(f"position {error.position}: ")
        return
    columns = AttributeColumns()
    for row, document in enumerate(SOUP_DOCUMENTS):
        columns.set_row(row, document)
    expected = [expression.evaluate(document) for document in SOUP_DOCUMENTS]
    assert expression.mask(columns).tolist() == expected
