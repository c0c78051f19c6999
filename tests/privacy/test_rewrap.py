"""Rewrapping data keys after a rotation (CustomerKeys.rewrap): counts per key id, keys whose KEK
left the keyring left as they are, and an erasure meanwhile winning."""

from __future__ import annotations

import asyncio

from router.privacy.customer_keys import CustomerKeys, MemoryWrappedKeys, Rewrapped
from router.privacy.keyring import Keyring


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
