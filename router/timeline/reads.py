"""The timeline's reads for the TimelineService: a customer's entries as the caller's view shows
them (filtered, searched, a page at a time), its profile, and the erasure of its Redis data.

A page walks the customer's order (at most `entries_per_customer_max` ids, one ZRANGE) from
the page token's position, reading the entries a slice at a time (one HMGET each), opening and
filtering them off the writer's loop when the slice is large, until the page holds `page_size`
entries or would pass `PAGE_BYTES_MAX`. Tokens are signed (`router.api.paging.PageTokens`) and
bound to the filters and the view."""

from __future__ import annotations

import asyncio
import math
from typing import Final

from router._proto.switchboard.v1 import timeline_service_pb2 as tlpb
from router.api.paging import PAGE_BYTES_MAX, PAGE_TOKEN_CHARS_MAX, PageTokens, field_bytes
from router.core.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from router.core.limits import (
    TIMELINE_PAGE_SIZE_DEFAULT,
    TIMELINE_PAGE_SIZE_MAX,
    TIMELINE_SEARCH_CHARS_MAX,
)
from router.privacy.sealing import SealedDataError, open_sealed
from router.service import RouterService
from router.timeline.entries import Entry, open_entries
from router.timeline.store import TimelineStore
from router.timeline.views import TimelineQuery, render

__all__ = ["OPEN_INLINE_MAX", "PAGE_TOKEN_PURPOSE", "READ_SLICE_ENTRIES", "TimelineReads"]

PAGE_TOKEN_PURPOSE: Final = "timeline-page-token"
READ_SLICE_ENTRIES: Final = 200
"""Entries read from Redis at a time while filling a page."""
OPEN_INLINE_MAX: Final = 16
"""Entries opened on the loop; a larger slice is opened and filtered in a thread."""
_KINDS: Final = frozenset(tlpb.TimelineEntryKind.values()) - {0}
_VIEWS: Final = frozenset(tlpb.TimelineView.values()) - {0}


class TimelineReads:
    """GetTimeline, GetCustomerProfile and EraseCustomer's Redis part, for one router."""

    def __init__(self, service: RouterService, store: TimelineStore | None = None) -> None:
        self._service = service
        self._store = store if store is not None else service.timeline_store

    def _the_store(self) -> TimelineStore:
        if self._store is None:
            raise FailedPrecondition(
                "this router keeps no timeline: it runs in memory only (start it with a store)"
            )
        return self._store

    async def get_timeline(
        self,
        request: tlpb.GetTimelineRequest,
        *,
        customer_key: str,
        view: tlpb.TimelineView.ValueType,
        viewer_worker_id: str,
    ) -> tlpb.GetTimelineResponse:
        query = _query(request, view, viewer_worker_id)
        size = _page_size(request.page_size)
        tokens = PageTokens(
            self._service.derived_key(PAGE_TOKEN_PURPOSE), "GetTimeline",
            (customer_key, sorted(query.kinds), sorted(query.channels), sorted(query.tags),
             request.from_ms, request.to_ms, query.text, query.worker_id, request.newest_first,
             int(view), viewer_worker_id),
        )  # fmt: skip
        after = _position(tokens.position(request.page_token))
        store = self._the_store()
        order = await store.order(customer_key)
        reply = tlpb.GetTimelineResponse(view=view, total_entries=len(order))
        candidates = _candidates(order, request, after)
        if not candidates:
            return reply
        dek = await self._service.customer_keys.data_key(customer_key)
        if dek is None:  # erased, or never had a key: nothing readable
            return tlpb.GetTimelineResponse(view=view)
        reply_bytes = field_bytes(PAGE_TOKEN_CHARS_MAX) + 16
        last: tuple[float, str] | None = None
        for start in range(0, len(candidates), READ_SLICE_ENTRIES):
            chunk = candidates[start : start + READ_SLICE_ENTRIES]
            blobs = await store.entries(customer_key, [entry_id for _, entry_id in chunk])

            def open_and_render(
                blobs: list[bytes | None] = blobs,
            ) -> list[tlpb.TimelineEntry | None]:
                entries: list[Entry | None] = open_entries(dek, customer_key, blobs)
                return render(entries, dek, query)

            rendered = (
                open_and_render() if len(chunk) <= OPEN_INLINE_MAX
                else await asyncio.to_thread(open_and_render)
            )  # fmt: skip
            for position, message in zip(chunk, rendered, strict=True):
                if message is not None:
                    item_bytes = field_bytes(message.ByteSize())
                    if reply_bytes + item_bytes > PAGE_BYTES_MAX and reply.entries:
                        reply.next_page_token = _token(tokens, last)
                        return reply
                    reply_bytes += item_bytes
                    reply.entries.append(message)
                last = position
                if len(reply.entries) == size:
                    if position != candidates[-1]:
                        reply.next_page_token = _token(tokens, position)
                    return reply
        return reply

    async def get_profile(self, customer_key: str) -> tlpb.CustomerProfile | None:
        """The customer's profile as its last upsert left it (None: none, or erased)."""
        stored = await self._the_store().profile(customer_key)
        if stored is None:
            return None
        updated_at_ms, sealed = stored
        dek = await self._service.customer_keys.data_key(customer_key)
        if dek is None:
            return None
        try:
            profile = tlpb.CustomerProfile.FromString(open_sealed(dek, customer_key, sealed))
        except SealedDataError:
            return None
        profile.updated_at_ms = updated_at_ms
        return profile

    async def erase(self, customer_key: str) -> tuple[int, bool]:
        """Deletes the customer's timeline entries, order, index and profile in one MULTI;
        returns (timeline entries erased, profile erased). Redis data only: the data key is
        the caller's to destroy."""
        erased = await self._the_store().erase(customer_key)
        self._service.metrics.timeline_erasures.inc()
        return erased


