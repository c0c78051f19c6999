"""The store's errors, whatever the store: the Redis adapter maps its own into these (one place,
`router.store.journal._store_errors`), so that nothing above the store knows which one it is."""

from __future__ import annotations

__all__ = ["Fenced", "StoreError", "StoreUnavailable", "UnreadableFormat"]


class StoreError(Exception):
    """A write or read of the store that did not happen as asked."""


class StoreUnavailable(StoreError):
    """The store could not be reached, timed out, or failed the request. A write that raises
    this may or may not have landed: the caller treats it as not confirmed (and retries it
    with the same append id, which the journal keeps once)."""


class Fenced(StoreError):
    """A write refused because the token no longer holds the lease, or because the journal does
    not end where the writer left it (then the writer has also lost its lease). Nothing of the
    refused write was stored."""


class UnreadableFormat(ValueError):
    """A journal entry or snapshot written in a format version this router cannot read (a newer
    router wrote it): the message names the version found and those this router reads."""
