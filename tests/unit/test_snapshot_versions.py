"""Snapshots of a format version this router cannot read are refused by name, whatever their
layout, before anything of them is decoded."""

from __future__ import annotations

import msgspec
import pytest

from router.core import snapshot
from router.core.engine import Engine


def test_a_future_version_with_another_layout_is_refused_naming_its_version() -> None:
    """A later router may lay a snapshot out differently (fields renamed, retyped, gone):
    the refusal names the version, not the first field that fails to decode."""
    document = {"version": 4, "state": {"tasks": "elsewhere"}}
    with pytest.raises(snapshot.SnapshotError, match="snapshot version 4 cannot be restored") as e:
        snapshot.restore(msgspec.msgpack.encode(document))
    assert "2, 3" in str(e.value)  # and says which versions this router reads


def test_an_old_unknown_version_is_refused_naming_its_version() -> None:
    document = msgspec.msgpack.decode(snapshot.take(Engine()))
    document["version"] = 1
    with pytest.raises(snapshot.SnapshotError, match="snapshot version 1 "):
        snapshot.restore(msgspec.msgpack.encode(document))


def test_a_known_version_that_does_not_decode_is_refused_as_such() -> None:
    document = msgspec.msgpack.decode(snapshot.take(Engine()))
    document["timers"] = "not a list"
    with pytest.raises(snapshot.SnapshotError, match="not a version 3 snapshot"):
        snapshot.restore(msgspec.msgpack.encode(document))


def test_bytes_without_a_version_are_not_a_snapshot() -> None:
    with pytest.raises(snapshot.SnapshotError, match="not a snapshot"):
        snapshot.restore(msgspec.msgpack.encode({"now_ms": 5}))
