"""The router's clocks: the wall clock in production, a clock that only tests move."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int: ...


class SystemClock:
    """Unix time in milliseconds. The service never lets engine time go backwards, so a wall
    clock step back only pauses the router's time until the wall clock catches up."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class TestClock:
    """A clock that stands still until `advance` moves it (enabled with `serve --test-clock`)."""

    __test__ = False  # not a pytest test class

    def __init__(self, start_ms: int | None = None) -> None:
        self._now_ms = SystemClock().now_ms() if start_ms is None else start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, duration_ms: int) -> int:
        if duration_ms <= 0:
            raise ValueError(f"duration_ms must be above 0, got {duration_ms}")
        self._now_ms += duration_ms
        return self._now_ms
