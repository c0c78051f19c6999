"""Hypothesis strategies for the fuzz suite: requests of every RPC, built by walking the protos'
descriptors (so that a new RPC, message or field is fuzzed without a word here), filled with
adversarial values; raw bytes; and expressions.

Values lean on what breaks servers: empty, huge and odd unicode strings, ids of objects that
exist (so that requests reach the core, not only its first check), NaN and infinities, extreme
integers, enum values the API does not define, deep and large attributes."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from google.protobuf import descriptor_pool, struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from router.server import SERVICE_NAMES

KNOWN_IDS = ("support", "sales", "w1", "w2", "voice", "chat", "available", "break", "p1",
             "billing", "en", "task-1", "task-2", "res-1")  # fmt: skip
"""Ids of what the fuzz router holds (see conftest), and near misses."""

EXPRESSION_FIELDS = frozenset({"target_expression", "expression", "worker_expression"})

_MESSAGE_DEPTH_MAX = 4
"""How deep generated messages nest (attributes aside): deeper adds time, not coverage."""


def api_methods() -> Iterator[MethodDescriptor]:
    """Every RPC of every service the router serves (its own list, read from the protos)."""
    pool = descriptor_pool.Default()
    for name in SERVICE_NAMES:
        yield from pool.FindServiceByName(name).methods


def method_path(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def message_class(descriptor: Descriptor) -> type[Message]:
    return GetMessageClass(descriptor)


# -- scalars -------------------------------------------------------------------------------------

ODD_TEXT = ("", " ", "\x00", "é", "😀", "²", "\uff11", "\u202e", "a\nb", "'", '"', "\\",
            "Ω" * 200, "-", ".", "a" * 128, "a" * 129)  # fmt: skip


def texts() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(KNOWN_IDS),
        st.sampled_from(ODD_TEXT),
        st.text(max_size=40),
        st.integers(200, 20_000).map(lambda size: "x" * size),
    )


def doubles() -> st.SearchStrategy[float]:
    return st.one_of(
        st.sampled_from((0.0, -0.0, 0.5, 1.0, 3.0, -1.0, 5.0, 1e300, -1e300, 2.0**53 + 2)),
        st.sampled_from((math.nan, math.inf, -math.inf, 5e-324)),
        st.floats(),
    )


def integers(bits: int, *, signed: bool) -> st.SearchStrategy[int]:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return st.one_of(
        st.sampled_from((0, 1, low, high, 1000, 1001)).filter(lambda n: low <= n <= high),
        st.integers(low, high),
    )


def enum_values(field: FieldDescriptor) -> st.SearchStrategy[int]:
    assert field.enum_type is not None
    defined = [value.number for value in field.enum_type.values]
    return st.one_of(st.sampled_from(defined), st.sampled_from((-1, 99, 2**31 - 1)))


_INT_BITS = {
    FieldDescriptor.TYPE_INT32: (32, True), FieldDescriptor.TYPE_SINT32: (32, True),
    FieldDescriptor.TYPE_SFIXED32: (32, True), FieldDescriptor.TYPE_INT64: (64, True),
    FieldDescriptor.TYPE_SINT64: (64, True), FieldDescriptor.TYPE_SFIXED64: (64, True),
    FieldDescriptor.TYPE_UINT32: (32, False), FieldDescriptor.TYPE_FIXED32: (32, False),
    FieldDescriptor.TYPE_UINT64: (64, False), FieldDescriptor.TYPE_FIXED64: (64, False),
}  # fmt: skip


# -- attributes (google.protobuf.Struct) ---------------------------------------------------------

_JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), doubles(), st.integers(-(2**60), 2**60).map(float), texts()
)


def json_documents(depth_max: int = 24) -> st.SearchStrategy[dict[str, Any]]:
    """Documents with adversarial values, sometimes nested past the attributes' depth limit (but
    not past what a client can serialize: deeper ones go as raw bytes)."""
    values = st.recursive(
        _JSON_SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(texts(), inner, max_size=4)
        ),
        max_leaves=12,
    )
    return st.one_of(
        st.dictionaries(texts(), values, max_size=5),
        st.integers(2, depth_max).map(_nested),
        st.integers(1, 20_000).map(lambda count: {"counts": [1] * count}),
    )


def _nested(depth: int) -> dict[str, Any]:
    document: dict[str, Any] = {"leaf": 1}
    for level in range(depth - 1):
        document = {"a": document} if level % 2 else {"a": [document]}
    return document


# -- expressions ---------------------------------------------------------------------------------

_KEYS = ("tier", "customer.tier", "skills.billing", "languages", "team", "a.b.c.d.e.f.g.h.i",
         "and", "IN", "x" * 300, "_", "9a", "a..b")  # fmt: skip
_CONSTANTS = ("'gold'", '"it\\"s"', "3", "-2.5", ".5", "1e3", "1e999", "true", "null", "'",
              "[1, 'a', null]", "[]", "[[1]]", "0x10", "+1")  # fmt: skip
_OPERATORS = ("==", "!=", "<", "<=", ">", ">=", "CONTAINS", "HAS", "IN", "NOT IN", "=", "===")
_JOINERS = (" AND ", " OR ", " && ", " || ", " ")


def expressions() -> st.SearchStrategy[str]:
    """Expression source: well-formed conditions joined and nested (sometimes past the depth
    limit), and broken ones; raw text too."""
    condition = st.builds(
        lambda key, op, constant: f"{key} {op} {constant}",
        st.sampled_from(_KEYS), st.sampled_from(_OPERATORS), st.sampled_from(_CONSTANTS),
    )  # fmt: skip
    atom = st.one_of(condition, st.sampled_from(_KEYS), st.sampled_from(("true", "false")))
    combined = st.recursive(
        atom,
        lambda inner: st.one_of(
            st.builds(lambda a, j, b: f"{a}{j}{b}", inner, st.sampled_from(_JOINERS), inner),
            inner.map(lambda text: f"({text})"),
            inner.map(lambda text: f"NOT {text}"),
        ),
        max_leaves=8,
    )
    deep = st.integers(1, 200).map(lambda depth: "(" * depth + "tier == 1" + ")" * depth)
    wide = st.integers(1, 2000).map(lambda count: "tier IN [" + ", ".join(["1"] * count) + "]")
    return st.one_of(combined, deep, wide, texts())


# -- messages ------------------------------------------------------------------------------------


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Message]:
    """A message of `descriptor` with any subset of its fields set to adversarial values."""
    cls = message_class(descriptor)
    if descriptor.full_name == "google.protobuf.Struct":
        return json_documents().map(_struct)
    fields = [
        field for field in descriptor.fields
        if depth < _MESSAGE_DEPTH_MAX or field.type != FieldDescriptor.TYPE_MESSAGE
    ]  # fmt: skip
    optional = {field.name: _field_values(field, depth) for field in fields}
    return st.fixed_dictionaries({}, optional=optional).map(
        lambda values: _build(cls, descriptor, values)
    )


def _struct(document: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(document)
    return struct


def _field_values(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        key = _scalar_values(entry.fields_by_name["key"], depth)
        value = _scalar_values(entry.fields_by_name["value"], depth)
        return st.dictionaries(key, value, max_size=4)
    single = _scalar_values(field, depth)
    if field.is_repeated:
        return st.lists(single, max_size=4)
    return single


def _scalar_values(field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_MESSAGE:
        assert field.message_type is not None
        return st.deferred(lambda: messages(field.message_type, depth + 1))
    if kind == FieldDescriptor.TYPE_STRING:
        return expressions() if field.name in EXPRESSION_FIELDS else texts()
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return doubles() if kind == FieldDescriptor.TYPE_DOUBLE else st.floats(width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        return enum_values(field)
    bits, signed = _INT_BITS[kind]
    return integers(bits, signed=signed)


def _build(cls: type[Message], descriptor: Descriptor, values: dict[str, Any]) -> Message:
    message = cls()
    for name, value in values.items():
        field = descriptor.fields_by_name[name]
        _set(message, field, value)
    return message


def _set(message: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(message, field.name)
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        value_field = entry.fields_by_name["value"]
        for key, item in value.items():
            if value_field.type == FieldDescriptor.TYPE_MESSAGE:
                target[key].CopyFrom(item)
            else:
                target[key] = item
    elif field.is_repeated:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            for item in value:
                target.add().CopyFrom(item)
        else:
            target.extend(value)
    elif field.type == FieldDescriptor.TYPE_MESSAGE:
        target.CopyFrom(value)
    else:
        setattr(message, field.name, value)


def requests(method: MethodDescriptor) -> st.SearchStrategy[Message]:
    return messages(method.input_type)


def raw_bodies() -> st.SearchStrategy[bytes]:
    """Bytes to send as a request: garbage, truncations, and valid framing around bad content
    (not UTF-8, attributes nested past protobuf's decoding depth)."""
    return st.one_of(
        st.binary(max_size=256),
        st.sampled_from((b"", b"\x00", b"\xff" * 8, b"\x0a\x05ab", b"\x0a\x02\xc3\x28")),
        st.integers(30, 300).map(deep_attributes_bytes),
    )


def deep_attributes_bytes(depth: int) -> bytes:
    """A CreateTaskRequest whose attributes nest `depth` objects deep, encoded by hand (a
    client's protobuf refuses to build what it could not decode)."""
    struct = b""
    for _ in range(depth):
        entry = _length_delimited(1, b"a") + _length_delimited(2, _length_delimited(5, struct))
        struct = _length_delimited(1, entry)
    task = _length_delimited(3, b"voice") + _length_delimited(4, b"support")
    return _length_delimited(1, task + _length_delimited(5, struct))


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)
