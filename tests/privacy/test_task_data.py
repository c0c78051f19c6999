"""A task's personal data sealed before its command and revealed after a read (TaskData), and
the payload fingerprint of sealed tasks (idempotent retries)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Collection
from pathlib import Path
from typing import Any

import pytest

from router._proto.switchboard.v1 import resources_pb2 as pb
from router.api.convert import task_to_pb
from router.core.codec import normalize
from router.core.commands import CreateTask
from router.core.errors import FailedPrecondition, InvalidArgument
from router.core.histories import CANONICAL, payload_fingerprint
from router.core.model import TaskRecord, TaskSpec
from router.privacy.customer_keys import DEK_CACHE_MAX, CustomerKeys, MemoryWrappedKeys
from router.privacy.keyring import KEY_ID_CHARS_MAX, Keyring
from router.privacy.sealing import is_customer_key
from router.privacy.task_data import (
    ANONYMOUS_CUSTOMER,
    SEALED_KEY,
    TaskData,
    personal_attribute_keys,
)

PERSONAL = ("name", "email", "phone")
SPEC = TaskSpec(
    channel="voice",
    queue_id="support",
    customer_id="cust-42",
    attributes={"name": "Ada Lovelace", "email": "ada@example.com", "phone": "+44 20 7946 0000",
                "topic": "billing", "vip": True},
)  # fmt: skip


def make_data(personal: Collection[str] = PERSONAL) -> tuple[TaskData, CustomerKeys]:
    keys = CustomerKeys(MemoryWrappedKeys(), "acme", Keyring.generate())
    return TaskData(keys, lambda: personal), keys


def record(spec: TaskSpec, task_id: str = "t1") -> TaskRecord:
    return TaskRecord(
        task_id=task_id, seq=1, spec=spec, client_request_id="", created_ms=0, updated_ms=0
    )


def flat(spec: TaskSpec) -> str:
    return json.dumps(spec.attributes) + spec.customer_id


def revealed(data: TaskData, spec: TaskSpec) -> pb.Task:
    message = task_to_pb(record(spec))
    asyncio.run(data.reveal((message,)))
    return message


def test_a_new_task_keeps_its_customer_as_a_key_and_its_personal_data_sealed() -> None:
    data, keys = make_data()
    sealed = asyncio.run(data.seal_new(SPEC))
    spec = sealed.spec
    assert sealed.customer_keyed and spec.customer_id == keys.key_of("cust-42")
    assert is_customer_key(spec.customer_id)
    assert set(spec.attributes) == {"topic", "vip", SEALED_KEY}  # routing still reads these
    # (Values with characters base64 has not: a sealed blob cannot contain them by chance.)
    for plaintext in ("cust-42", "Ada Lovelace", "ada@example.com", "+44 20 7946 0000"):
        assert plaintext not in flat(spec)
    message = revealed(data, spec)
    assert message.customer_id == "cust-42" and message.customer_key == spec.customer_id
    assert dict(message.attributes) == {**SPEC.attributes}
    assert not message.customer_erased


def test_nothing_changes_without_a_customer_or_personal_data() -> None:
    data, _ = make_data()
    spec = TaskSpec(channel="chat", queue_id="q", attributes={"topic": "x"})
    sealed = asyncio.run(data.seal_new(spec))
    assert sealed.spec is spec and not sealed.customer_keyed
    message = revealed(data, spec)
    assert message.customer_key == "" and dict(message.attributes) == {"topic": "x"}


def test_personal_attributes_without_a_customer_are_sealed_under_the_anonymous_key() -> None:
    data, keys = make_data()
    spec = TaskSpec(channel="chat", queue_id="q", attributes={"name": "Ada L.", "topic": "x"})
    sealed = asyncio.run(data.seal_new(spec))
    assert not sealed.customer_keyed and sealed.spec.customer_id == ""
    assert "Ada L." not in flat(sealed.spec)
    assert sealed.spec.attributes[SEALED_KEY]["ck"] == keys.key_of(ANONYMOUS_CUSTOMER)
    message = revealed(data, sealed.spec)
    assert message.customer_id == "" and message.customer_key == ""
    assert dict(message.attributes) == {"name": "Ada L.", "topic": "x"}


def test_a_retry_seals_anew_with_the_same_fingerprint_and_a_change_does_not() -> None:
    data, _ = make_data()
    first = normalize(CreateTask(asyncio.run(data.seal_new(SPEC)).spec, "r1", True))
    retry = normalize(CreateTask(asyncio.run(data.seal_new(SPEC)).spec, "r1", True))
    assert first != retry  # a new nonce each time
    assert payload_fingerprint(first.spec) == payload_fingerprint(retry.spec)
    changed = TaskSpec(**{**_fields(SPEC), "attributes": {**SPEC.attributes, "email": "x@y.z"}})
    other = normalize(CreateTask(asyncio.run(data.seal_new(changed)).spec, "r1", True))
    assert payload_fingerprint(other.spec) != payload_fingerprint(first.spec)


def test_fingerprints_of_tasks_without_sealed_data_are_unchanged() -> None:
    # As before sealing existed: older journals' fingerprints still compare equal.
    spec = TaskSpec(channel="voice", queue_id="q", customer_id="c1", attributes={"a": 1})
    before = hashlib.blake2b(CANONICAL.encode(spec), digest_size=16).digest()
    assert payload_fingerprint(spec) == before


def test_an_update_keeps_the_sealed_customer_id_and_seals_new_personal_attributes() -> None:
    data, _ = make_data()
    created = asyncio.run(data.seal_new(SPEC)).spec
    attributes = asyncio.run(
        data.seal_update(record(created), {"phone": "+1 555 0100", "topic": "tech"})
    )
    assert "+1 555 0100" not in json.dumps(attributes) and attributes["topic"] == "tech"
    updated = TaskSpec(**{**_fields(created), "attributes": attributes})
    message = revealed(data, updated)
    assert message.customer_id == "cust-42"
    assert dict(message.attributes) == {"phone": "+1 555 0100", "topic": "tech"}
    # The same personal data again: the sealed value is kept as it is.
    again = asyncio.run(data.seal_update(record(updated), {"phone": "+1 555 0100", "x": 1}))
    assert again[SEALED_KEY] == attributes[SEALED_KEY]
    # No personal attribute left: the id is still sealed and revealed.
    bare = asyncio.run(data.seal_update(record(updated), {"topic": "y"}))
    message = revealed(data, TaskSpec(**{**_fields(created), "attributes": bare}))
    assert message.customer_id == "cust-42" and dict(message.attributes) == {"topic": "y"}


def test_the_reserved_attribute_is_refused_on_input() -> None:
    data, _ = make_data()
    spec = TaskSpec(channel="chat", queue_id="q", attributes={SEALED_KEY: "x"})
    with pytest.raises(InvalidArgument, match=r"task\.attributes\.\$sealed"):
        asyncio.run(data.seal_new(spec))
    with pytest.raises(InvalidArgument, match=r"^attributes\.\$sealed"):
        asyncio.run(data.seal_update(record(spec), {SEALED_KEY: {"blob": ""}}))
    with pytest.raises(InvalidArgument, match=r"task\.customer_id"):
        asyncio.run(data.seal_new(TaskSpec(channel="chat", queue_id="q", customer_id="x" * 129)))


def test_an_erased_customer_shows_no_id_and_no_personal_data() -> None:
    data, keys = make_data()
    spec = asyncio.run(data.seal_new(SPEC)).spec
    assert asyncio.run(keys.erase(spec.customer_id))
    message = revealed(data, spec)
    assert message.customer_erased and message.customer_id == ""
    assert message.customer_key == spec.customer_id
    assert dict(message.attributes) == {"topic": "billing", "vip": True}
    with pytest.raises(FailedPrecondition, match="erased"):
        asyncio.run(data.seal_update(record(spec), {"name": "Ada"}))


def test_many_tasks_open_in_one_pass_and_legacy_tasks_are_shown_as_they_are() -> None:
    data, keys = make_data()
    specs = [
        asyncio.run(data.seal_new(TaskSpec(**{**_fields(SPEC), "customer_id": f"c{i}"})))
        for i in range(50)
    ]
    legacy = TaskSpec(channel="chat", queue_id="q", customer_id="old-1",
                      attributes={SEALED_KEY: "someone's own attribute"})  # fmt: skip
    messages = [task_to_pb(record(s.spec, f"t{i}")) for i, s in enumerate(specs)]
    messages.append(task_to_pb(record(legacy, "t-old")))
    keys.forget_all()  # from the store, in one read
    asyncio.run(data.reveal(messages))
    assert [m.customer_id for m in messages[:-1]] == [f"c{i}" for i in range(50)]
    assert messages[-1].customer_id == "old-1" and messages[-1].customer_key == ""
    assert messages[-1].attributes[SEALED_KEY] == "someone's own attribute"


def test_personal_keys_come_from_the_engines_timeline_settings_when_it_has_them() -> None:
    class Settings:
        personal_attribute_keys = ("email", "name")

    class Customers:
        settings = Settings()

    class Engine:
        customers = Customers()

    assert personal_attribute_keys(Engine()) == ("email", "name")
    assert personal_attribute_keys(object()) == ()


def _fields(spec: TaskSpec) -> dict[str, Any]:
    return {name: getattr(spec, name) for name in TaskSpec.__slots__}  # type: ignore[attr-defined]


def test_the_readme_states_the_privacy_limits() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    limits = readme[readme.index("## Limits\n") :]
    assert f"(`DEK_CACHE_MAX`) | {DEK_CACHE_MAX:,} (" in limits
    assert f"(`KEY_ID_CHARS_MAX`) | {KEY_ID_CHARS_MAX} characters |" in limits
    sealed_row = "(`$sealed`: its customer id and personal attributes) | within the attributes'"
    assert sealed_row in limits


def test_personal_attributes_are_checked_before_they_are_sealed() -> None:
    data, _ = make_data()
    spec = TaskSpec(channel="chat", queue_id="q", attributes={"name": {"first": math.nan}})
    with pytest.raises(InvalidArgument, match=r"task\.attributes\.name\.first: must be a finite"):
        asyncio.run(data.seal_new(spec))
    created = asyncio.run(data.seal_new(SPEC)).spec
    with pytest.raises(InvalidArgument, match=r"^attributes\.phone"):
        asyncio.run(data.seal_update(record(created), {"phone": math.inf}))


def test_updates_of_tasks_without_a_keyed_customer() -> None:
    data, keys = make_data()
    # Personal data only, under the anonymous key: dropped with the last personal key.
    anonymous = asyncio.run(
        data.seal_new(TaskSpec(channel="chat", queue_id="q", attributes={"name": "Ada"}))
    ).spec
    cleared = asyncio.run(data.seal_update(record(anonymous), {"topic": "x"}))
    assert cleared == {"topic": "x"}
    # A task from before sealing: its plaintext id stays, new personal data is sealed under its
    # key, and an attribute it had named `$sealed` is replaced like any other.
    legacy = TaskSpec(channel="chat", queue_id="q", customer_id="old-1",
                      attributes={SEALED_KEY: "its own"})  # fmt: skip
    attributes = asyncio.run(data.seal_update(record(legacy), {"email": "a@b.c"}))
    assert "a@b.c" not in json.dumps(attributes)
    assert attributes[SEALED_KEY]["ck"] == keys.key_of("old-1")
    message = revealed(data, TaskSpec(**{**_fields(legacy), "attributes": attributes}))
    assert message.customer_id == "old-1" and message.attributes["email"] == "a@b.c"
    assert message.customer_key == ""