def _query(
    request: tlpb.GetTimelineRequest, view: tlpb.TimelineView.ValueType, viewer_worker_id: str
) -> TimelineQuery:
    if view not in _VIEWS:
        raise InvalidArgument("view", f"unknown timeline view {int(view)}")
    for index, kind in enumerate(request.kinds):
        if kind not in _KINDS:
            raise InvalidArgument(f"kinds[{index}]", f"unknown value {int(kind)}")
    if len(request.text) > TIMELINE_SEARCH_CHARS_MAX:
        raise InvalidArgument(
            "text", f"is {len(request.text)} characters long, the limit is "
            f"{TIMELINE_SEARCH_CHARS_MAX}",
        )  # fmt: skip
    if request.from_ms < 0 or request.to_ms < 0:
        raise InvalidArgument("from_ms" if request.from_ms < 0 else "to_ms", "must not be negative")
    if (
        view == tlpb.TIMELINE_VIEW_AGENT
        and request.worker_id
        and request.worker_id != viewer_worker_id
    ):
        raise PermissionDenied("worker_id: an agent may filter only by its own id")
    return TimelineQuery(
        view=int(view), viewer_worker_id=viewer_worker_id,
        kinds=frozenset(int(k) for k in request.kinds), channels=frozenset(request.channels),
        tags=frozenset(request.tags), worker_id=request.worker_id, text=request.text.lower(),
    )  # fmt: skip


def _page_size(requested: int) -> int:
    if not 0 <= requested <= TIMELINE_PAGE_SIZE_MAX:
        raise InvalidArgument(
            "page_size",
            f"must be between 0 and {TIMELINE_PAGE_SIZE_MAX} (0: {TIMELINE_PAGE_SIZE_DEFAULT}), "
            f"got {requested}",
        )
    return requested or TIMELINE_PAGE_SIZE_DEFAULT


def _candidates(
    order: list[tuple[float, str]],
    request: tlpb.GetTimelineRequest,
    after: tuple[float, str] | None,
) -> list[tuple[float, str]]:
    """The (order score, entry id) of the entries in the time range past the token's position,
    in the page's direction. The score is at_ms plus a fraction below 1 (`TimelineStore.order`),
    so an entry is in [from_ms, to_ms) exactly when its score is."""
    from_ms, to_ms = request.from_ms, request.to_ms
    kept = [p for p in order if p[0] >= from_ms and (not to_ms or p[0] < to_ms)]
    if request.newest_first:
        kept.reverse()
        return kept if after is None else [p for p in kept if p < after]
    return kept if after is None else [p for p in kept if p > after]


def _position(text: str) -> tuple[float, str] | None:
    """The (order score, entry id) a page token resumes after (None: from the start)."""
    if not text:
        return None
    score, _, entry_id = text.partition(":")
    try:
        value = float(score)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not entry_id:
        raise InvalidArgument("page_token", "is not a next_page_token returned by this call")
    return value, entry_id


def _token(tokens: PageTokens, position: tuple[float, str] | None) -> str:
    assert position is not None
    return tokens.token(f"{position[0]!r}:{position[1]}")  # repr: the float, exactly
