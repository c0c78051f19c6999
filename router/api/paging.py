"""Paging of the List calls: page sizes, page tokens, and the assembly of a page.

A page ends at `page_size` items, at `PAGE_BYTES_MAX` bytes (so that every reply fits a client
with gRPC's default 4 MiB receive limit), or, for ListTasks, once `TASKS_SCANNED_MAX` candidates
have been examined: so a page may hold fewer items than asked, even none, and still carry a
`next_page_token` (AIP-158). Callers keep going while the token is non-empty.

The writer's loop serves these calls, so nothing here may hold it long: the servicer takes
copies of the page's items in one synchronous step (a consistent view), and `fill_page` converts
them to protobuf in slices of at most `CONVERT_SLICE_S`, letting the loop run between slices."""

from __future__ import annotations

import asyncio
import base64
import bisect
import hashlib
import hmac
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message

from router.core.errors import InvalidArgument

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
"""A larger `page_size` is INVALID_ARGUMENT (rather than silently read as this)."""
PAGE_BYTES_MAX = 3_670_016
"""3.5 MiB: the largest List reply, leaving half a MiB under the default 4 MiB a gRPC client
receives for the rest of the reply and its framing. A page holds at least one item, so that a
walk always moves on: items are far smaller (a task's attributes are at most 16 KiB), but for a
worker or a routing policy stored by a request near the 4 MiB a request may carry."""
TASKS_SCANNED_MAX = 10_000
"""Most tasks one ListTasks call examines (about 5 ms of the writer's loop): the tasks of the
filters' most selective index, after the page token, of which some may not match the other
filters."""
CONVERT_SLICE_S = 0.001
"""Protobuf conversion between two turns of the loop (a task with 16 KiB of attributes takes
~0.13 ms to convert); copying the slice into the reply adds about half as much."""
PAGE_TOKEN_CHARS_MAX = 256
"""Longest page token: the tag, the filters' fingerprint and a position (an id of up to 128
characters, or a task's creation number), in base64."""
PAGE_TOKEN_KEY_PURPOSE = "page-token"
"""What the page tokens' key is derived for (`RouterService.derived_key`)."""

_TAG_BYTES = 16
"""HMAC-SHA256 cut to 128 bits: a forged token passes with a chance of 2**-128."""
_FILTERS_BYTES = 8
"""The fingerprint of the request's filters a token carries, to tell a token of other filters
from a forged one."""
_SEQ_DIGITS_MAX = 18
"""A task's creation number in a token: below 10^18, inside a signed 64-bit integer."""
_NOT_A_TOKEN = "is not a next_page_token returned by this call"

_Item = TypeVar("_Item")
_Message = TypeVar("_Message", bound=Message)


def page_size(requested: int, *, default: int = PAGE_SIZE_DEFAULT) -> int:
    if not 0 <= requested <= PAGE_SIZE_MAX:
        raise InvalidArgument(
            "page_size", f"must be between 0 and {PAGE_SIZE_MAX} (0: {default}), got {requested}"
        )
    return requested or default


@dataclass(frozen=True, slots=True)
class PageTokens:
    """The page tokens of one listing with its filters: opaque to clients and tamper-evident.

    A token is base64url of `tag | filters | position`: `position` says where the next page
    starts (a task's creation number, or an id), `filters` is a fingerprint of the request's
    filters, and `tag` an HMAC-SHA256 of the listing's name, `filters` and `position` under a key
    of the router's (`RouterService.derived_key(PAGE_TOKEN_KEY_PURPOSE)`). So a token that was
    not returned by this listing, or was changed, is INVALID_ARGUMENT, and so is a token
    returned for other filters (it would skip or repeat items)."""

    key: bytes
    listing: str
    """The List call, e.g. "ListTasks": a token of one listing is refused by the others."""
    filters: tuple[object, ...] = ()
    """The request's filters, which every page of a walk must repeat."""

    def token(self, position: str) -> str:
        """The next_page_token of a page that ends before `position`'s successor."""
        body = self._filters_fingerprint() + position.encode()
        return base64.urlsafe_b64encode(self._tag(body) + body).rstrip(b"=").decode()

    def position(self, token: str) -> str:
        """The position a request's `page_token` resumes after ("" for the first page);
        InvalidArgument (field `page_token`) for any token this listing did not return."""
        if not token:
            return ""
        if len(token) > PAGE_TOKEN_CHARS_MAX or not token.isascii():
            raise InvalidArgument("page_token", _NOT_A_TOKEN)
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:  # binascii.Error: not base64
            raise InvalidArgument("page_token", _NOT_A_TOKEN) from None
        tag, body = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
        if len(body) <= _FILTERS_BYTES or not hmac.compare_digest(tag, self._tag(body)):
            raise InvalidArgument("page_token", _NOT_A_TOKEN)
        if body[:_FILTERS_BYTES] != self._filters_fingerprint():
            raise InvalidArgument(
                "page_token",
                "was returned for other filters: repeat the first page's filters, or start "
                "again with an empty page_token",
            )
        return body[_FILTERS_BYTES:].decode()  # the router's own text: the tag proves it

    def _tag(self, body: bytes) -> bytes:
        message = self.listing.encode() + b"\0" + body
        return hmac.new(self.key, message, hashlib.sha256).digest()[:_TAG_BYTES]

    def _filters_fingerprint(self) -> bytes:
        # repr of str, int and None is unambiguous, and the same in every process.
        text = repr(self.filters).encode()
        return hashlib.sha256(text).digest()[:_FILTERS_BYTES]


