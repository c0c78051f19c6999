"""Exponential back-off with jitter, shared by the session's reconnects and the task client's
retries."""

from __future__ import annotations

import random
from collections.abc import Iterator

DEFAULT_BACKOFF_S: tuple[float, float] = (0.1, 5.0)
"""First delay and largest delay, in seconds."""


def backoff_delays(
    backoff_s: tuple[float, float] = DEFAULT_BACKOFF_S, rng: random.Random | None = None
) -> Iterator[float]:
    """Endless delays: the ceiling doubles from `backoff_s[0]` up to `backoff_s[1]`, and each
    delay is drawn between half the ceiling and the ceiling ("equal jitter"), so that many
    agents cut off at once by the same outage do not all come back in the same instant, while
    none retries sooner than half its ceiling."""
    check_backoff(backoff_s)
    return _delays(backoff_s, rng or random.Random())


def check_backoff(backoff_s: tuple[float, float]) -> None:
    """Raises ValueError unless `backoff_s` is (first, largest) with 0 < first <= largest."""
    first_s, largest_s = backoff_s
    if not 0 < first_s <= largest_s:
        raise ValueError(f"backoff_s must be (first, largest), 0 < first <= largest: {backoff_s}")


def _delays(backoff_s: tuple[float, float], rng: random.Random) -> Iterator[float]:
    first_s, largest_s = backoff_s
    ceiling_s = first_s
    while True:
        yield rng.uniform(ceiling_s / 2, ceiling_s)
        ceiling_s = min(largest_s, ceiling_s * 2)
