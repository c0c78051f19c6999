"""The memory of a router process and of its children, sampled from /proc by a thread: the
router's resident set, each forked child's own pages (a snapshot's child copies the pages it
touches as it encodes), the embedded Redis's resident set, and the machine's available memory,
with the peak (or the floor) of each."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from benchmarks.servers import available_kib, children, memory_kib, private_kib

SAMPLE_INTERVAL_S = 0.25
LOW_MEMORY_KIB = 2 * 1024 * 1024
"""Available memory below this is low: a benchmark asks for no more snapshots (each may need
as much again as the router's heap)."""


@dataclass(slots=True)
class MemoryPeaks:
    """The peaks seen while watching, in MiB (0 when nothing was seen)."""

    router_rss_mb: float = 0.0
    child_private_mb: float = 0.0
    """The most memory one forked child of the router held alone (a snapshot's copy)."""
    child_rss_mb: float = 0.0
    redis_rss_mb: float = 0.0
    """The router's embedded Redis, when the router started it (an adopted one is no child)."""
    available_min_mb: float = 0.0
    """The machine's available memory at its lowest."""


class MemoryWatch:
    """Samples a router's memory every SAMPLE_INTERVAL_S until closed.

    ::

        with MemoryWatch(pid) as watch:
            ...
        watch.peaks.router_rss_mb
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peaks = MemoryPeaks(available_min_mb=available_kib() / 1024)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-watch", daemon=True)

    @property
    def memory_is_low(self) -> bool:
        return self.peaks.available_min_mb * 1024 < LOW_MEMORY_KIB

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            self.sample()

    def sample(self) -> None:
        peaks = self.peaks
        rss = memory_kib(self.pid).get("VmRSS", 0) / 1024
        peaks.router_rss_mb = max(peaks.router_rss_mb, rss)
        for child in children(self.pid):
            child_rss = memory_kib(child).get("VmRSS", 0) / 1024
            if _command(child) == "redis-server":
                peaks.redis_rss_mb = max(peaks.redis_rss_mb, child_rss)
                continue
            peaks.child_rss_mb = max(peaks.child_rss_mb, child_rss)
            private = private_kib(child)
            if private is not None:
                peaks.child_private_mb = max(peaks.child_private_mb, private / 1024)
        peaks.available_min_mb = min(peaks.available_min_mb, available_kib() / 1024)


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""
