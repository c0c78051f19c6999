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
import bisect
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TypeVar

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import Message

from router.core.errors import InvalidArgument
from router.core.validation import check_id

PAGE_SIZE_DEFAULT = 100
PAGE_SIZE_MAX = 1000
"""A larger `page_size` is read as this (AIP-158: coerced, not refused)."""
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
PAGE_TOKEN_CHARS_MAX = 128
"""Longest page token (an id, or a task's creation number)."""

_SEQ_DIGITS_MAX = 18
"""A task's creation number in a token: below 10^18, inside a signed 64-bit integer."""
_NOT_A_TOKEN = "is not a next_page_token returned by this call"

_Item = TypeVar("_Item")
_Message = TypeVar("_Message", bound=Message)


def page_size(requested: int, *, default: int = PAGE_SIZE_DEFAULT) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", f"must be 0 or more, got {requested}")
    return min(requested or default, PAGE_SIZE_MAX)


def seq_after(token: str) -> int:
    """The creation number a ListTasks token resumes after (0: from the start)."""
    if not token:
        return 0
    if not (token.isascii() and token.isdigit() and len(token) <= _SEQ_DIGITS_MAX):
        raise InvalidArgument("page_token", _NOT_A_TOKEN)
    return int(token)


def seq_token(seq: int) -> str:
    return str(seq)


def id_after(token: str) -> str:
    """The id a ListWorkers, ListQueues or ListRoutingPolicies token resumes after ("": from
    the start)."""
    if token:
        try:
            check_id("page_token", token)
        except InvalidArgument:
            raise InvalidArgument("page_token", _NOT_A_TOKEN) from None
    return token


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
    reply_bytes = _field_bytes(PAGE_TOKEN_CHARS_MAX)
    included = 0
    converted: list[_Message] = []
    slice_end_s = time.perf_counter() + CONVERT_SLICE_S
    for item in items:
        message = to_message(item)
        item_bytes = _field_bytes(message.ByteSize())
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
) -> str:
    """One page of a small id-keyed collection (queues, routing policies) in id order, by
    count and bytes (a full page by default: clients written before paging get everything that
    fits one reply); returns the next page token ("" on the last page). A bad size or token
    raises InvalidArgument before any work."""
    count_max = page_size(requested_size, default=PAGE_SIZE_MAX)
    after_id = id_after(page_token)
    page, more = page_after(items.keys(), after_id, count_max)
    included = await fill_page(into, [items[item_id] for item_id in page], to_message)
    return page[included - 1] if included < len(page) or more else ""


def _field_bytes(payload_bytes: int) -> int:
    """Bytes of one length-delimited field of a reply: its tag (one byte for the field numbers
    of List replies), the payload's length as a varint, and the payload."""
    return 1 + _varint_bytes(payload_bytes) + payload_bytes


def _varint_bytes(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)
