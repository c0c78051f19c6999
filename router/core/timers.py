"""The engine's clock and its timers: offer expiry, wrap-up end, time-to-live, step timeouts,
exception wait times, assignment rounds and presence (grace, re-queue after a disconnect), in
one heap ordered by due time then creation.

Timers are never removed when what they watch ends (an offer answered, a task closed): they are
skipped when they fall due, and swept once most of the heap is such (a day's time-to-live timers
would otherwise pile up). Each kind is handled by the part that set it: `handle` registers the
check of whether a timer still has something to do and the action when it falls due."""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

_STALE_TIMERS_SWEPT_MIN = 1024


class Clock:
    """The time of the command being applied (or of the timer firing), shared by the parts."""

    __slots__ = ("now_ms",)

    def __init__(self) -> None:
        self.now_ms = 0


class TimerKind(Enum):
    """What a timer does when it falls due. The values are the snapshot's and the digest's."""

    OFFER = "offer"
    """The offer (ref: reservation id) times out."""
    WRAPUP = "wrapup"
    """The task's (ref) wrap-up ends: it completes."""
    TTL = "ttl"
    """The task's time-to-live runs out: it is canceled."""
    STEP = "step"
    """The task's current routing step times out."""
    WAIT = "wait"
    """The task's next wait-time exception rule falls due."""
    ROUND = "round"
    """The queue's (ref) next assignment round runs."""
    CONSULT = "consult"
    """A consult offer (ref: its id) times out."""
    PAUSE = "pause"
    """A paused task's (ref) pause runs out."""
    HANDOFF_WRAPUP = "handoff_wrapup"
    """The wrap-up of an agent who transferred a task (ref) away ends."""
    PRESENCE_GRACE = "presence_grace"
    """The worker's (ref) grace after losing its stream runs out (`presence.py`)."""
    REQUEUE = "requeue"
    """A lost worker's (ref: "worker_id/channel") tasks of a channel go back to routing."""


Timer = tuple[int, int, str, str]
"""(due_ms, seq, kind, ref) as the heap keeps it: seq orders timers due at the same time by
creation, kind is a TimerKind's value, ref the reservation, task or queue id the timer is
about. A tuple of str and int, not of the enum: the garbage collector stops tracking it (a
million open tasks keep a million timers, which every full collection would otherwise walk)."""
_KIND_VALUES = frozenset(kind.value for kind in TimerKind)


@dataclass(frozen=True, slots=True)
class TimerShare:
    """The timers' share of a snapshot."""

    timer_seq: int
    timers_stale: int
    timers: list[Timer]


class TimerQueue:
    """The timers of one engine, with a handler per kind."""

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._seq = 0
        self._stale = 0
        """Timers in the heap that will do nothing when they fall due."""
        self._live: dict[str, Callable[[int, str], bool]] = {}
        self._fire: dict[str, Callable[[str], None]] = {}
        """Per kind (its value), the handlers `handle` registered."""

    def handle(
        self, kind: TimerKind, *, live: Callable[[int, str], bool], fire: Callable[[str], None]
    ) -> None:
        """Registers, for one kind, whether a timer (due_ms, ref) still has something to do and
        what it does when it falls due."""
        self._live[kind.value] = live
        self._fire[kind.value] = fire

    def __len__(self) -> int:
        return len(self._heap)

    @property
    def seq(self) -> int:
        return self._seq

    def next_due_ms(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    def add(self, due_ms: int, kind: TimerKind, ref: str) -> None:
        # `_value_`, the member's attribute: `.value` is a property and a dict keyed by the
        # enum hashes it in Python (Enum.__hash__), a call each on every decision's timers.
        self._seq += 1
        heapq.heappush(self._heap, (due_ms, self._seq, kind._value_, ref))

    def fire_due(self, now_ms: int, clock: Clock) -> None:
        """Fires the live timers due by `now_ms` in order, the clock at each one's due time."""
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            due_ms, _, kind, ref = heapq.heappop(heap)
            if not self._live[kind](due_ms, ref):
                # Not every dead timer is counted when it dies (a step timer of a task served
                # early, say); the count only paces the sweep, so it is clamped, not exact.
                self._stale = max(0, self._stale - 1)
                continue
            clock.now_ms = max(clock.now_ms, due_ms)
            self._fire[kind](ref)

    def ended(self) -> None:
        """Counts a timer made pointless (its offer answered, its task closed) and rebuilds the
        heap when most entries are such."""
        self._stale += 1
        if self._stale > _STALE_TIMERS_SWEPT_MIN and 2 * self._stale > len(self._heap):
            self._heap = [t for t in self._heap if self._is_live(t)]
            heapq.heapify(self._heap)
            self._stale = 0

    def _is_live(self, timer: Timer) -> bool:
        return self._live[timer[2]](timer[0], timer[3])

    # -- snapshot and digest ----------------------------------------------------------------

    def save(self) -> TimerShare:
        return TimerShare(self._seq, self._stale, list(self._heap))

    def restore(self, share: TimerShare) -> None:
        unknown = {kind for _, _, kind, _ in share.timers} - _KIND_VALUES
        if unknown:
            raise ValueError(f"unknown timer kinds {sorted(unknown)}")
        self._seq = share.timer_seq
        self._stale = share.timers_stale
        self._heap = list(share.timers)
        heapq.heapify(self._heap)

    def digest_state(self) -> list[Timer]:
        """The timers that still have something to do, in order."""
        return sorted(t for t in self._heap if self._is_live(t))
