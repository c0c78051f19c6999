"""TimelineService conversions: requests to the core's values, the core's results to the API's
messages, and the plaintext forms of what the API seals (the timeline's reads open them):

- an outcome's note, an agent action's reason: the text, UTF-8;
- an appended entry's summary and data: compact JSON `{"summary": "...", "data": {...}}`;
- a profile: the `CustomerProfile` message (customer_id, tier, language, verified,
  display_name, attributes; no `updated_at_ms`), serialized."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from router._proto.switchboard.v1 import timeline_service_pb2 as tlpb
from router.api.convert import dict_to_struct, struct_to_dict
from router.core.customers import CustomerView
from router.core.errors import InvalidArgument
from router.core.limits import (
    ENTRIES_PER_CUSTOMER_DEFAULT,
    ENTRY_DATA_BYTES_MAX,
    IDENTITY_VERIFICATION_WINDOW_S_DEFAULT,
    RETENTION_DAYS_DEFAULT,
)
from router.core.model import TimelineSettings
from router.core.validation import check_attributes

RESOLUTIONS: Final = frozenset(tlpb.Resolution.values())


def resolution_of(value: int) -> int:
    if value not in RESOLUTIONS:
        raise InvalidArgument("resolution", f"unknown value {value}")
    return value


def data_of(field: str, struct: Any) -> dict[str, Any]:
    """A Struct of personal data (an entry's data, a profile's attributes), within
    `ENTRY_DATA_BYTES_MAX` in the canonical encoding of attributes."""
    document = struct_to_dict(struct)
    check_attributes(field, document)  # finite numbers, nesting
    size = len(canonical_json(document))
    if size > ENTRY_DATA_BYTES_MAX:
        raise InvalidArgument(
            field, f"is {size} bytes as JSON, the limit is {ENTRY_DATA_BYTES_MAX} bytes"
        )
    return document


def canonical_json(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode()


def entry_body(summary: str, data: Mapping[str, Any]) -> bytes:
    """The plaintext an appended entry's summary and data are sealed as (empty: nothing)."""
    if not summary and not data:
        return b""
    return canonical_json({"summary": summary, "data": dict(data)})


def profile_plaintext(profile: tlpb.CustomerProfile) -> bytes:
    """The plaintext a profile is sealed as: the message without its output-only field."""
    sealed = tlpb.CustomerProfile()
    sealed.CopyFrom(profile)
    sealed.ClearField("updated_at_ms")
    return sealed.SerializeToString(deterministic=True)


def external_entry(
    request: tlpb.AppendTimelineEntryRequest, data: Mapping[str, Any]
) -> tlpb.ExternalEntry:
    external = tlpb.ExternalEntry(
        kind=request.entry.kind,
        source=request.entry.source,
        summary=request.entry.summary,
        identity_verified=request.entry.identity_verified,
    )
    if data:
        dict_to_struct(data, external.data)
    return external


def context_to_pb(customer_key: str, view: CustomerView | None) -> tlpb.CustomerContext:
    """What routing reads of the customer (only the key when nothing is kept)."""
    if view is None:
        return tlpb.CustomerContext(customer_key=customer_key)
    return tlpb.CustomerContext(
        customer_key=customer_key,
        contacts_24h=view.contacts_24h,
        contacts_7d=view.contacts_7d,
        last_contact_at_ms=view.last_contact_ms,
        last_agent_id=view.last_agent_id,
        last_resolution=view.resolution,  # type: ignore[arg-type]  # the API's values
        last_tags=view.tags,
        last_sentiment=view.last_sentiment or 0.0,
        has_last_sentiment=view.last_sentiment is not None,
        tier=view.tier,
        language=view.language,
        verified=view.verified,
    )


def settings_from_pb(settings: tlpb.TimelineSettings) -> TimelineSettings:
    """The settings, each 0 standing for its default (the core checks the ranges)."""
    window_s = settings.identity_verification_window_s
    if math.isnan(window_s):
        raise InvalidArgument("settings.identity_verification_window_s", "must be a number")
    return TimelineSettings(
        personal_attribute_keys=tuple(settings.personal_attribute_keys),
        retention_days=settings.retention_days or RETENTION_DAYS_DEFAULT,
        entries_per_customer_max=settings.entries_per_customer_max or ENTRIES_PER_CUSTOMER_DEFAULT,
        identity_verification_window_s=window_s or IDENTITY_VERIFICATION_WINDOW_S_DEFAULT,
    )


def settings_to_pb(settings: TimelineSettings) -> tlpb.TimelineSettings:
    return tlpb.TimelineSettings(
        personal_attribute_keys=settings.personal_attribute_keys,
        retention_days=settings.retention_days,
        entries_per_customer_max=settings.entries_per_customer_max,
        identity_verification_window_s=settings.identity_verification_window_s,
    )


def profile_data(profile: tlpb.CustomerProfile) -> dict[str, Any]:
    return data_of("profile.attributes", profile.attributes)
