"""Fan-out: each batch's events to the agent streams they concern (offers, assignments), and to
the event metrics, once the batch is durable."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from router.core.events import (
    Event,
    ParticipantChanged,
    TaskPaused,
    TaskResumed,
    TransferChanged,
)
from router.obs.metrics import RouterMetrics

__all__ = ["Fanout", "StreamEnd", "WorkerStream"]


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Put on an agent's stream when the router stops leading: the stream ends UNAVAILABLE,
    naming the leader when it is known, so that the desktop reconnects there."""

    message: str
    leader_address: str


WorkerStream = asyncio.Queue[Event | StreamEnd]
"""The events of one agent's Connect stream, ended by a StreamEnd."""


class Fanout:
    """The agent streams open on this router, and where a batch's events go."""

    def __init__(self, metrics: RouterMetrics, *, after_publish: Callable[[], None]) -> None:
        """`after_publish` runs after every publication (the state metrics, when due)."""
        self._metrics = metrics
        self._after_publish = after_publish
        self._streams: dict[str, set[WorkerStream]] = defaultdict(set)

    def attach(self, worker_id: str) -> WorkerStream:
        """A queue that receives every event about this worker's offers and assignments."""
        stream: WorkerStream = asyncio.Queue()
        self._streams[worker_id].add(stream)
        return stream

    def detach(self, worker_id: str, stream: WorkerStream) -> None:
        streams = self._streams.get(worker_id)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._streams[worker_id]

    def end_all(self, leader_address: str) -> None:
        """Ends every agent stream UNAVAILABLE, naming the leader when known, so that agents
        reconnect to it: a router that stepped down receives no events to forward."""
        to_leader = f" to the leader at {leader_address}" if leader_address else " to the leader"
        end = StreamEnd(f"this router stopped leading; reconnect{to_leader}", leader_address)
        for streams in self._streams.values():
            for stream in streams:
                stream.put_nowait(end)
        self._streams.clear()

    def publish(self, events: list[Event], *, to_streams: bool = True) -> None:
        """Counts the events and puts each on the streams of the worker it concerns (a standby
        applying the journal counts them only: it has no agents)."""
        if events:
            self._metrics.observe_events(events)
            for event in events if to_streams else ():
                for worker_id in _workers_of(event):
                    for stream in self._streams.get(worker_id, ()):
                        stream.put_nowait(event)
        self._after_publish()


def _workers_of(event: Event) -> tuple[str, ...]:
    """The agents an event concerns: an offer's (or consult offer's) worker; every agent a
    transfer or a change of participants concerns; the agent a pause or resume is about."""
    if isinstance(event, TransferChanged | ParticipantChanged):
        return event.workers
    if isinstance(event, TaskPaused | TaskResumed):
        return (event.worker_id,) if event.worker_id else ()
    reservation = getattr(event, "reservation", None)
    return (reservation.worker_id,) if reservation is not None else ()
