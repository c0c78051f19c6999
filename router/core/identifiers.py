"""The ids the core gives out (tasks, reservations): unguessable, and the same on every replay.

An id is a keyed hash of a sequence number: `task-` followed by 16 base-32 characters (80 bits)
of BLAKE2b(seq, key). The key is state: a random 32 bytes that the writer draws once per
workspace (`SeedIds`, the first command it journals) and that snapshots keep, so that a replay,
a standby and a recovered leader all give the same ids while a caller who has seen `task-…` ids
cannot derive the next one. Before the key is set (an engine driven directly by tests and
simulations, or a journal written before ids were keyed) ids are the sequence number itself,
`task-42`, which is also how older journals replay to the ids they gave out."""

from __future__ import annotations

import base64
import hashlib
import hmac

from router.core import commands as cmd
from router.core.errors import FailedPrecondition, InvalidArgument

ID_KEY_BYTES = 32
"""Length of the key ids are derived with (and of every key derived from it)."""

_TOKEN_BYTES = 10
"""80 bits: guessing one of 3 million live ids takes about 4e17 tries."""


class Identifiers:
    """Makes task and reservation ids from their sequence numbers."""

    def __init__(self) -> None:
        self.key = b""
        """Empty until seeded: ids are then sequential."""

    @property
    def seeded(self) -> bool:
        return bool(self.key)

    def seed(self, command: cmd.SeedIds) -> None:
        """Sets the workspace's key, once."""
        if len(command.key) != ID_KEY_BYTES:
            raise InvalidArgument("key", f"must be {ID_KEY_BYTES} bytes, got {len(command.key)}")
        if self.key:
            raise FailedPrecondition("ids are already seeded for this workspace")
        self.key = command.key

    def task_id(self, seq: int) -> str:
        return f"task-{self._token(b't', seq)}"

    def reservation_id(self, seq: int) -> str:
        return f"res-{self._token(b'r', seq)}"

    def transfer_id(self, seq: int) -> str:
        return f"xfer-{self._token(b'x', seq)}"

    def consult_id(self, seq: int) -> str:
        """A consult offer's id: answered like a reservation's (`AcceptOffer`, `RejectOffer`)."""
        return f"res-c{self._token(b'c', seq)}"

    def entry_id(self, seq: int) -> str:
        """A timeline entry's id (an outcome, an agent action, an appended entry)."""
        return f"tle-{self._token(b'e', seq)}"

    def derived_key(self, purpose: str) -> bytes:
        """A key for `purpose` (page tokens, say) that every router of the workspace shares and
        that no caller can compute."""
        return hmac.digest(self.key, purpose.encode(), "sha256")

    def _token(self, kind: bytes, seq: int) -> str:
        if not self.key:
            return str(seq)
        digest = hashlib.blake2b(
            kind + seq.to_bytes(8, "big"), key=self.key, digest_size=_TOKEN_BYTES
        ).digest()
        return base64.b32encode(digest).decode().lower()
