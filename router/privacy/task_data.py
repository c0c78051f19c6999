"""A task's personal data, kept sealed: what the TaskService does before a task's command and
after a task is read.

Before the command (`seal_new`, `seal_update`): the customer id is replaced by its customer key
(the keyed hash routing knows the customer by), and the plaintext id with the task's personal
attributes (the top-level keys the timeline settings list) is sealed with the customer's data
key into one reserved attribute:

    "$sealed": {"mac": personal_mac(plaintext), "blob": base64(seal(dek, ck, plaintext))}
    plaintext = canonical JSON of {"customer_id": "...", "attributes": {personal key: value}}

`mac` is deterministic, so that a retried CreateTask (sealed again, with a new nonce) has the
same payload fingerprint (`histories.payload_fingerprint` reads it in place of the value). A
task with personal attributes and no customer id is sealed under the workspace's anonymous key
(named in `"ck"`): nothing personal stays in plaintext, and one data key serves every such task
(a key per task would grow the keys' hash by one per task, for ever).
Expressions cannot name `$sealed` (a key starts with a letter or `_`), so routing never sees it.

After a read (`reveal`): `$sealed` is stripped and opened (one AES-GCM open with a cached data
key, the keys missing from the cache read in one round trip), the id and the attributes merged
back, `customer_key` set; a task whose customer was erased shows an empty `customer_id`, no
personal attributes and `customer_erased`. Reads come only to callers the access table lets read
the task, so every read task is revealed."""

from __future__ import annotations

import asyncio
import base64
import binascii
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import msgspec

from router._proto.switchboard.v1 import resources_pb2 as pb
from router.core.errors import FailedPrecondition, InvalidArgument
from router.core.histories import SEALED_ATTRIBUTE
from router.core.model import TaskRecord, TaskSpec
from router.core.validation import check_attributes, check_id
from router.privacy.customer_keys import CustomerKeys
from router.privacy.sealing import SealedDataError, personal_mac

__all__ = [
    "ANONYMOUS_CUSTOMER", "REVEAL_SLICE_S", "SEALED_KEY", "SealedTask", "TaskData",
    "personal_attribute_keys", "sealed_parts",
]  # fmt: skip

SEALED_KEY: Final = SEALED_ATTRIBUTE
"""The reserved attribute holding a task's sealed personal data."""
REVEAL_SLICE_S: Final = 0.001
"""Opening sealed tasks between two turns of the loop (a ListTasks page of 1,000 tasks)."""
_ENCODER: Final = msgspec.json.Encoder(order="sorted")
ANONYMOUS_CUSTOMER: Final = "$anonymous"
"""The customer the personal data of tasks without a customer id is sealed for (not a valid id,
so that no real customer shares its key)."""


@dataclass(frozen=True, slots=True)
class SealedTask:
    """A spec ready for CreateTask, and what to show its creator (who gave the plaintext)."""

    spec: TaskSpec
    customer_keyed: bool
    """spec.customer_id is a customer key (CreateTask.customer_keyed)."""
    customer_id: str
    """The plaintext id ("" when none was given)."""
    personal: Mapping[str, Any]
    """The personal attributes sealed away."""


