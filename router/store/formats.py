"""The bytes the store keeps, and their format versions: a journal entry is one batch (its time
and its commands, each encoded once, when it was submitted), and a snapshot is the engine's
versioned document (`router.core.snapshot`).

A journal entry is a MessagePack map `{"now_ms": int, "commands": [[name, body], ...]}`, each
command as `router.core.codec.encode_command` encodes it, so that an entry is byte for byte what
`codec.encode_batch` makes of the same batch, and every journal written before stays readable.
Version 1 carries no version key; a later format adds `"v": n`, and a router that cannot read
`n` refuses the entry, naming the version, rather than replaying it wrong."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

from router.core import codec, snapshot
from router.store.errors import UnreadableFormat

__all__ = [
    "ENTRY_VERSION", "check_snapshot_version", "decode_entry", "encode_entry", "snapshot_version",
]  # fmt: skip

ENTRY_VERSION: Final = 1
"""The journal entry format this router writes and reads."""

_encoder = msgspec.msgpack.Encoder()


class _Entry(msgspec.Struct):
    now_ms: int | None = None
    commands: list[msgspec.Raw] | None = None
    v: int = 1


_entry_decoder = msgspec.msgpack.Decoder(_Entry)


def encode_entry(now_ms: int, commands: Sequence[bytes]) -> bytes:
    """The journal entry of a batch applied at `now_ms`, from its commands' encoded bytes
    (`codec.encode_command`), which are copied in as they are."""
    return _encoder.encode({"now_ms": now_ms, "commands": [msgspec.Raw(c) for c in commands]})


def decode_entry(data: bytes, entry_id: str = "") -> codec.Batch:
    """The batch a journal entry holds. Raises UnreadableFormat for an entry of a format
    version this router cannot read, `codec.CodecError` for bytes that are not an entry."""
    where = f" {entry_id}" if entry_id else ""
    try:
        entry = _entry_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise codec.CodecError(f"journal entry{where} is not a journaled batch: {error}") from None
    if entry.v != ENTRY_VERSION:
        raise UnreadableFormat(
            f"journal entry{where} is in format version {entry.v}; this router reads version "
            f"{ENTRY_VERSION} only (a newer router wrote it: upgrade this one)"
        )
    if entry.now_ms is None or entry.commands is None:
        raise codec.CodecError(f"journal entry{where} is not a journaled batch: a field is missing")
    return codec.Batch(entry.now_ms, tuple(codec.decode_command(bytes(c)) for c in entry.commands))


def snapshot_version(data: bytes) -> int | None:
    """The format version a snapshot declares, read from its first field without decoding the
    rest (snapshots run to hundreds of megabytes); None when it does not start with one."""
    header = data[:1]
    if not header:
        return None
    first = header[0]
    if 0x80 <= first <= 0x8F:  # fixmap
        at = 1
    elif first == 0xDE:  # map 16
        at = 3
    elif first == 0xDF:  # map 32
        at = 5
    else:
        return None
    key = b"\xa7version"
    if data[at : at + len(key)] != key:
        return None
    at += len(key)
    kind = data[at] if at < len(data) else -1
    if 0 <= kind <= 0x7F:  # positive fixint
        return kind
    widths = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
    width = widths.get(kind)
    if width is None or at + 1 + width > len(data):
        return None
    return int.from_bytes(data[at + 1 : at + 1 + width], "big")


def check_snapshot_version(data: bytes, through_id: str = "") -> None:
    """Raises UnreadableFormat for a snapshot of a later format version than this router
    restores (earlier ones are `snapshot.restore`'s to refuse or upgrade)."""
    version = snapshot_version(data)
    if version is not None and version > snapshot.SNAPSHOT_VERSION:
        where = f" through {through_id}" if through_id else ""
        raise UnreadableFormat(
            f"the snapshot{where} is in format version {version}; this router restores versions "
            f"up to {snapshot.SNAPSHOT_VERSION} (a newer router wrote it: upgrade this one)"
        )
