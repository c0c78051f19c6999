"""The keyring: the key-encryption keys (KEKs) that wrap customers' data keys, and the hash key
that customer ids are hashed with.

It lives outside Redis (a file, or an environment variable holding the same JSON), so that what
Redis holds (wrapped data keys, sealed text, hashes) is useless without it:

    {"version": 1, "active": "k2",
     "keks": {"k1": "<base64 of 32 bytes>", "k2": "<base64 of 32 bytes>"},
     "hash_key": "<base64 of 32 bytes>"}

New data keys are wrapped with the active KEK; a wrapped key names its KEK's id, so keys wrapped
before a rotation still open. The hash key never rotates: a customer's key (its hash) must stay
the same for routing to recognise a repeat contact."""

from __future__ import annotations

import base64
import binascii
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = [
    "KEK_BYTES", "KEYRING_ENV", "KEYRING_FILE_ENV", "KEYRING_FILE_NAME", "KEY_ID_CHARS_MAX",
    "Keyring", "KeyringError", "keyring_in_folder", "load_keyring",
]  # fmt: skip

KEK_BYTES: Final = 32
"""AES-256 keys: each KEK and the hash key are 32 random bytes."""
KEY_ID_CHARS_MAX: Final = 32
"""The longest KEK id (it is written into every wrapped data key)."""
KEYRING_ENV: Final = "SWITCHBOARD_KEYRING"
"""An environment variable holding the keyring's JSON itself (e.g. from a Kubernetes secret)."""
KEYRING_FILE_ENV: Final = "SWITCHBOARD_KEYRING_FILE"
"""An environment variable naming the keyring's file (as `--keyring` does)."""

KEYRING_FILE_NAME: Final = "keyring.json"
"""The keyring the router makes for its private Redis, in that Redis's data folder."""


class KeyringError(ValueError):
    """A keyring that cannot be used: the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class Keyring:
    keks: Mapping[str, bytes]
    """Key id -> 32-byte key-encryption key."""
    active: str
    """The KEK that wraps new data keys."""
    hash_key: bytes
    """Keys the HMAC that turns a customer id into its customer key."""

    def __post_init__(self) -> None:
        if not self.keks:
            raise KeyringError("keyring: no key-encryption keys (keks)")
        for key_id, kek in self.keks.items():
            if not key_id or len(key_id) > KEY_ID_CHARS_MAX or not key_id.isascii():
                raise KeyringError(
                    f"keyring: key id {key_id!r} must be 1 to {KEY_ID_CHARS_MAX} ASCII characters"
                )
            if len(kek) != KEK_BYTES:
                raise KeyringError(f"keyring: key {key_id!r} has {len(kek)} bytes, not {KEK_BYTES}")
        if self.active not in self.keks:
            raise KeyringError(f"keyring: the active key {self.active!r} is not among its keks")
        if len(self.hash_key) != KEK_BYTES:
            raise KeyringError(f"keyring: hash_key has {len(self.hash_key)} bytes, not {KEK_BYTES}")

    @classmethod
    def generate(cls) -> Keyring:
        """A new keyring: one KEK ("k1", active) and a hash key, from the OS's random source."""
        return cls({"k1": secrets.token_bytes(KEK_BYTES)}, "k1", secrets.token_bytes(KEK_BYTES))

    def rotated(self) -> Keyring:
        """This keyring with a new active KEK (the old ones stay, to open what they wrapped)."""
        number = len(self.keks) + 1
        while f"k{number}" in self.keks:
            number += 1
        key_id = f"k{number}"
        return Keyring({**self.keks, key_id: secrets.token_bytes(KEK_BYTES)}, key_id, self.hash_key)

    def to_json(self) -> str:
        def b64(key: bytes) -> str:
            return base64.b64encode(key).decode()

        return json.dumps(
            {
                "version": 1,
                "active": self.active,
                "keks": {key_id: b64(kek) for key_id, kek in self.keks.items()},
                "hash_key": b64(self.hash_key),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, *, origin: str = "keyring") -> Keyring:
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise KeyringError(f"{origin}: not JSON ({error})") from None
        if not isinstance(document, dict) or document.get("version") != 1:
            raise KeyringError(f'{origin}: expected a JSON object with "version": 1')
        keks = document.get("keks")
        if not isinstance(keks, dict):
            raise KeyringError(f'{origin}: "keks" must be an object of key id -> base64 key')
        return cls(
            {str(k): _b64(value, f"{origin}: keks.{k}") for k, value in keks.items()},
            str(document.get("active", "")),
            _b64(document.get("hash_key"), f"{origin}: hash_key"),
        )

    def create(self, path: Path) -> None:
        """Writes the keyring to a new file readable by its owner only (0600), synced to disk.
        FileExistsError when `path` exists: overwriting a keyring in use would make every
        customer's data unreadable."""
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(self.to_json() + "\n")
            file.flush()
            os.fsync(file.fileno())


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise KeyringError(f"{where}: expected a base64 string")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise KeyringError(f"{where}: not valid base64") from None


def load_keyring(path: Path | None, environ: Mapping[str, str] | None = None) -> Keyring | None:
    """The keyring from `path`, else from `SWITCHBOARD_KEYRING_FILE`, else from the JSON in
    `SWITCHBOARD_KEYRING`; None when none is given."""
    environ = os.environ if environ is None else environ
    if path is None and environ.get(KEYRING_FILE_ENV):
        path = Path(environ[KEYRING_FILE_ENV])
    if path is not None:
        try:
            text = path.read_text()
        except OSError as error:
            raise KeyringError(f"keyring {path}: {error.strerror}") from None
        return Keyring.from_json(text, origin=f"keyring {path}")
    if environ.get(KEYRING_ENV):
        return Keyring.from_json(environ[KEYRING_ENV], origin=KEYRING_ENV)
    return None


def keyring_in_folder(folder: Path) -> Keyring:
    """The keyring kept in `folder` (the private Redis's data folder), made on first use: the
    data and its keys then live and go together, as a single-machine install expects."""
    path = folder / KEYRING_FILE_NAME
    folder.mkdir(parents=True, exist_ok=True)
    keyring = Keyring.generate()
    try:
        keyring.create(path)
    except FileExistsError:
        kept = load_keyring(path)
        assert kept is not None
        return kept
    return keyring
