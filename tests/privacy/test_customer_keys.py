"""The privacy primitives against a real Redis: keyring, sealing, data keys, erasure, rotation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from router.privacy.customer_keys import CustomerKeys, MemoryWrappedKeys, RedisWrappedKeys
from router.privacy.keyring import Keyring, KeyringError, load_keyring
from router.privacy.sealing import (
    SealedDataError,
    customer_key,
    is_customer_key,
    open_sealed,
    personal_mac,
    seal,
)
from router.store.embedded import EmbeddedRedis


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    yield server.url
    server.stop()


def test_customer_keys_are_stable_per_workspace_and_reveal_nothing() -> None:
    hash_key = b"h" * 32
    key = customer_key(hash_key, "acme", "+14155550100")
    assert key == customer_key(hash_key, "acme", "+14155550100")
    assert key != customer_key(hash_key, "other", "+14155550100")
    assert key != customer_key(b"x" * 32, "acme", "+14155550100")
    assert is_customer_key(key) and "4155550100" not in key
    assert not is_customer_key("ck_" + "z" * 32)
    assert (
        personal_mac(hash_key, b"a") == personal_mac(hash_key, b"a") != personal_mac(hash_key, b"b")
    )


def test_sealed_data_opens_only_for_its_customer_and_untouched() -> None:
    dek = b"d" * 32
    sealed = seal(dek, "ck_a", b"jane@example.com")
    assert b"jane" not in sealed
    assert open_sealed(dek, "ck_a", sealed) == b"jane@example.com"
    with pytest.raises(SealedDataError):
        open_sealed(dek, "ck_b", sealed)
    with pytest.raises(SealedDataError):
        open_sealed(dek, "ck_a", sealed[:-1] + bytes([sealed[-1] ^ 1]))
    assert seal(dek, "ck_a", b"x") != seal(dek, "ck_a", b"x")  # random nonces


def test_keyring_round_trips_rotates_and_names_what_is_wrong(tmp_path: Path) -> None:
    keyring = Keyring.generate()
    path = tmp_path / "keyring.json"
    keyring.create(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_keyring(path) == keyring
    assert load_keyring(None, {"SWITCHBOARD_KEYRING": keyring.to_json()}) == keyring
    assert load_keyring(None, {"SWITCHBOARD_KEYRING_FILE": str(path)}) == keyring
    assert load_keyring(None, {}) is None
    rotated = keyring.rotated()
    assert rotated.active == "k2" and set(rotated.keks) == {"k1", "k2"}
    assert rotated.hash_key == keyring.hash_key
    document = json.loads(keyring.to_json())
    document["active"] = "k9"
    with pytest.raises(KeyringError, match="active key 'k9'"):
        Keyring.from_json(json.dumps(document))
    document["active"] = "k1"
    document["keks"]["k1"] = "c2hvcnQ="
    with pytest.raises(KeyringError, match="'k1' has 5 bytes"):
        Keyring.from_json(json.dumps(document))
    with pytest.raises(KeyringError, match="No such file"):
        load_keyring(tmp_path / "missing.json")


def test_data_keys_live_wrapped_in_redis_and_erasure_destroys_them(redis_url: str) -> None:
    async def scenario() -> None:
        client = aioredis.from_url(redis_url)
        keyring = Keyring.generate()
        store = RedisWrappedKeys(client, "acme")
        keys = CustomerKeys(store, "acme", keyring)
        customer = keys.key_of("cust-42")
        # Concurrent first seals of a new customer share one data key.
        sealed = await asyncio.gather(*(keys.seal(customer, b"note %d" % i) for i in range(5)))
        assert await client.hlen(store.redis_key) == 1
        stored = await client.hget(store.redis_key, customer)
        assert stored is not None and len(stored) < 100
        # Another router with the same keyring opens it; one without it cannot.
        other = CustomerKeys(RedisWrappedKeys(client, "acme"), "acme", keyring)
        assert await other.open(customer, sealed[3]) == b"note 3"
        assert await other.open_many([(customer, sealed[0]), ("ck_none", sealed[0])]) == [
            b"note 0",
            None,
        ]
        stranger = CustomerKeys(RedisWrappedKeys(client, "acme"), "acme", Keyring.generate())
        with pytest.raises(SealedDataError):
            await stranger.open(customer, sealed[0])
        # Rotation: new keys wrap with k2, old ones still open, rewrap moves them to k2.
        rotated_ring = keyring.rotated()
        rotated = CustomerKeys(RedisWrappedKeys(client, "acme"), "acme", rotated_ring)
        assert await rotated.open(customer, sealed[1]) == b"note 1"
        assert await rotated.rewrap_all() == 1
        assert await rotated.rewrap_all() == 0
        assert await CustomerKeys(RedisWrappedKeys(client, "acme"), "acme", rotated_ring).open(
            customer, sealed[2]
        )
        with pytest.raises(SealedDataError, match="KEK 'k2', not in the keyring"):
            await CustomerKeys(RedisWrappedKeys(client, "acme"), "acme", keyring).open(
                customer, sealed[2]
            )
        # Erasure: gone for every router, whatever it cached before.
        assert await keys.erase(customer) is True
        assert await keys.erase(customer) is False
        other.forget_all()
        assert await other.open(customer, sealed[0]) is None
        assert await keys.open(customer, sealed[0]) is None
        await client.aclose()

    asyncio.run(scenario())


def test_the_in_memory_router_keeps_its_keys_in_memory() -> None:
    async def scenario() -> None:
        keys = CustomerKeys(MemoryWrappedKeys(), "acme", Keyring.generate())
        customer = keys.key_of("c")
        sealed = await keys.seal(customer, b"x")
        keys.forget_all()
        assert await keys.open(customer, sealed) == b"x"
        assert await keys.erase(customer)
        assert await keys.open(customer, sealed) is None

    asyncio.run(scenario())