def seq_after(tokens: PageTokens, token: str) -> int:
    """The creation number a ListTasks token resumes after (0: from the start)."""
    position = tokens.position(token)
    if not position:
        return 0
    if not (position.isascii() and position.isdigit() and len(position) <= _SEQ_DIGITS_MAX):
        raise InvalidArgument("page_token", _NOT_A_TOKEN)  # a token of another listing's kind
    return int(position)


def seq_token(tokens: PageTokens, seq: int) -> str:
    return tokens.token(str(seq))


def id_after(tokens: PageTokens, token: str) -> str:
    """The id a ListWorkers, ListQueues or ListRoutingPolicies token resumes after ("": from
    the start)."""
    return tokens.position(token)


def page_after(ids: Collection[str], after_id: str, count_max: int) -> tuple[list[str], bool]:
    """Up to `count_max` of `ids` after `after_id` in id order, and whether more follow. Sorts
    them all: for the queues and policies, which a workspace has at most 1,024 of (~0.2 ms)."""
    ordered = sorted(ids)
    start = bisect.bisect_right(ordered, after_id)
    return ordered[start : start + count_max], start + count_max < len(ordered)


async def fill_page(
    into: RepeatedCompositeFieldContainer[_Message],
    items: Sequence[_Item],
    to_message: Callable[[_Item], _Message],
) -> int:
    """Appends the messages of `items`, in order, to a reply's repeated field while the reply
    stays within `PAGE_BYTES_MAX` (with room for a next_page_token); returns how many went in.
    Yields to the event loop every `CONVERT_SLICE_S` of conversion."""
    await asyncio.sleep(0)  # the caller took the copies in this turn: conversion starts anew
    reply_bytes = field_bytes(PAGE_TOKEN_CHARS_MAX)
    included = 0
    converted: list[_Message] = []
    slice_end_s = time.perf_counter() + CONVERT_SLICE_S
    for item in items:
        message = to_message(item)
        item_bytes = field_bytes(message.ByteSize())
        if reply_bytes + item_bytes > PAGE_BYTES_MAX and included + len(converted) > 0:
            break
        reply_bytes += item_bytes
        converted.append(message)
        if time.perf_counter() >= slice_end_s:
            into.extend(converted)  # copied into the reply a slice at a time, too
            included += len(converted)
            converted = []
            await asyncio.sleep(0)
            slice_end_s = time.perf_counter() + CONVERT_SLICE_S
    into.extend(converted)
    return included + len(converted)


async def fill_page_by_id(
    into: RepeatedCompositeFieldContainer[_Message],
    items: Mapping[str, _Item],
    to_message: Callable[[_Item], _Message],
    *,
    requested_size: int,
    page_token: str,
    tokens: PageTokens,
) -> str:
    """One page of a small id-keyed collection (queues, routing policies) in id order, by
    count and bytes (a full page by default: clients written before paging get everything that
    fits one reply); returns the next page token ("" on the last page). A bad size or token
    raises InvalidArgument before any work."""
    count_max = page_size(requested_size, default=PAGE_SIZE_MAX)
    after_id = id_after(tokens, page_token)
    page, more = page_after(items.keys(), after_id, count_max)
    included = await fill_page(into, [items[item_id] for item_id in page], to_message)
    return tokens.token(page[included - 1]) if included < len(page) or more else ""


def field_bytes(payload_bytes: int) -> int:
    """Bytes of one length-delimited field of a reply: its tag (one byte for the field numbers
    of List replies), the payload's length as a varint, and the payload."""
    return 1 + _varint_bytes(payload_bytes) + payload_bytes


def _varint_bytes(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)