class TaskData:
    """Seals and reveals tasks' personal data with `keys`; `personal_keys` gives the top-level
    attribute keys that are personal now (the timeline settings)."""

    def __init__(
        self, keys: CustomerKeys, personal_keys: Callable[[], Collection[str]] = tuple
    ) -> None:
        self._keys = keys
        self._personal_keys = personal_keys

    # -- before the command -------------------------------------------------------------------

    async def seal_new(self, spec: TaskSpec) -> SealedTask:
        """The spec of a task to create with its customer id keyed and its personal data sealed
        (unchanged when it has neither). InvalidArgument for a `$sealed` attribute or a bad id."""
        _refuse_reserved("task.attributes", spec.attributes)
        customer_id = spec.customer_id
        check_id("task.customer_id", customer_id, required=False)  # the core sees only its key
        personal = self._personal_of(spec.attributes)
        if not customer_id and not personal:
            return SealedTask(spec, False, "", {})
        if personal:  # the core sees them sealed: refused here as the core would refuse them
            check_attributes("task.attributes", spec.attributes)
        if customer_id:
            customer, own_key = self._keys.key_of(customer_id), ""
        else:  # personal data with nobody to file it under
            customer = own_key = self._keys.key_of(ANONYMOUS_CUSTOMER)
        sealed = await self._seal(customer, customer_id, personal, own_key)
        attributes = _without(spec.attributes, personal) | {SEALED_KEY: sealed}
        keyed = replace(spec, customer_id=customer if customer_id else "", attributes=attributes)
        return SealedTask(keyed, bool(customer_id), customer_id, personal)

    async def seal_update(self, task: TaskRecord, attributes: Mapping[str, Any]) -> dict[str, Any]:
        """An UpdateTask's new attributes for `task`, its personal ones sealed. What was sealed
        before that the update cannot give (the customer id) is sealed again with them; an
        unchanged sealed value is kept as it is."""
        _refuse_reserved("attributes", attributes)
        personal = self._personal_of(attributes)
        if personal:
            check_attributes("attributes", attributes)
        spec_customer = task.spec.customer_id
        old = task.spec.attributes.get(SEALED_KEY)
        try:
            parts = None if old is None else sealed_parts(old, spec_customer)
        except ValueError:  # an attribute of that name from before sealing: replaced like any
            parts = None
        if parts is None and not personal:
            return dict(attributes)
        customer_id = ""
        if parts is not None:  # sealed before: a keyed task's id is only in the sealed value
            customer, own_key, blob = parts
            try:
                opened = await self._keys.open(customer, blob)
            except SealedDataError:
                opened = None
            if opened is None:
                raise FailedPrecondition(
                    f"task {task.task_id}: its customer was erased; its personal attributes "
                    "cannot be changed"
                )
            customer_id = str(msgspec.json.decode(opened).get("customer_id", ""))
        elif spec_customer:  # created before keys, its id in plaintext: sealed under its key
            customer = own_key = self._keys.key_of(spec_customer)
        else:
            customer = own_key = self._keys.key_of(ANONYMOUS_CUSTOMER)
        if not customer_id and not personal:  # nothing (left) to keep sealed
            return dict(attributes)
        if parts is not None and _mac_of(old) == self._mac(customer_id, personal):
            sealed: Any = old  # the same personal data: no new data key use, no new bytes
        else:
            sealed = await self._seal(customer, customer_id, personal, own_key)
        return _without(attributes, personal) | {SEALED_KEY: sealed}

    def _personal_of(self, attributes: Mapping[str, Any]) -> dict[str, Any]:
        keys = self._personal_keys()
        if not keys:
            return {}
        return {key: attributes[key] for key in sorted(keys) if key in attributes}

    def _mac(self, customer_id: str, personal: Mapping[str, Any]) -> str:
        return personal_mac(self._keys.keyring.hash_key, _plaintext(customer_id, personal))

    async def _seal(
        self, customer: str, customer_id: str, personal: Mapping[str, Any], own_key: str
    ) -> dict[str, str]:
        plaintext = _plaintext(customer_id, personal)
        try:
            blob = await self._keys.seal(customer, plaintext)
        except SealedDataError as error:  # a data key the keyring cannot unwrap (a KEK gone)
            raise FailedPrecondition(
                f"the customer's personal data cannot be sealed: {error}"
            ) from None
        sealed = {
            "mac": personal_mac(self._keys.keyring.hash_key, plaintext),
            "blob": base64.b64encode(blob).decode("ascii"),
        }
        if own_key:
            sealed["ck"] = own_key
        return sealed

    # -- after a read -------------------------------------------------------------------------

    async def reveal(self, messages: Iterable[pb.Task]) -> None:
        """Strips `$sealed` from each task message and merges back what it holds, in place."""
        pending: list[tuple[pb.Task, bool]] = []
        pairs: list[tuple[str, bytes]] = []
        for message in messages:
            fields = message.attributes.fields
            if SEALED_KEY not in fields:
                continue
            parts = _parts_of(fields[SEALED_KEY], message.customer_id)
            if parts is None:  # an attribute of that name kept from before sealing: as it is
                continue
            customer, own_key, blob = parts
            del fields[SEALED_KEY]
            keyed = bool(message.customer_id) and not own_key
            if keyed:  # its customer_id is the key: the id is in the sealed value
                message.customer_key = message.customer_id
                message.customer_id = ""
            pending.append((message, keyed))
            pairs.append((customer, blob))
        if not pending:
            return
        if len(pairs) == 1:  # most replies and agent messages: no batch to set up
            opened = [await self._open_one(*pairs[0])]
        else:
            opened = await self._keys.open_many(pairs)
        slice_end_s = time.perf_counter() + REVEAL_SLICE_S
        for (message, keyed), plaintext in zip(pending, opened, strict=True):
            if plaintext is None:
                message.customer_erased = True
            else:
                document = msgspec.json.decode(plaintext)
                if keyed:
                    message.customer_id = document.get("customer_id", "")
                if document.get("attributes"):
                    message.attributes.update(document["attributes"])
            if time.perf_counter() >= slice_end_s:
                await asyncio.sleep(0)
                slice_end_s = time.perf_counter() + REVEAL_SLICE_S

    async def _open_one(self, customer: str, blob: bytes) -> bytes | None:
        try:
            return await self._keys.open(customer, blob)
        except SealedDataError:  # not this customer's (or its KEK left the keyring)
            return None

    @staticmethod
    def reveal_known(message: pb.Task, sealed: SealedTask) -> None:
        """Reveals a task to the caller who just gave its plaintext (CreateTask's reply): no
        data key needed. A deduplicated reply has the same plaintext (its mac matched)."""
        fields = message.attributes.fields
        if SEALED_KEY in fields:
            del fields[SEALED_KEY]
        if sealed.customer_keyed:
            message.customer_key = message.customer_id
        message.customer_id = sealed.customer_id
        if sealed.personal:
            message.attributes.update(sealed.personal)


