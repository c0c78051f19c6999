"""The length limit of every string field of the API's requests, and the check of a request
against them (before its servicer reads it).

Ids and names of the same kind (`*_id`, `*_ids`, channel, language, activity, and the keys of
every map: skills and channels) share `ID_CHARS_MAX`; every other string field is listed in
`CHARS_MAX_BY_FIELD`. A test walks the protos and fails for a string field with no limit, so a
new field cannot go unbounded. Strings inside attributes (a `google.protobuf.Struct`) are
bounded by the attributes' own size limit instead."""

from __future__ import annotations

import enum
from functools import cache
from typing import Any, Final

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from router.api.paging import PAGE_TOKEN_CHARS_MAX
from router.core.errors import InvalidArgument, shown
from router.core.expressions import EXPRESSION_CHARS_MAX
from router.core.limits import (
    CALENDAR_TEXT_CHARS_MAX,
    CANCEL_REASON_CHARS_MAX,
    DISPLAY_NAME_CHARS_MAX,
    ERASE_REASON_CHARS_MAX,
    FILTER_NAME_CHARS_MAX,
    ID_CHARS_MAX,
    OUTCOME_NOTE_CHARS_MAX,
    PROFILE_TIER_CHARS_MAX,
    REJECT_REASON_CHARS_MAX,
    TIMELINE_SEARCH_CHARS_MAX,
    TIMELINE_SUMMARY_CHARS_MAX,
    TIMELINE_TOKEN_CHARS_MAX,
    TRANSFER_REASON_CHARS_MAX,
)
from router.writer.eventhub import CURSOR_CHARS_MAX

_V1 = "switchboard.v1."
CHARS_MAX_BY_FIELD: Final[dict[str, int]] = {
    f"{_V1}{name}": chars_max
    for names, chars_max in (
        (("Worker.display_name", "Queue.display_name", "Channel.display_name",
          "RoutingPolicy.display_name"), DISPLAY_NAME_CHARS_MAX),
        (("CancelTaskRequest.reason", "QueueAction.reason", "Task.cancel_reason"),
         CANCEL_REASON_CHARS_MAX),
        (("RejectOfferRequest.reason", "ConnectRequest.Reject.reason"), REJECT_REASON_CHARS_MAX),
        (("PolicyFilter.name",), FILTER_NAME_CHARS_MAX),
        (("TransferTaskRequest.reason", "PauseTaskRequest.reason", "Transfer.reason",
          "Transfer.outcome"), TRANSFER_REASON_CHARS_MAX),
        (("TransferTarget.worker_expression",), EXPRESSION_CHARS_MAX),
        (("Queue.target_expression", "PolicyFilter.expression", "RoutingStep.worker_expression"),
         EXPRESSION_CHARS_MAX),
        (("BusinessHours.time_zone", "BusinessHours.holidays", "OpenHours.opens",
          "OpenHours.closes"), CALENDAR_TEXT_CHARS_MAX),
        (("ListTasksRequest.page_token", "ListWorkersRequest.page_token",
          "ListQueuesRequest.page_token", "ListRoutingPoliciesRequest.page_token"),
         PAGE_TOKEN_CHARS_MAX),
        (("SubscribeRequest.after_cursor",), CURSOR_CHARS_MAX),
        (("PresenceSettings.lost_activity", "PresenceSettings.away_activity"), ID_CHARS_MAX),
        (("RecordOutcomeRequest.disposition", "RecordOutcomeRequest.tags",
          "RecordAgentActionRequest.action", "AppendTimelineEntryRequest.tags",
          "ExternalEntry.kind", "ExternalEntry.source", "GetTimelineRequest.tags"),
         TIMELINE_TOKEN_CHARS_MAX),
        (("RecordOutcomeRequest.note",), OUTCOME_NOTE_CHARS_MAX),
        (("RecordAgentActionRequest.reason", "ExternalEntry.summary"),
         TIMELINE_SUMMARY_CHARS_MAX),
        (("GetTimelineRequest.text",), TIMELINE_SEARCH_CHARS_MAX),
        (("GetTimelineRequest.page_token",), PAGE_TOKEN_CHARS_MAX),
        (("CustomerProfile.tier",), PROFILE_TIER_CHARS_MAX),
        (("CustomerProfile.display_name",), DISPLAY_NAME_CHARS_MAX),
        (("EraseCustomerRequest.reason",), ERASE_REASON_CHARS_MAX),
        (("TimelineSettings.personal_attribute_keys",), ID_CHARS_MAX),
    )
    for name in names
}  # fmt: skip
"""Limits of the string fields that are not ids, by the field's full name."""

