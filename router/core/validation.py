"""Validation of command payloads, before anything is changed (so a refused command leaves the
state untouched). Field names in errors follow the API's request fields, e.g.
`task.required_skills[billing]`."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from router.core.errors import InvalidArgument
from router.core.limits import (
    ATTRIBUTES_BYTES_MAX,
    CAPACITY_PER_CHANNEL_MAX,
    ID_CHARS_MAX,
    LANGUAGES_PER_WORKER_MAX,
    PRIORITY_ABS_MAX,
    RESERVATION_TIMEOUT_S_MAX,
    SKILL_LEVEL_MAX,
    SKILLS_PER_TASK_MAX,
    SKILLS_PER_WORKER_MAX,
    TASK_TTL_S_MAX,
    WRAPUP_S_MAX,
)
from router.core.model import QueueConfig, TaskSpec, WorkerProfile

_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@+\-]*")
RESERVED_WORKER_KEYS = frozenset({"skills", "languages", "empathy", "worker_id"})
"""Top-level keys the router adds to a worker's attributes for target expressions."""


def check_id(field: str, value: str, *, required: bool = True) -> None:
    if not value:
        if required:
            raise InvalidArgument(field, "is required")
        return
    if len(value) > ID_CHARS_MAX:
        raise InvalidArgument(
            field, f"is {len(value)} characters long, the limit is {ID_CHARS_MAX}"
        )
    if not _ID_PATTERN.fullmatch(value):
        raise InvalidArgument(
            field,
            f"{value!r} is not a valid id (letters, digits and _ . : @ + -, starting with a "
            "letter or digit)",
        )


def check_finite(field: str, value: float, low: float, high: float) -> None:
    if not math.isfinite(value):
        raise InvalidArgument(field, f"must be a finite number, got {value}")
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low:g} and {high:g}, got {value:g}")


