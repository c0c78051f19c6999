"""A router's Prometheus metrics, read over HTTP on 127.0.0.1, and what the benchmarks compare
between two readings: the snapshots taken in between (how many, the writer's pause and the
background encode-and-save of each on average, the size of the latest), the longest stall of
the event loop, and the leaderships lost."""

from __future__ import annotations

import math
import time
import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

SCRAPE_TIMEOUT_S = 5.0
SNAPSHOT_SECONDS = "switchboard_snapshot_seconds"
SNAPSHOT_BYTES = "switchboard_snapshot_bytes"
LOOP_STALL_SECONDS = "switchboard_loop_stall_seconds"
LEASE_LOSSES = "switchboard_lease_losses_total"

_Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, slots=True)
class Scrape:
    """Every sample of one reading of `/metrics`, and when it was read (perf_counter)."""

    samples: dict[_Key, float]
    at_s: float

    def value(self, name: str, **labels: str) -> float:
        """A sample's value (0 when the router has not reported it yet)."""
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def buckets(self, histogram: str) -> list[tuple[float, float]]:
        """A histogram's (upper bound, cumulative count) pairs, in order of the bound."""
        found = [
            (float(dict(labels)["le"]), value)
            for (name, labels), value in self.samples.items()
            if name == f"{histogram}_bucket"
        ]
        return sorted(found)

    def snapshots_done(self) -> int:
        """Snapshots saved so far (the background phase ended)."""
        return int(self.value(f"{SNAPSHOT_SECONDS}_count", phase="background"))


def scrape(port: int) -> Scrape:
    """Reads the metrics of the router whose metrics endpoint is 127.0.0.1:`port`."""
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=SCRAPE_TIMEOUT_S) as reply:
        text = reply.read().decode()
    samples: dict[_Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return Scrape(samples, time.perf_counter())


@dataclass(frozen=True, slots=True)
class Snapshots:
    """The snapshots saved between two readings."""

    count: int
    writer_pause_ms: float | None
    """The writer's pause (the fork) per snapshot, on average; exact for one snapshot."""
    background_s: float | None
    """From the request to the snapshot saved (encode and save), per snapshot, on average."""
    snapshot_bytes: int | None
    """The size of the latest one."""


def snapshots_between(before: Scrape, after: Scrape) -> Snapshots:
    saved = after.snapshots_done() - before.snapshots_done()
    if saved <= 0:
        return Snapshots(0, None, None, None)
    pauses = _delta(before, after, f"{SNAPSHOT_SECONDS}_count", phase="writer")
    pause_s = _delta(before, after, f"{SNAPSHOT_SECONDS}_sum", phase="writer")
    background_s = _delta(before, after, f"{SNAPSHOT_SECONDS}_sum", phase="background")
    return Snapshots(
        count=saved,
        writer_pause_ms=1000 * pause_s / pauses if pauses > 0 else None,
        background_s=background_s / saved,
        snapshot_bytes=int(after.value(SNAPSHOT_BYTES)),
    )


def longest_stall_bound_s(before: Scrape, after: Scrape) -> float | None:
    """The upper bound of the highest loop-stall bucket that counted a stall between the two
    readings: the longest stall was at most this long (inf: above the highest bound). None when
    no stall was measured."""
    earlier = dict(before.buckets(LOOP_STALL_SECONDS))
    previous_count = 0.0
    highest = None
    for bound, count in after.buckets(LOOP_STALL_SECONDS):
        in_bucket = (count - earlier.get(bound, 0.0)) - previous_count
        previous_count = count - earlier.get(bound, 0.0)
        if in_bucket > 0:
            highest = bound
    return highest


def lease_losses(scrape: Scrape) -> int:
    return int(scrape.value(LEASE_LOSSES))


def _delta(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    value = after.value(name, **labels) - before.value(name, **labels)
    return value if math.isfinite(value) else 0.0
