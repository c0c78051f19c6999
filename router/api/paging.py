"""Page sizes and page tokens of the List calls."""

from __future__ import annotations

from router.core.errors import InvalidArgument

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", f"must be 0 or more, got {requested}")
    return min(requested or PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX)


def page_start(token: str) -> int:
    """The position a page token stands for (tokens are opaque to callers)."""
    if not token:
        return 0
    if not token.isdigit():
        raise InvalidArgument("page_token", "is not a token returned by this call")
    return int(token)
