"""What the Connect stream tells an agent besides its offers: changes to the tasks it is on
(`TaskNotice`), and the inbox that keeps them (and presence changes) for the desktop to read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb

T = TypeVar("T")

NOTICES_MAX = 1_000
"""Notices of one kind kept for a desktop that does not read them: beyond, the oldest is
dropped, so that a session nobody reads the notices of does not grow without bound."""

TaskNoticeKind = Literal["transfer", "participant", "paused", "resumed"]


@dataclass(frozen=True, slots=True)
class TaskNotice:
    """A change to a task this agent is on, as its Connect stream told it.

    - `transfer`: a transfer of a task the agent holds or is offered, from it or to it, began
      or ended (`transfer.status`, `transfer.outcome` say how); `task` is the task after it.
    - `participant`: someone joined (`added`) or left a task the agent is on (`participant`:
      its worker and role; the primary who handed the task over leaves as `PRIMARY`).
    - `paused`: a task the agent held was paused (its capacity is free again); `task` as paused.
    - `resumed`: a task the agent paused was resumed and waits for it first (an offer follows).
    """

    kind: TaskNoticeKind
    task_id: str
    task: pb.Task | None = None
    """The task as it is now: with `transfer`, `paused` and `resumed`; None with `participant`."""
    transfer: pb.Transfer | None = None
    """With `transfer`: the transfer, with its status and outcome."""
    participant: pb.Participant | None = None
    """With `participant`: who joined or left, and in which role."""
    added: bool = False
    """With `participant`: True when it joined, False when it left."""


def task_notice(message: wpb.ConnectResponse) -> TaskNotice | None:
    """The notice a stream message carries, or None when it carries none."""
    kind = message.WhichOneof("kind")
    if kind == "transfer":
        notice = message.transfer
        return TaskNotice(
            "transfer", notice.task.task_id, task=notice.task, transfer=notice.transfer
        )
    if kind == "participant":
        change = message.participant
        return TaskNotice(
            "participant", change.task_id, participant=change.participant, added=change.added
        )
    if kind == "paused":
        return TaskNotice("paused", message.paused.task_id, task=message.paused)
    if kind == "resumed":
        return TaskNotice("resumed", message.resumed.task_id, task=message.resumed)
    return None


class Inbox(Generic[T]):
    """Items for a desktop to read in order, at most `NOTICES_MAX` kept; closing it ends every
    reader's iteration."""

    def __init__(self) -> None:
        self._items: asyncio.Queue[T | None] = asyncio.Queue()
        self._closed = False

    def put(self, item: T) -> None:
        if self._closed:
            return
        if self._items.qsize() >= NOTICES_MAX:
            self._items.get_nowait()
        self._items.put_nowait(item)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._items.put_nowait(None)

    async def items(self) -> AsyncIterator[T]:
        while True:
            item = await self._items.get()
            if item is None:
                self._items.put_nowait(None)  # so that every other reader ends as well
                return
            yield item
