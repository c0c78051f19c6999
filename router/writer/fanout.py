"""Fan-out: each batch's events to the agent streams they concern (offers, assignments, presence
changes), and to the event metrics, once the batch is durable.

One live stream per worker: a newer hello takes the worker over (`claim`) and the older stream
is ended, so that a worker's offers never reach two desktops. Removing a worker ends its
stream. A stream silent for the workspace's `presence_timeout_s` of the router's clock is ended
by `watch` (called after every batch and idle wake of the writer, so that it follows a test
clock too): the servicer then reports the lost presence."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

from router.core.events import (
    Event,
    ParticipantChanged,
    TaskPaused,
    TaskResumed,
    TransferChanged,
    WorkerActivityChanged,
    WorkerPresenceChanged,
    WorkerRemoved,
)
from router.obs.metrics import RouterMetrics

__all__ = ["EndKind", "Fanout", "StreamEnd", "WorkerStream"]


class EndKind(Enum):
    """Why the router ends an agent's stream (the servicer maps each to a status code)."""

    NOT_LEADING = "not_leading"
    """This router stopped leading: UNAVAILABLE, naming the leader."""
    REPLACED = "replaced"
    """A newer hello for the same worker took over: ABORTED."""
    REMOVED = "removed"
    """The worker was removed: NOT_FOUND."""
    SILENT = "silent"
    """Nothing arrived for `presence_timeout_s`: DEADLINE_EXCEEDED (and the presence is lost)."""


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Put on an agent's stream to end it, with the message the agent is given."""

    message: str
    leader_address: str = ""
    kind: EndKind = EndKind.NOT_LEADING


@dataclass(eq=False, slots=True)
class WorkerStream:
    """One agent's Connect stream as the router sees it: the events for it, once subscribed."""

    worker_id: str
    last_seen_ms: int
    """When a message last arrived on it (the router's clock)."""
    queue: asyncio.Queue[Event | StreamEnd | object] = field(default_factory=asyncio.Queue)
    """Its events and its end, and whatever its servicer interleaves with them in the order it
    sends them (its answers to the agent: `put`): one queue, so that the servicer waits on one
    queue, with no task of its own forwarding the events."""
    subscribed: bool = False
    """Events reach it only from `subscribe` on (its pending offers are read then)."""
    ended: bool = False

    async def get(self) -> Event | StreamEnd | object:
        return await self.queue.get()

    def put(self, item: object) -> None:
        """Queues a servicer's own item among the stream's events (e.g. an answer)."""
        self.queue.put_nowait(item)

    def end(self, end: StreamEnd) -> None:
        if not self.ended:
            self.ended = True
            self.queue.put_nowait(end)


class Fanout:
    """The agent streams open on this router, and where a batch's events go."""

    def __init__(self, metrics: RouterMetrics, *, after_publish: Callable[[], None]) -> None:
        """`after_publish` runs after every publication (the state metrics, when due)."""
        self._metrics = metrics
        self._after_publish = after_publish
        self._streams: dict[str, WorkerStream] = {}
        self._deadlines: list[tuple[int, int, WorkerStream]] = []
        """(when to look again, seq, stream): the watchdog's heap, lazily refreshed."""
        self._seq = itertools.count()

    def claim(self, worker_id: str, now_ms: int) -> WorkerStream:
        """A new stream for the worker, its only live one from now on: an older stream is
        ended (replaced). Events reach it once `subscribe`d."""
        older = self._streams.get(worker_id)
        if older is not None:
            older.end(
                StreamEnd(
                    f"worker {worker_id!r} connected again on another stream: this one was "
                    "replaced by the newer connection",
                    kind=EndKind.REPLACED,
                )
            )
        stream = self._streams[worker_id] = WorkerStream(worker_id, now_ms)
        return stream

    def subscribe(self, stream: WorkerStream, timeout_ms: int) -> None:
        """From now on the stream receives its worker's events and is watched for silence."""
        stream.subscribed = True
        heapq.heappush(self._deadlines, (stream.last_seen_ms + timeout_ms, next(self._seq), stream))

    def is_current(self, stream: WorkerStream) -> bool:
        return self._streams.get(stream.worker_id) is stream

    def release(self, stream: WorkerStream) -> bool:
        """Forgets a stream that ended; True when it was still its worker's live one."""
        stream.ended = True
        if self._streams.get(stream.worker_id) is stream:
            del self._streams[stream.worker_id]
            return True
        return False

    def watch(self, now_ms: int, timeout_ms: int) -> None:
        """Ends every live stream on which nothing arrived for more than `timeout_ms`."""
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] < now_ms:
            _, _, stream = heapq.heappop(deadlines)
            if stream.ended or not self.is_current(stream):
                continue
            due_ms = stream.last_seen_ms + timeout_ms
            if due_ms < now_ms:
                stream.end(
                    StreamEnd(
                        f"nothing arrived on this stream for more than {timeout_ms / 1000:g} s "
                        "(presence_timeout_s): send heartbeats more often than that",
                        kind=EndKind.SILENT,
                    )
                )
            else:
                heapq.heappush(deadlines, (due_ms, next(self._seq), stream))

    def end_all(self, leader_address: str) -> None:
        """Ends every agent stream UNAVAILABLE, naming the leader when known, so that agents
        reconnect to it: a router that stepped down receives no events to forward."""
        to_leader = f" to the leader at {leader_address}" if leader_address else " to the leader"
        end = StreamEnd(f"this router stopped leading; reconnect{to_leader}", leader_address)
        for stream in self._streams.values():
            stream.end(end)
        self._streams.clear()
        self._deadlines.clear()

    def publish(self, events: list[Event], *, to_streams: bool = True) -> None:
        """Counts the events and puts each on the stream of the worker it concerns (a standby
        applying the journal counts them only: it has no agents)."""
        if events:
            self._metrics.observe_events(events)
            streams = self._streams
            for event in events if to_streams and streams else ():
                for worker_id in _workers_of(event):
                    stream = streams.get(worker_id)
                    if stream is None:
                        continue
                    if isinstance(event, WorkerRemoved):
                        del streams[worker_id]
                        stream.end(
                            StreamEnd(f"worker {worker_id!r} was removed", kind=EndKind.REMOVED)
                        )
                    elif stream.subscribed:
                        stream.queue.put_nowait(event)
        self._after_publish()


def _workers_of(event: Event) -> tuple[str, ...]:
    """The agents an event concerns: an offer's (or consult offer's) worker; every agent a
    transfer or a change of participants concerns; the agent a pause or resume, a change of
    activity or presence, or a removal is about."""
    if isinstance(event, TransferChanged | ParticipantChanged):
        return event.workers
    if isinstance(event, TaskPaused | TaskResumed):
        return (event.worker_id,) if event.worker_id else ()
    if isinstance(event, WorkerActivityChanged | WorkerPresenceChanged | WorkerRemoved):
        return (event.worker_id,)
    reservation = getattr(event, "reservation", None)
    return (reservation.worker_id,) if reservation is not None else ()
