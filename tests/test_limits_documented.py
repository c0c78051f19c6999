"""The limits and labels the README promises are the code's: its Limits table against the
constants, the string limits against every string field of every request, and the cancel reasons
of the metrics against the engine's."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import resources_pb2 as pb
from router.api.bounds import CHARS_MAX_BY_FIELD, chars_max, check_strings
from router.api.paging import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX, PAGE_TOKEN_CHARS_MAX
from router.api.status import STATUS_MESSAGE_CHARS_MAX
from router.core import limits
from router.core.errors import QUOTED_CHARS_MAX, InvalidArgument
from router.core.events import CANCEL_ORIGINS
from router.core.expressions import EXPRESSION_CHARS_MAX
from router.core.histories import CUSTOMERS_KEPT_MAX
from router.server import SERVICE_NAMES

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _section(title: str) -> str:
    start = README.index(f"## {title}\n")
    return README[start : README.index("\n## ", start + 1)]


def _limits_table() -> dict[str, str]:
    rows = re.findall(r"^\| (.+?) \| (.+?) \|$", _section("Limits"), re.MULTILINE)
    return {name: value for name, value in rows if name not in ("limit", "---")}


def _chars(count: int) -> str:
    return f"{count:,} characters"


def test_the_limits_table_states_the_code_s_limits() -> None:
    table = _limits_table()
    expected = {
        "display name (worker, queue, channel, routing policy)":
            _chars(limits.DISPLAY_NAME_CHARS_MAX),
        "cancel reason (`CancelTask`, a cancel action)": _chars(limits.CANCEL_REASON_CHARS_MAX),
        "reject reason (`RejectOffer`, a Connect stream's `reject`)":
            _chars(limits.REJECT_REASON_CHARS_MAX),
        "policy filter name": _chars(limits.FILTER_NAME_CHARS_MAX),
        "target expression, policy filter, step's worker expression":
            _chars(EXPRESSION_CHARS_MAX),
        "business hours: time zone, opening and closing time, holiday":
            _chars(limits.CALENDAR_TEXT_CHARS_MAX),
        "page token": _chars(PAGE_TOKEN_CHARS_MAX),
        "attributes nesting": f"{limits.ATTRIBUTES_DEPTH_MAX} levels of objects and arrays",
        "skills per worker": f"{limits.SKILLS_PER_WORKER_MAX:,}",
        "required + preferred skills per task": f"{limits.SKILLS_PER_TASK_MAX:,}",
        "languages per worker": f"{limits.LANGUAGES_PER_WORKER_MAX:,}",
        "channels": f"{limits.CHANNELS_MAX:,}",
        "queues": f"{limits.QUEUES_MAX:,}",
        "workers": f"{limits.WORKERS_MAX:,}",
        "open tasks": f"{limits.OPEN_TASKS_MAX:,}",
        "status message": (
            f"{STATUS_MESSAGE_CHARS_MAX:,} characters; a refused value quoted to "
            f"{QUOTED_CHARS_MAX}"
        ),
        "presence timeout (`presence_timeout_s`)": (
            f"above 0, up to {limits.PRESENCE_TIMEOUT_S_MAX:,.0f} s "
            f"(default {limits.PRESENCE_TIMEOUT_S_DEFAULT:.0f} s)"
        ),
        "presence grace (`presence_grace_s`)": (
            f"up to {limits.PRESENCE_GRACE_S_MAX:,.0f} s "
            f"(default {limits.PRESENCE_GRACE_S_DEFAULT:.0f} s)"
        ),
        "re-queue after a disconnect (`requeue_after_disconnect_s`, per channel)": (
            f"up to {limits.REQUEUE_AFTER_DISCONNECT_S_MAX:,.0f} s (7 days; default 0: never)"
        ),
        "missed offers in a row before away (`missed_offers_max`)": (
            f"0 (off) to {limits.MISSED_OFFERS_MAX_LIMIT}"
        ),
        "disposition, agent action, entry kind and source, tag (`TIMELINE_TOKEN_CHARS_MAX`)": (
            f"{_chars(limits.TIMELINE_TOKEN_CHARS_MAX)} (letters, digits, `_ . -`; a source any "
            "printable text)"
        ),
        "tags per outcome or appended entry (`TAGS_PER_ENTRY_MAX`)": f"{limits.TAGS_PER_ENTRY_MAX}",
        "outcome note (`OUTCOME_NOTE_CHARS_MAX`)": _chars(limits.OUTCOME_NOTE_CHARS_MAX),
        "agent action reason, appended entry summary (`TIMELINE_SUMMARY_CHARS_MAX`)":
            _chars(limits.TIMELINE_SUMMARY_CHARS_MAX),
        "appended entry data, profile attributes (`ENTRY_DATA_BYTES_MAX`)":
            f"{limits.ENTRY_DATA_BYTES_MAX // 1024} KiB in the canonical encoding",
        "sealed personal text of one timeline command (`SEALED_BYTES_MAX`)":
            f"{limits.SEALED_BYTES_MAX // 1024} KiB (room for the longest note, 4,096 characters "
            "of 4 UTF-8 bytes, sealed)",
        "profile tier (`PROFILE_TIER_CHARS_MAX`)": _chars(limits.PROFILE_TIER_CHARS_MAX),
        "erasure reason (`ERASE_REASON_CHARS_MAX`)": _chars(limits.ERASE_REASON_CHARS_MAX),
        "timeline search text (`TIMELINE_SEARCH_CHARS_MAX`)":
            _chars(limits.TIMELINE_SEARCH_CHARS_MAX),
        "personal attribute keys (`PERSONAL_ATTRIBUTE_KEYS_MAX`)":
            f"{limits.PERSONAL_ATTRIBUTE_KEYS_MAX}",
        "timeline retention (`retention_days`)": (
            f"1 to {limits.RETENTION_DAYS_MAX:,} days (default {limits.RETENTION_DAYS_DEFAULT})"
        ),
        "timeline entries per customer (`entries_per_customer_max`)": (
            f"1 to {limits.ENTRIES_PER_CUSTOMER_MAX:,} "
            f"(default {limits.ENTRIES_PER_CUSTOMER_DEFAULT:,})"
        ),
        "identity verification window (`identity_verification_window_s`)": (
            f"above 0, up to {limits.IDENTITY_VERIFICATION_WINDOW_S_MAX:,.0f} s "
            f"(default {limits.IDENTITY_VERIFICATION_WINDOW_S_DEFAULT:.0f} s)"
        ),
        "customers whose routing context is kept (`CUSTOMERS_KEPT_MAX`)":
            f"the latest {CUSTOMERS_KEPT_MAX:,}",
        "contacts kept per customer (`CONTACTS_KEPT_PER_CUSTOMER_MAX`)":
            f"{limits.CONTACTS_KEPT_PER_CUSTOMER_MAX} of the last 7 days",
        "task ids kept per customer (`TASK_IDS_KEPT_PER_CUSTOMER_MAX`)":
            f"the latest {limits.TASK_IDS_KEPT_PER_CUSTOMER_MAX}",
        "`AdvanceTime` (test clock)": (
            f"{limits.ADVANCE_TIME_MS_MAX:,} ms (366 days) a call, and never past the end of 9999"
        ),
    }  # fmt: skip
    for name, value in expected.items():
        assert table.get(name) == value, name
    assert table["id length (task, worker, queue, channel, activity, skill, language, policy, "
                 "offer, customer, request id; skill and channel keys of maps)"].startswith(
        _chars(limits.ID_CHARS_MAX)
    )  # fmt: skip
    assert table["attributes of a task or worker"].startswith(
        f"{limits.ATTRIBUTES_BYTES_MAX // 1024} KiB in the canonical encoding"
    )
    page = table["`ListTasks` / `ListWorkers` page"]
    assert page.startswith(f"{PAGE_SIZE_DEFAULT} items by default, {PAGE_SIZE_MAX:,} at most")
    assert "is `INVALID_ARGUMENT`" in page
    timeline_page = table[
        "`GetTimeline` page (`TIMELINE_PAGE_SIZE_DEFAULT`, `TIMELINE_PAGE_SIZE_MAX`)"
    ]
    assert timeline_page.startswith(
        f"{limits.TIMELINE_PAGE_SIZE_DEFAULT} entries by default, "
        f"{limits.TIMELINE_PAGE_SIZE_MAX} at most"
    )
    assert table["`GetTimeline` search text (`TIMELINE_SEARCH_CHARS_MAX`)"] == _chars(
        limits.TIMELINE_SEARCH_CHARS_MAX
    )
    assert limits.ADVANCE_TIME_MS_MAX == 366 * 24 * 3600 * 1000


def _request_messages() -> Iterator[Descriptor]:
    pool = descriptor_pool.Default()
    seen: set[str] = set()
    pending = [
        method.input_type
        for name in SERVICE_NAMES
        for method in pool.FindServiceByName(name).methods
    ]
    while pending:
        message = pending.pop()
        if message.full_name in seen or message.full_name.startswith("google.protobuf."):
            continue
        seen.add(message.full_name)
        yield message
        pending.extend(f.message_type for f in message.fields if f.message_type is not None)


def test_every_string_field_of_every_request_has_a_limit() -> None:
    strings = [
        field
        for message in _request_messages()
        for field in message.fields
        if field.type == FieldDescriptor.TYPE_STRING
    ]
    assert len(strings) > 60
    assert [field.full_name for field in strings if chars_max(field) is None] == []
    named = {field.full_name for field in strings}
    assert set(CHARS_MAX_BY_FIELD) <= named, "a limit names a field that does not exist"


def test_the_metrics_table_lists_the_cancel_reasons_the_engine_emits() -> None:
    row = next(
        line for line in _section("Metrics").splitlines() if line.startswith("| `tasks_canceled")
    )
    labels = re.findall(r"`(\w+)`:", row)
    assert labels == list(CANCEL_ORIGINS)


_FILTERS = [pb.PolicyFilter(name="ok"), pb.PolicyFilter(name="n" * 129)]
_STEP = pb.RoutingStep(required_skills={"s" * 200: 1.0})
_HOURS = pb.BusinessHours(holidays=["2030-01-01", "h" * 65])


@pytest.mark.parametrize(
    ("request_message", "message"),
    [
        (
            apb.UpsertRoutingPolicyRequest(policy=pb.RoutingPolicy(filters=_FILTERS)),
            "policy.filters[1].name: is 129 characters long, the limit is 128",
        ),
        (
            apb.UpsertRoutingPolicyRequest(
                policy=pb.RoutingPolicy(default_route=pb.Route(steps=[pb.RoutingStep(), _STEP]))
            ),
            "policy.default_route.steps[1].required_skills: has a key of 200 characters, the "
            "limit is 128",
        ),
        (
            apb.UpsertQueueRequest(queue=pb.Queue(business_hours=_HOURS)),
            "queue.business_hours.holidays[1]: is 65 characters long, the limit is 64",
        ),
    ],
    ids=["repeated-message", "map-key", "repeated-string"],
)
def test_an_over_long_string_is_named_by_its_path_in_the_request(
    request_message: Message, message: str
) -> None:
    with pytest.raises(InvalidArgument) as raised:
        check_strings(request_message)
    assert raised.value.message == message
