"""The lease keeper's loop, shared by every store: renew a held lease every third of its TTL from
a thread of its own, not from the writer's event loop.

A loop that is merely busy keeps its lease; the keeper stops, and calls `on_lost(reason)` from its
thread, when the lease was taken or expired, when the store stayed unreachable until the lease
ran out, or when `writer_alive()` says the writer is stuck (the lease is then left to expire, and
the fencing token keeps the writer from ever writing again). A store supplies `_renew_once`
and `_close`."""

from __future__ import annotations

import logging
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from router.store.errors import StoreUnavailable
from router.store.protocols import WRITER_STUCK_AFTER_S

__all__ = ["ThreadKeeper"]

log = logging.getLogger(__name__)


class ThreadKeeper(ABC):
    """Renews one held lease (one token) until stopped or lost."""

    def __init__(
        self,
        ttl_ms: int,
        *,
        acquired_at_s: float,
        writer_alive: Callable[[], bool],
        on_lost: Callable[[str], None],
        thread_name: str,
    ) -> None:
        self._ttl_s = ttl_ms / 1000
        self._writer_alive = writer_alive
        self._on_lost = on_lost
        self.held_until_s = acquired_at_s + self._ttl_s
        """Monotonic time until which the lease is surely held (from the latest renewal sent)."""
        self.renewals = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)

    @abstractmethod
    def _renew_once(self) -> bool:
        """Renews the lease for another TTL: False when it is no longer this token's; raises
        StoreUnavailable when the store did not answer."""

    @abstractmethod
    def _close(self) -> None:
        """Releases what the keeper's thread used (its connection), when the thread ends."""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stops renewing, without waiting for the thread (the lease then expires unless
        released; a renewal in flight that lands after a release finds nothing to renew)."""
        self._stop.set()

    def _run(self) -> None:
        try:
            self._renew_until_lost()
        finally:
            self._close()

    def _renew_until_lost(self) -> None:
        interval_s = self._ttl_s / 3
        while not self._stop.wait(interval_s):
            if not self._writer_alive():
                self._lost(f"the writer made no progress for {WRITER_STUCK_AFTER_S:g} s")
                return
            sent_s = time.monotonic()
            try:
                renewed = self._renew_once()
            except StoreUnavailable as error:
                if time.monotonic() >= self.held_until_s:
                    self._lost(f"the store did not answer until the lease expired ({error})")
                    return
                log.warning("the lease could not be renewed (%s); retrying", error)
                continue
            if not renewed:
                self._lost("the lease expired or another router took it")
                return
            self.held_until_s = sent_s + self._ttl_s
            self.renewals += 1

    def _lost(self, reason: str) -> None:
        if not self._stop.is_set():
            self._on_lost(reason)
