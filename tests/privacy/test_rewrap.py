"""Rewrapping data keys after a rotation (CustomerKeys.rewrap): counts per key id, and keys whose
KEK left the keyring left as they are, read as erased, and refused for new sealing."""

from __future__ import annotations

import asyncio
import base64

import pytest

from router.core.errors import FailedPrecondition
from router.core.model import TaskSpec
from router.privacy.customer_keys import CustomerKeys, MemoryWrappedKeys, Rewrapped
from router.privacy.keyring import Keyring
from router.privacy.task_data import TaskData


def test_rewrap_reports_keys_per_kek_and_leaves_unreadable_ones() -> None:
    async def scenario() -> tuple[Rewrapped, Rewrapped, Rewrapped, bytes | None]:
        store = MemoryWrappedKeys()
        first = Keyring.generate()
        old = CustomerKeys(store, "acme", first)
        sealed = {ck: await old.seal(ck, b"secret " + ck.encode()) for ck in ("ck_a", "ck_b")}
        second = first.rotated()
        new = CustomerKeys(store, "acme", second)
        await new.seal("ck_c", b"new")  # wrapped by k2 already
        done = await new.rewrap()
        again = await new.rewrap()
        # A keyring that lost every KEK but a third one cannot unwrap k2's keys: reported.
        third = second.rotated()
        only_third = Keyring({"k3": third.keks["k3"]}, "k3", third.hash_key)
        stranded = await CustomerKeys(store, "acme", only_third).rewrap()
        return done, again, stranded, await new.open("ck_a", sealed["ck_a"])

    done, again, stranded, opened = asyncio.run(scenario())
    assert (done.rewrapped, done.by_kek, done.unreadable) == (2, {"k2": 3}, 0)
    assert (again.rewrapped, again.by_kek) == (0, {"k2": 3})
    assert (stranded.rewrapped, stranded.by_kek, stranded.unreadable) == (0, {"k2": 3}, 3)
    assert opened == b"secret ck_a"


def test_a_data_key_whose_kek_left_the_keyring_reads_as_erased_and_seals_nothing() -> None:
    async def scenario() -> None:
        store = MemoryWrappedKeys()
        first = Keyring.generate()
        old = CustomerKeys(store, "acme", first)
        spec = (await TaskData(old).seal_new(TaskSpec("voice", "q", customer_id="c1"))).spec
        rotated = first.rotated()
        without_k1 = Keyring({"k2": rotated.keks["k2"]}, "k2", rotated.hash_key)
        keys = CustomerKeys(store, "acme", without_k1)
        sealed = spec.attributes["$sealed"]
        assert await keys.open_many([(spec.customer_id, base64.b64decode(sealed["blob"]))]) == [
            None
        ]
        with pytest.raises(FailedPrecondition, match="k1"):
            await TaskData(keys).seal_new(TaskSpec("voice", "q", customer_id="c1"))

    asyncio.run(scenario())
