"""Envelope encryption, the pure part (no I/O): sealing personal data with a customer's data key
(AES-256-GCM), wrapping that data key with a key-encryption key of the keyring, and the keyed
hashes (HMAC-SHA256) that stand in for a customer id where routing needs only equality.

Formats (version byte first, so that they can change):

    sealed      = 0x01 | nonce (12) | AES-GCM(dek, nonce, plaintext, aad="data:" + customer key)
    wrapped dek = 0x01 | len(kek id) (1) | kek id | nonce (12) | AES-GCM(kek, nonce, dek,
                  aad="dek:" + customer key)

The customer key is associated data in both: a sealed value or a wrapped key copied to another
customer does not open. Nonces are random (96 bits): a data key seals at most a customer's
lifetime of values, far below the 2^32 that random nonces allow per key."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from router.core.customers import is_customer_key
from router.privacy.keyring import Keyring

__all__ = [
    "CUSTOMER_KEY_PREFIX", "DEK_BYTES", "SealedDataError", "customer_key", "is_customer_key",
    "new_dek", "open_sealed", "personal_mac", "seal", "unwrap_dek", "wrap_dek", "wrapped_kek_id",
]  # fmt: skip

DEK_BYTES: Final = 32
NONCE_BYTES: Final = 12
CUSTOMER_KEY_PREFIX: Final = "ck_"
"""What a customer key starts with; 32 hex digits (128 bits of HMAC-SHA256) follow."""
_CUSTOMER_KEY_HEX: Final = 32
_VERSION: Final = 1


class SealedDataError(ValueError):
    """Sealed data or a wrapped key that does not open: a wrong or destroyed key, another
    customer's data, or bytes that were changed."""


def customer_key(hash_key: bytes, workspace: str, customer_id: str) -> str:
    """The customer key of `customer_id` in `workspace`: equal ids give equal keys, and without
    the hash key nobody can tell which id a key stands for (not even by trying likely ids)."""
    digest = hmac.new(
        hash_key, workspace.encode() + b"\x00" + customer_id.encode(), hashlib.sha256
    ).hexdigest()
    return CUSTOMER_KEY_PREFIX + digest[:_CUSTOMER_KEY_HEX]




def personal_mac(hash_key: bytes, plaintext: bytes) -> str:
    """A deterministic tag of personal plaintext (32 hex digits): tells two payloads apart (a
    retried request from a changed one) without revealing either."""
    return hmac.new(hash_key, b"mac\x00" + plaintext, hashlib.sha256).hexdigest()[:32]


def new_dek() -> bytes:
    return secrets.token_bytes(DEK_BYTES)


def seal(dek: bytes, customer: str, plaintext: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = AESGCM(dek).encrypt(nonce, plaintext, b"data:" + customer.encode())
    return bytes([_VERSION]) + nonce + ciphertext


def open_sealed(dek: bytes, customer: str, sealed: bytes) -> bytes:
    if len(sealed) < 1 + NONCE_BYTES + 16 or sealed[0] != _VERSION:
        raise SealedDataError("not sealed data of a known version")
    nonce = sealed[1 : 1 + NONCE_BYTES]
    try:
        return AESGCM(dek).decrypt(nonce, sealed[1 + NONCE_BYTES :], b"data:" + customer.encode())
    except InvalidTag:
        raise SealedDataError("sealed data does not open with this customer's key") from None


def wrap_dek(keyring: Keyring, customer: str, dek: bytes) -> bytes:
    key_id = keyring.active.encode()
    nonce = secrets.token_bytes(NONCE_BYTES)
    ciphertext = AESGCM(keyring.keks[keyring.active]).encrypt(
        nonce, dek, b"dek:" + customer.encode()
    )
    return bytes([_VERSION, len(key_id)]) + key_id + nonce + ciphertext


def wrapped_kek_id(wrapped: bytes) -> str:
    """The id of the KEK that wrapped a data key."""
    if len(wrapped) < 2 or wrapped[0] != _VERSION:
        raise SealedDataError("not a wrapped data key of a known version")
    return wrapped[2 : 2 + wrapped[1]].decode("ascii", "replace")


def unwrap_dek(keyring: Keyring, customer: str, wrapped: bytes) -> bytes:
    key_id = wrapped_kek_id(wrapped)
    kek = keyring.keks.get(key_id)
    if kek is None:
        raise SealedDataError(f"the data key was wrapped by KEK {key_id!r}, not in the keyring")
    start = 2 + wrapped[1]
    nonce = wrapped[start : start + NONCE_BYTES]
    try:
        return AESGCM(kek).decrypt(
            nonce, wrapped[start + NONCE_BYTES :], b"dek:" + customer.encode()
        )
    except InvalidTag:
        raise SealedDataError(f"the data key does not unwrap with KEK {key_id!r}") from None
