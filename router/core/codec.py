"""The journal's encoding of commands: MessagePack, one document per batch (compact, fast, and
unlike JSON it keeps NaN and infinities, which validation must see to refuse).

A command is applied in the form it is journaled in (`normalize`), so that replaying the journal
sees exactly the values the live engine saw (an int given for a float field comes back a
float)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

import msgspec

from router.core import commands as cmd

COMMAND_TYPES: Final[dict[str, type[cmd.AnyCommand]]] = {
    command_type.__name__: command_type
    for command_type in (
        cmd.UpsertChannel, cmd.UpsertActivity, cmd.UpsertQueue, cmd.DeleteQueue,
        cmd.UpsertRoutingPolicy, cmd.DeleteRoutingPolicy,
        cmd.UpsertWorker, cmd.RemoveWorker, cmd.SetActivity, cmd.CreateTask, cmd.UpdateTask,
        cmd.CancelTask, cmd.AcceptOffer, cmd.RejectOffer, cmd.CompleteTask, cmd.WrapUpTask,
        cmd.SeedIds, cmd.Tick, cmd.TransferTask, cmd.CancelTransfer, cmd.PauseTask,
        cmd.ResumeTask, cmd.AddParticipant, cmd.RemoveParticipant, cmd.HandOverTask,
        cmd.WorkerAttached, cmd.PresenceLost, cmd.AllPresenceLost, cmd.WorkerDetached,
        cmd.SetDraining, cmd.UpsertPresenceSettings, cmd.RecordOutcome, cmd.RecordAgentAction,
        cmd.AppendTimelineEntry, cmd.UpsertCustomerProfile, cmd.EraseCustomer,
        cmd.UpsertTimelineSettings,
    )
}  # fmt: skip
"""Every command type by its journal name (the class name: renaming a command breaks old
journals, so a rename must keep an alias here)."""

R = TypeVar("R")

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


@dataclass(frozen=True, slots=True)
class Batch:
    """Commands applied together at one time."""

    now_ms: int
    commands: tuple[cmd.Command[Any], ...]


class CodecError(ValueError):
    """Bytes that are not a journaled batch or command of this version."""


def encode_command(command: cmd.Command[Any]) -> bytes:
    return _encoder.encode([type(command).__name__, command])


def decode_command(data: bytes) -> cmd.AnyCommand:
    try:
        name, body = _decoder.decode(data)
    except (msgspec.DecodeError, ValueError, TypeError) as error:
        raise CodecError(f"not a journaled command: {error}") from None
    return _convert(name, body)


def encode_batch(batch: Batch) -> bytes:
    return _encoder.encode(
        {"now_ms": batch.now_ms, "commands": [[type(c).__name__, c] for c in batch.commands]}
    )


def decode_batch(data: bytes) -> Batch:
    try:
        document = _decoder.decode(data)
        now_ms = document["now_ms"]
        entries = document["commands"]
    except (msgspec.DecodeError, KeyError, TypeError) as error:
        raise CodecError(f"not a journaled batch: {error}") from None
    if type(now_ms) is not int:
        raise CodecError(f"now_ms must be an integer, got {now_ms!r}")
    return Batch(now_ms, tuple(_convert(name, body) for name, body in entries))


def normalize(command: cmd.Command[R]) -> cmd.Command[R]:
    """The command as the journal will give it back (of the same type)."""
    return cast("cmd.Command[R]", decode_command(encode_command(command)))


def _convert(name: Any, body: Any) -> cmd.AnyCommand:
    command_type = COMMAND_TYPES.get(name) if isinstance(name, str) else None
    if command_type is None:
        raise CodecError(f"unknown command type {name!r}")
    try:
        command: cmd.AnyCommand = msgspec.convert(body, command_type)
    except msgspec.ValidationError as error:
        raise CodecError(f"{name}: {error}") from None
    return command
