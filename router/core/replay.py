"""Applying journaled batches: the one loop that the writer, the standby and recovery share, so
that a command is applied the same way live and in every replay (DESIGN.md, rule 8).

Each command of a batch is applied in order with the batch's time. A command the core refuses
(`CoreError`) left the state unchanged, live as in replay, and is an outcome like any other. Any
other exception is a bug: it is an outcome too, for the caller to decide (the writer answers
INTERNAL and drops the batch; `replay` raises it). Pure: no I/O, no clock, no asyncio."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from router.core.codec import Batch
from router.core.engine import Engine
from router.core.errors import CoreError
from router.core.events import Event

__all__ = ["Outcome", "apply_batch", "apply_each", "replay"]

Outcome = object
"""A command's result, the CoreError it was refused with, or the exception of a bug."""


def apply_each(engine: Engine, batch: Batch) -> Iterator[Outcome]:
    """Applies the batch's commands one at a time, yielding each one's outcome as it is known
    (lazily: whoever iterates may time each command)."""
    for command in batch.commands:
        try:
            yield engine.apply(command, batch.now_ms)
        except CoreError as refused:
            yield refused
        except Exception as bug:  # a bug, not a refusal: the caller decides
            yield bug


def apply_batch(engine: Engine, batch: Batch) -> list[Outcome]:
    """Applies the batch; each command's outcome, in order."""
    return list(apply_each(engine, batch))


def replay(
    engine: Engine,
    batches: Iterable[Batch],
    *,
    on_events: Callable[[list[Event]], None] | None = None,
) -> int:
    """Applies journaled batches as the live writer applied them: a command refused live is
    refused again and ignored. The events of each batch go to `on_events` (or are dropped).
    Raises the first bug met. Returns how many batches were applied."""
    applied = 0
    for batch in batches:
        for outcome in apply_each(engine, batch):
            if isinstance(outcome, Exception) and not isinstance(outcome, CoreError):
                raise outcome
        events = engine.take_events()
        if on_events is not None:
            on_events(events)
        applied += 1
    return applied
