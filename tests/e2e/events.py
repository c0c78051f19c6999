"""An event feed subscriber driven from a test thread: the stream is read by a thread of its own,
so that tests wait with timeouts and can stall it on purpose."""

from __future__ import annotations

import queue
import threading
from typing import Any, TypeAlias

import grpc

from router._proto.switchboard.v1 import event_service_pb2 as epb
from router._proto.switchboard.v1 import event_service_pb2_grpc as egrpc

End: TypeAlias = grpc.RpcError | None
"""How a stream ended: its error, or None for a clean end."""


class Subscriber:
    """One `EventService.Subscribe` call; `events()` reads what it received so far."""

    def __init__(self, channel: grpc.Channel, *, read: bool = True, **request: Any) -> None:
        stub = egrpc.EventServiceStub(channel)
        self.call = stub.Subscribe(epb.SubscribeRequest(**request))
        self.received: queue.Queue[epb.SubscribeResponse | End] = queue.Queue()
        self.error: grpc.RpcError | None = None
        self._pending: list[epb.Event] = []
        """Events of a batch received beyond what `events` was asked for."""
        if read:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for response in self.call:
                self.received.put(response)
        except grpc.RpcError as error:
            self.received.put(error)
            return
        self.received.put(None)

    def next(self, timeout_s: float = 5) -> epb.SubscribeResponse:
        """The next response; raises the stream's error, or EOFError when it ended."""
        item = self.received.get(timeout=timeout_s)
        if isinstance(item, grpc.RpcError):
            self.error = item
            raise item
        if item is None:
            raise EOFError("the stream ended")
        return item

    def events(self, count: int, timeout_s: float = 5) -> list[epb.Event]:
        """The next `count` events (a response holds a batch; checkpoints skipped)."""
        while len(self._pending) < count:
            self._pending.extend(self.next(timeout_s).events)
        found, self._pending = self._pending[:count], self._pending[count:]
        return found

    def drain(self, quiet_s: float = 0.5) -> list[epb.Event]:
        """Every event received until none came for `quiet_s`."""
        found, self._pending = self._pending, []
        while True:
            try:
                response = self.next(quiet_s)
            except queue.Empty:
                return found
            found.extend(response.events)

    def close(self) -> None:
        self.call.cancel()


def type_names(events: list[epb.Event]) -> list[str]:
    return [epb.EventType.Name(e.type).removeprefix("EVENT_TYPE_") for e in events]


def cursor_key(cursor: str) -> tuple[int, int, int]:
    entry, _, index = cursor.partition("/")
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq), int(index)
