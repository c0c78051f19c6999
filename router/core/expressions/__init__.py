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

from router.core.expressions.columns import AttributeColumns
from router.core.expressions.nodes import Expression
from router.core.expressions.parser import MATCH_ALL, parse
from router.core.expressions.values import (
    ARRAY_ITEMS_MAX,
    EXPRESSION_CHARS_MAX,
    EXPRESSION_DEPTH_MAX,
    KEY_SEGMENTS_MAX,
    ExpressionError,
)

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