def check_attributes(field: str, attributes: Mapping[str, Any]) -> None:
    if _surely_small_flat_json(attributes):
        return
    try:
        encoded = json.dumps(attributes, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(field, f"is not a JSON object: {error}") from None
    size = len(encoded.encode())
    if size > ATTRIBUTES_BYTES_MAX:
        raise InvalidArgument(
            field, f"is {size} bytes as JSON, the limit is {ATTRIBUTES_BYTES_MAX} bytes"
        )


_JSON_BYTES_PER_CHAR_MAX = 6
"""A character takes at most six bytes in JSON (a \\uXXXX escape)."""
_JSON_SCALAR_BYTES_MAX = 32
"""Longest JSON text of a bool, null, finite float or int below 10**18."""


def _surely_small_flat_json(document: Mapping[str, Any]) -> bool:
    """True when the document is flat (string keys, scalar values) and an upper bound of its
    JSON size is within the limit: most documents, checked without encoding them. False means
    only "encode it to know"."""
    bound = 2
    for key, value in document.items():
        if type(key) is not str:
            return False
        bound += _JSON_BYTES_PER_CHAR_MAX * len(key) + 4
        if type(value) is str:
            bound += _JSON_BYTES_PER_CHAR_MAX * len(value) + 2
        elif _is_short_json_scalar(value):
            bound += _JSON_SCALAR_BYTES_MAX
        else:
            return False
    return bound <= ATTRIBUTES_BYTES_MAX


def _is_short_json_scalar(value: object) -> bool:
    if value is None or type(value) is bool:
        return True
    if type(value) is int:
        return abs(value) < 10**18
    return type(value) is float and math.isfinite(value)


def validate_worker(profile: WorkerProfile, channels: Mapping[str, str]) -> None:
    check_id("worker.worker_id", profile.worker_id)
    check_attributes("worker.attributes", profile.attributes)
    reserved = RESERVED_WORKER_KEYS.intersection(profile.attributes)
    if reserved:
        key = sorted(reserved)[0]
        raise InvalidArgument(
            f"worker.attributes.{key}", "is reserved (set by the router from the worker's profile)"
        )
    if len(profile.skills) > SKILLS_PER_WORKER_MAX:
        raise InvalidArgument(
            "worker.skills",
            f"has {len(profile.skills)} skills, the limit is {SKILLS_PER_WORKER_MAX}",
        )
    for skill, level in profile.skills.items():
        check_id(f"worker.skills[{skill}]", skill)
        check_finite(f"worker.skills[{skill}]", level, 0.0, SKILL_LEVEL_MAX)
    if len(profile.languages) > LANGUAGES_PER_WORKER_MAX:
        raise InvalidArgument(
            "worker.languages",
            f"has {len(profile.languages)} languages, the limit is {LANGUAGES_PER_WORKER_MAX}",
        )
    for i, language in enumerate(profile.languages):
        check_id(f"worker.languages[{i}]", language)
    check_finite("worker.empathy", profile.empathy, 0.0, 1.0)
    for channel, capacity in profile.capacity_by_channel.items():
        field = f"worker.capacity_by_channel[{channel}]"
        if channel not in channels:
            raise InvalidArgument(field, f"unknown channel {channel!r}")
        if not 0 <= capacity <= CAPACITY_PER_CHANNEL_MAX:
            raise InvalidArgument(
                field, f"must be between 0 and {CAPACITY_PER_CHANNEL_MAX}, got {capacity}"
            )
    for channel, cost in profile.cost_by_channel.items():
        field = f"worker.cost_by_channel[{channel}]"
        if channel not in channels:
            raise InvalidArgument(field, f"unknown channel {channel!r}")
        check_finite(field, cost, 1e-6, 1e6)
    if profile.total_capacity is not None:
        check_finite("worker.total_capacity", profile.total_capacity, 1e-6, 1e6)
    if profile.activity is not None:
        check_id("worker.activity", profile.activity)


def validate_task(spec: TaskSpec, channels: Mapping[str, str], client_request_id: str) -> None:
    check_id("client_request_id", client_request_id, required=False)
    check_id("task.channel", spec.channel)
    if spec.channel not in channels:
        raise InvalidArgument("task.channel", f"unknown channel {spec.channel!r}")
    check_id("task.queue_id", spec.queue_id)
    check_attributes("task.attributes", spec.attributes)
    skill_count = len(spec.required_skills) + len(spec.preferred_skills)
    if skill_count > SKILLS_PER_TASK_MAX:
        raise InvalidArgument(
            "task.required_skills",
            f"the task names {skill_count} skills, the limit is {SKILLS_PER_TASK_MAX}",
        )
    for skill, level in spec.required_skills.items():
        check_id(f"task.required_skills[{skill}]", skill)
        check_finite(f"task.required_skills[{skill}]", level, 0.0, SKILL_LEVEL_MAX)
    for skill, weight in spec.preferred_skills.items():
        field = f"task.preferred_skills[{skill}]"
        check_id(field, skill)
        check_finite(field, weight, 0.0, 1e6)
        if weight <= 0:
            raise InvalidArgument(field, f"weight must be above 0, got {weight:g}")
    check_id("task.language", spec.language, required=False)
    check_priority("task.priority", spec.priority)
    check_id("task.customer_id", spec.customer_id, required=False)
    check_finite("task.sentiment", spec.sentiment, -1.0, 1.0)
    check_finite("task.ttl_s", spec.ttl_s, 0.0, TASK_TTL_S_MAX)
    check_id("task.preferred_worker_id", spec.preferred_worker_id, required=False)


def validate_queue(queue: QueueConfig) -> None:
    check_id("queue.queue_id", queue.queue_id)
    for name in ("skill", "empathy", "idle", "affinity", "load"):
        check_finite(f"queue.weights.{name}", getattr(queue.weights, name), 0.0, 1000.0)
    check_finite(
        "queue.reservation_timeout_s", queue.reservation_timeout_s, 0.001, RESERVATION_TIMEOUT_S_MAX
    )
    check_finite("queue.wrapup_s", queue.wrapup_s, 0.0, WRAPUP_S_MAX)
    if queue.depth_max < 0:
        raise InvalidArgument("queue.depth_max", f"must be 0 or more, got {queue.depth_max}")


def check_priority(field: str, priority: int) -> None:
    if not -PRIORITY_ABS_MAX <= priority <= PRIORITY_ABS_MAX:
        raise InvalidArgument(
            field, f"must be between {-PRIORITY_ABS_MAX} and {PRIORITY_ABS_MAX}, got {priority}"
        )