def sealed_parts(value: Any, spec_customer_id: str) -> tuple[str, str, bytes]:
    """(customer key it is sealed with, that key when it is not the task's own customer_id, the
    sealed bytes) of a `$sealed` value; ValueError when it is not one."""
    if not isinstance(value, Mapping) or not isinstance(value.get("blob"), str):
        raise ValueError("not a sealed value")
    own_key = value.get("ck", "")
    if not isinstance(own_key, str):
        raise ValueError("not a sealed value")
    try:
        blob = base64.b64decode(value["blob"], validate=True)
    except binascii.Error:
        raise ValueError("not a sealed value") from None
    return own_key or spec_customer_id, own_key, blob


def _parts_of(value: Any, spec_customer_id: str) -> tuple[str, str, bytes] | None:
    """`sealed_parts` of a `$sealed` attribute in a task message (a google.protobuf.Value),
    read field by field (a third of the time of making it a dict first); None when it is not
    one."""
    if value.WhichOneof("kind") != "struct_value":
        return None
    sealed = value.struct_value.fields
    if "blob" not in sealed:
        return None
    own_key = sealed["ck"].string_value if "ck" in sealed else ""
    try:
        blob = base64.b64decode(sealed["blob"].string_value, validate=True)
    except binascii.Error:
        return None
    return own_key or spec_customer_id, own_key, blob


def _mac_of(value: Any) -> str:
    return str(value.get("mac", "")) if isinstance(value, Mapping) else ""


def _plaintext(customer_id: str, personal: Mapping[str, Any]) -> bytes:
    """Canonical JSON, keys sorted: equal data gives equal bytes (and an equal mac). msgspec's
    encoder: about a tenth of the json module's time, on every CreateTask that seals."""
    return _ENCODER.encode({"customer_id": customer_id, "attributes": personal})


def _without(attributes: Mapping[str, Any], personal: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in attributes.items() if key not in personal}


def _refuse_reserved(field: str, attributes: Mapping[str, Any]) -> None:
    if SEALED_KEY in attributes:
        raise InvalidArgument(
            f"{field}.{SEALED_KEY}", "is reserved (the router keeps the task's personal data in it)"
        )


def personal_attribute_keys(engine: Any) -> Collection[str]:
    """The top-level task attribute keys the engine's timeline settings mark personal (none
    while the engine has no timeline settings)."""
    settings = getattr(getattr(engine, "customers", None), "settings", None)
    return tuple(getattr(settings, "personal_attribute_keys", ()))