_ID_NAMES = frozenset({"channel", "channels", "language", "languages", "activity"})


def chars_max(field: FieldDescriptor) -> int | None:
    """The longest value a string field of a request may hold (None: the field has no limit,
    which a test allows for no field of the API)."""
    explicit = CHARS_MAX_BY_FIELD.get(field.full_name)
    if explicit is not None:
        return explicit
    if field.name.endswith(("_id", "_ids")) or field.name in _ID_NAMES:
        return ID_CHARS_MAX
    if field.containing_type is not None and _map_entry(field.containing_type) is not None:
        return ID_CHARS_MAX  # a map's key: a skill or a channel
    return None


def check_strings(message: Message, path: str = "") -> None:
    """Raises InvalidArgument, naming the field's path in the request (e.g.
    `policy.filters[2].name`) and the limit, for the first string over its limit."""
    for field, value in message.ListFields():
        kind, limit = _plan(field)
        if kind is _Kind.SKIP:
            continue
        # The path is built only where it is needed: most requests are a few short ids.
        if kind is _Kind.TEXT:
            assert limit is not None
            if not field.is_repeated:
                if len(value) > limit:
                    raise InvalidArgument(_join(path, field), _too_long(len(value), limit))
                continue
            for index, text in enumerate(value):
                if len(text) > limit:
                    name = f"{_join(path, field)}[{index}]"
                    raise InvalidArgument(name, _too_long(len(text), limit))
        elif kind is _Kind.MAP:
            entry = field.message_type
            assert entry is not None
            _check_map(entry, _join(path, field), value)
        elif kind is _Kind.MESSAGES:
            name = _join(path, field)
            for index, item in enumerate(value):
                check_strings(item, f"{name}[{index}]")
        else:
            check_strings(value, _join(path, field))


class _Kind(enum.Enum):
    """What `check_strings` does with a field."""

    SKIP = "skip"  # no limit, a free-form message (bounded by its size), or a scalar
    TEXT = "text"
    MAP = "map"
    MESSAGES = "messages"
    MESSAGE = "message"


@cache
def _plan(field: FieldDescriptor) -> tuple[_Kind, int | None]:
    """How `check_strings` checks `field`, and the limit of a string field (descriptors are
    fixed: worked out once per field, not per request)."""
    if field.type == FieldDescriptor.TYPE_STRING:
        limit = chars_max(field)
        return (_Kind.SKIP, None) if limit is None else (_Kind.TEXT, limit)
    if field.type == FieldDescriptor.TYPE_MESSAGE and not _is_free_form(field):
        if _map_entry(field.message_type) is not None:
            return _Kind.MAP, None
        return (_Kind.MESSAGES if field.is_repeated else _Kind.MESSAGE), None
    return _Kind.SKIP, None


def _join(path: str, field: FieldDescriptor) -> str:
    return f"{path}.{field.name}" if path else field.name


def _check_map(entry: Descriptor, name: str, value: Any) -> None:
    """A map's keys are ids (skills, channels); message values are checked in turn."""
    key_field = entry.fields_by_name["key"]
    key_chars_max = chars_max(key_field) if key_field.type == FieldDescriptor.TYPE_STRING else None
    values_are_messages = entry.fields_by_name["value"].type == FieldDescriptor.TYPE_MESSAGE
    for key in value:
        if key_chars_max is not None and len(key) > key_chars_max:
            raise InvalidArgument(
                name, f"has a key of {len(key)} characters, the limit is {key_chars_max}"
            )
        if values_are_messages:
            check_strings(value[key], f"{name}[{shown(str(key))}]")


def _too_long(chars: int, limit: int) -> str:
    return f"is {chars} characters long, the limit is {limit}"


def _is_free_form(field: FieldDescriptor) -> bool:
    """A google.protobuf message (Struct, Value...): attributes, bounded by their size."""
    message_type = field.message_type
    return message_type is not None and message_type.full_name.startswith("google.protobuf.")


@cache
def _map_entry(message_type: Descriptor) -> Descriptor | None:
    return message_type if message_type.GetOptions().map_entry else None
