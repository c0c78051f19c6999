"""Validation of command payloads, before anything is changed (so a refused command leaves the
state untouched). Field names in errors follow the API's request fields, e.g.
`task.required_skills[billing]`."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from router.core.calendar import check_business_hours
from router.core.errors import QUOTED_CHARS_MAX, InvalidArgument, quoted, shown
from router.core.expressions import ExpressionError, parse
from router.core.limits import (
    ASSIGNMENT_WINDOW_S_MAX,
    ATTRIBUTES_BYTES_MAX,
    ATTRIBUTES_DEPTH_MAX,
    CANCEL_REASON_CHARS_MAX,
    CAPACITY_PER_CHANNEL_MAX,
    DISPLAY_NAME_CHARS_MAX,
    EXCEPTION_RULES_PER_QUEUE_MAX,
    FILTER_NAME_CHARS_MAX,
    FILTERS_PER_POLICY_MAX,
    ID_CHARS_MAX,
    KNOWN_AGENT_WAIT_S_MAX,
    LANGUAGES_PER_WORKER_MAX,
    OFFER_WORKERS_MAX,
    PAUSE_MAX_S_MAX,
    PRIORITY_ABS_MAX,
    PRIORITY_AGING_PER_MIN_MAX,
    PRIORITY_DELTA_ABS_MAX,
    QUEUE_DEPTH_MAX,
    RESERVATION_TIMEOUT_S_MAX,
    SAFE_INTEGER_MAX,
    SKILL_LEVEL_MAX,
    SKILLS_PER_TASK_MAX,
    SKILLS_PER_WORKER_MAX,
    STEP_TIMEOUT_S_MAX,
    STEPS_PER_ROUTE_MAX,
    TASK_TTL_S_MAX,
    WRAPUP_S_MAX,
)
from router.core.model import (
    ActionKind,
    QueueAction,
    QueueConfig,
    Route,
    RoutingPolicy,
    TaskSpec,
    TriggerKind,
    WorkerProfile,
)

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
            f"{quoted(value)} is not a valid id (letters, digits and _ . : @ + -, starting with a "
            "letter or digit)",
        )


def check_finite(field: str, value: float, low: float, high: float) -> None:
    if not math.isfinite(value):
        raise InvalidArgument(field, f"must be a finite number, got {value}")
    if not low <= value <= high:
        raise InvalidArgument(field, f"must be between {low:g} and {high:g}, got {value:g}")


def check_attributes(field: str, attributes: Mapping[str, Any]) -> None:
    """Refuse attributes that are not a JSON document within the limits: string keys, finite
    numbers, at most `ATTRIBUTES_DEPTH_MAX` levels of objects and arrays, and at most
    `ATTRIBUTES_BYTES_MAX` bytes in the canonical encoding (see `ATTRIBUTES_BYTES_MAX`). The
    error names the value's path, e.g. `task.attributes.a.b[3]`."""
    if _surely_small_flat_json(attributes):
        return
    size = _json_bytes(field, attributes, 1)
    if size > ATTRIBUTES_BYTES_MAX:
        raise InvalidArgument(
            field, f"is {size} bytes as JSON, the limit is {ATTRIBUTES_BYTES_MAX} bytes"
        )


def canonical_number(number: float) -> int | float:
    """The number as the canonical encoding of attributes writes it: an integral value within
    +-`SAFE_INTEGER_MAX` as an integer, any other as the float it is."""
    if number.is_integer() and abs(number) <= SAFE_INTEGER_MAX:
        return int(number)
    return number


def _json_bytes(path: str, value: object, depth: int) -> int:
    """Bytes of `value` in the canonical encoding, checking it on the way (depth first, so that
    the deepest path named is the first too deep)."""
    if isinstance(value, Mapping | list | tuple) and depth > ATTRIBUTES_DEPTH_MAX:
        raise InvalidArgument(
            path, f"nests deeper than {ATTRIBUTES_DEPTH_MAX} levels of objects and arrays"
        )
    if isinstance(value, Mapping):
        size = 1 + max(1, len(value))  # braces and commas
        for key, item in value.items():
            if type(key) is not str:
                raise InvalidArgument(path, f"has a key that is not a string: {quoted(repr(key))}")
            size += _string_bytes(key) + 1 + _json_bytes(_member_path(path, key), item, depth + 1)
        return size
    if isinstance(value, list | tuple):
        size = 1 + max(1, len(value))
        for index, item in enumerate(value):
            size += _json_bytes(f"{path}[{index}]", item, depth + 1)
        return size
    if type(value) is str:
        return _string_bytes(value)
    if value is None or type(value) is bool:
        return 4 if value in (None, True) else 5
    if type(value) is int:
        if abs(value) > SAFE_INTEGER_MAX:
            raise InvalidArgument(
                path, f"must be an integer within +-2**53, got one of {value.bit_length()} bits"
            )
        return len(str(value))
    if type(value) is float:
        if not math.isfinite(value):
            raise InvalidArgument(path, f"must be a finite number, got {value}")
        return len(repr(canonical_number(value)))
    raise InvalidArgument(path, f"is not a JSON value (a {type(value).__name__})")


_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


def _member_path(path: str, key: str) -> str:
    """The path of an object's member: `path.key`, or `path["a key"]` when the key is not a
    plain name."""
    if len(key) <= QUOTED_CHARS_MAX and _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{quoted(key)}]"


def _string_bytes(text: str) -> int:
    # surrogatepass: a lone surrogate (never from the API, whose strings are UTF-8) is measured,
    # not a crash.
    return len(json.dumps(text, ensure_ascii=False).encode("utf-8", "surrogatepass"))


_JSON_BYTES_PER_CHAR_MAX = 6
"""A character takes at most six bytes in JSON (a \\uXXXX escape)."""
_JSON_SCALAR_BYTES_MAX = 32
"""Longest JSON text of a bool, null, finite float or safe integer."""


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
        return abs(value) <= SAFE_INTEGER_MAX
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
        check_id(f"worker.skills[{shown(skill)}]", skill)
        check_finite(f"worker.skills[{shown(skill)}]", level, 0.0, SKILL_LEVEL_MAX)
    if len(profile.languages) > LANGUAGES_PER_WORKER_MAX:
        raise InvalidArgument(
            "worker.languages",
            f"has {len(profile.languages)} languages, the limit is {LANGUAGES_PER_WORKER_MAX}",
        )
    for i, language in enumerate(profile.languages):
        check_id(f"worker.languages[{i}]", language)
    check_finite("worker.empathy", profile.empathy, 0.0, 1.0)
    for channel, capacity in profile.capacity_by_channel.items():
        field = f"worker.capacity_by_channel[{shown(channel)}]"
        check_id(field, channel)
        if channel not in channels:
            raise InvalidArgument(field, f"unknown channel {channel!r}")
        if not 0 <= capacity <= CAPACITY_PER_CHANNEL_MAX:
            raise InvalidArgument(
                field, f"must be between 0 and {CAPACITY_PER_CHANNEL_MAX}, got {capacity}"
            )
    for channel, cost in profile.cost_by_channel.items():
        field = f"worker.cost_by_channel[{shown(channel)}]"
        check_id(field, channel)
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
    if not spec.queue_id and not spec.policy_id:
        raise InvalidArgument("task.queue_id", "give queue_id or policy_id")
    if spec.queue_id and spec.policy_id:
        raise InvalidArgument("task.policy_id", "give queue_id or policy_id, not both")
    check_id("task.queue_id", spec.queue_id, required=False)
    check_id("task.policy_id", spec.policy_id, required=False)
    check_attributes("task.attributes", spec.attributes)
    skill_count = len(spec.required_skills) + len(spec.preferred_skills)
    if skill_count > SKILLS_PER_TASK_MAX:
        raise InvalidArgument(
            "task.required_skills",
            f"the task names {skill_count} skills, the limit is {SKILLS_PER_TASK_MAX}",
        )
    for skill, level in spec.required_skills.items():
        check_id(f"task.required_skills[{shown(skill)}]", skill)
        check_finite(f"task.required_skills[{shown(skill)}]", level, 0.0, SKILL_LEVEL_MAX)
    for skill, weight in spec.preferred_skills.items():
        field = f"task.preferred_skills[{shown(skill)}]"
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
    check_finite("task.known_agent_wait_s", spec.known_agent_wait_s, 0.0, KNOWN_AGENT_WAIT_S_MAX)


def validate_queue(queue: QueueConfig) -> None:
    """Check a queue on its own; `check_queue_references` checks it against the other queues."""
    check_id("queue.queue_id", queue.queue_id)
    for name in ("skill", "empathy", "idle", "affinity", "load"):
        check_finite(f"queue.weights.{name}", getattr(queue.weights, name), 0.0, 1000.0)
    check_finite(
        "queue.reservation_timeout_s", queue.reservation_timeout_s, 0.001, RESERVATION_TIMEOUT_S_MAX
    )
    check_finite("queue.wrapup_s", queue.wrapup_s, 0.0, WRAPUP_S_MAX)
    if queue.depth_max < 0:
        raise InvalidArgument("queue.depth_max", f"must be 0 or more, got {queue.depth_max}")
    check_finite(
        "queue.priority_aging_per_min",
        queue.priority_aging_per_min,
        0.0,
        PRIORITY_AGING_PER_MIN_MAX,
    )
    _check_exception_rules(queue)
    if queue.business_hours is not None:
        check_business_hours("queue.business_hours", queue.business_hours)
    if queue.after_hours_action is not None:
        field = "queue.after_hours_action"
        if queue.business_hours is None:
            raise InvalidArgument(
                field, "needs business_hours (a queue without them is always open)"
            )
        if queue.after_hours_action.kind is ActionKind.RAISE_PRIORITY:
            raise InvalidArgument(
                f"{field}.kind", "must be move_to_queue or cancel, got raise_priority"
            )
        _check_action(field, queue.after_hours_action, queue.queue_id)
    if not 1 <= queue.offer_workers_max <= OFFER_WORKERS_MAX:
        raise InvalidArgument(
            "queue.offer_workers_max",
            f"must be between 1 and {OFFER_WORKERS_MAX}, got {queue.offer_workers_max}",
        )
    check_finite(
        "queue.assignment_window_s", queue.assignment_window_s, 0.0, ASSIGNMENT_WINDOW_S_MAX
    )
    check_finite("queue.pause_max_s", queue.pause_max_s, 1.0, PAUSE_MAX_S_MAX)
    if queue.offer_workers_max > 1 and queue.assignment_window_s > 0:
        raise InvalidArgument(
            "queue.offer_workers_max",
            "must be 1 when assignment_window_s is set (an assignment round offers each task "
            f"to one worker), got {queue.offer_workers_max}",
        )


def _check_exception_rules(queue: QueueConfig) -> None:
    rules = queue.exception_rules
    if len(rules) > EXCEPTION_RULES_PER_QUEUE_MAX:
        raise InvalidArgument(
            "queue.exception_rules",
            f"has {len(rules)} rules, the limit is {EXCEPTION_RULES_PER_QUEUE_MAX}",
        )
    for i, rule in enumerate(rules):
        field = f"queue.exception_rules[{i}]"
        trigger = rule.trigger.value
        if rule.trigger is TriggerKind.WAIT_TIME:
            check_finite(f"{field}.wait_s", rule.wait_s, 0.0, TASK_TTL_S_MAX)
            if rule.wait_s <= 0:
                raise InvalidArgument(f"{field}.wait_s", f"must be above 0, got {rule.wait_s:g}")
        elif rule.wait_s != 0:
            raise InvalidArgument(f"{field}.wait_s", f"is not used by a {trigger} trigger")
        if rule.trigger is TriggerKind.QUEUE_LENGTH:
            if not 1 <= rule.queue_length <= QUEUE_DEPTH_MAX:
                raise InvalidArgument(
                    f"{field}.queue_length",
                    f"must be between 1 and {QUEUE_DEPTH_MAX}, got {rule.queue_length}",
                )
        elif rule.queue_length != 0:
            raise InvalidArgument(f"{field}.queue_length", f"is not used by a {trigger} trigger")
        _check_action(f"{field}.action", rule.action, queue.queue_id)


def _check_action(field: str, action: QueueAction, own_queue_id: str) -> None:
    kind = action.kind.value
    if action.kind is ActionKind.MOVE_TO_QUEUE:
        check_id(f"{field}.queue_id", action.queue_id)
        if action.queue_id == own_queue_id:
            raise InvalidArgument(
                f"{field}.queue_id", f"a task cannot move to its own queue {own_queue_id!r}"
            )
    elif action.queue_id:
        raise InvalidArgument(f"{field}.queue_id", f"is not used by a {kind} action")
    if action.kind is ActionKind.RAISE_PRIORITY:
        if action.priority_delta == 0:
            raise InvalidArgument(f"{field}.priority_delta", "must not be 0")
        check_priority_delta(f"{field}.priority_delta", action.priority_delta)
    elif action.priority_delta != 0:
        raise InvalidArgument(f"{field}.priority_delta", f"is not used by a {kind} action")
    if action.kind is ActionKind.CANCEL:
        check_text(f"{field}.reason", action.reason, CANCEL_REASON_CHARS_MAX)
    elif action.reason:
        raise InvalidArgument(f"{field}.reason", f"is not used by a {kind} action")


def check_queue_references(queue: QueueConfig, queues: Mapping[str, QueueConfig]) -> None:
    """Check `queue` (already through `validate_queue`) against the workspace's `queues`, which
    it joins or replaces: every queue it moves tasks to exists, and no overflow chain through it
    comes back to where it started (a task would move round it for ever)."""
    for field, target in move_targets(queue):
        if target not in queues and target != queue.queue_id:
            raise InvalidArgument(field, f"unknown queue {target!r}")
    # The other queues' chains were acyclic before, so a new cycle passes through `queue`: look
    # for a way back to it from each of its targets, depth first, in the order actions are given.
    for field, target in move_targets(queue):
        chain = _chain_back(target, queue.queue_id, queue, queues)
        if chain is not None:
            shown = _show_chain([queue.queue_id, *chain])
            raise InvalidArgument(field, f"overflow chain {shown} is cyclic")


_CHAIN_SHOWN_MAX = 12
"""Longest chain shown whole in an error; a longer one keeps its ends."""


def _show_chain(chain: list[str]) -> str:
    if len(chain) > _CHAIN_SHOWN_MAX:
        half = _CHAIN_SHOWN_MAX // 2
        hidden = len(chain) - 2 * half
        chain = [*chain[:half], f"({hidden} more)", *chain[-half:]]
    return " -> ".join(chain)


def move_targets(queue: QueueConfig) -> Iterator[tuple[str, str]]:
    """(field, target queue id) of each move_to_queue action of the queue, in order."""
    for i, rule in enumerate(queue.exception_rules):
        if rule.action.kind is ActionKind.MOVE_TO_QUEUE:
            yield f"queue.exception_rules[{i}].action.queue_id", rule.action.queue_id
    action = queue.after_hours_action
    if action is not None and action.kind is ActionKind.MOVE_TO_QUEUE:
        yield "queue.after_hours_action.queue_id", action.queue_id


def _chain_back(
    start: str, goal: str, queue: QueueConfig, queues: Mapping[str, QueueConfig]
) -> list[str] | None:
    """The queues from `start` to `goal` along move targets (both included), or None. `queue`
    stands for its id in place of the version in `queues`."""
    if start == goal:
        return [goal]
    path = [start]
    seen = {start}
    # One iterator of targets per queue on the path: an explicit stack, since a chain may be as
    # long as the number of queues (QUEUES_MAX), beyond Python's recursion limit.
    stack = [_targets_of(start, queue, queues)]
    while stack:
        target = next(stack[-1], None)
        if target is None:
            stack.pop()
            path.pop()
            continue
        if target == goal:
            return [*path, goal]
        if target in seen:
            continue
        seen.add(target)
        path.append(target)
        stack.append(_targets_of(target, queue, queues))
    return None


def _targets_of(
    queue_id: str, queue: QueueConfig, queues: Mapping[str, QueueConfig]
) -> Iterator[str]:
    current = queue if queue_id == queue.queue_id else queues.get(queue_id)
    if current is None:
        return iter(())
    return (target for _, target in move_targets(current))


def validate_policy(policy: RoutingPolicy, queue_ids: Collection[str]) -> None:
    """Check a routing policy; `queue_ids` are the workspace's queues, which its routes name."""
    check_id("policy.policy_id", policy.policy_id)
    check_text("policy.display_name", policy.display_name, DISPLAY_NAME_CHARS_MAX)
    if not policy.filters and policy.default_route is None:
        raise InvalidArgument(
            "policy.filters", "a policy needs at least one filter or a default route"
        )
    if len(policy.filters) > FILTERS_PER_POLICY_MAX:
        raise InvalidArgument(
            "policy.filters",
            f"has {len(policy.filters)} filters, the limit is {FILTERS_PER_POLICY_MAX}",
        )
    for i, policy_filter in enumerate(policy.filters):
        field = f"policy.filters[{i}]"
        check_text(f"{field}.name", policy_filter.name, FILTER_NAME_CHARS_MAX)
        if not policy_filter.expression.strip():
            raise InvalidArgument(
                f"{field}.expression",
                "position 0: empty expression (write true to match every task)",
            )
        check_expression(f"{field}.expression", policy_filter.expression)
        _check_route(f"{field}.route", policy_filter.route, queue_ids)
    if policy.default_route is not None:
        _check_route("policy.default_route", policy.default_route, queue_ids)


def _check_route(field: str, route: Route, queue_ids: Collection[str]) -> None:
    check_id(f"{field}.queue_id", route.queue_id)
    if route.queue_id not in queue_ids:
        raise InvalidArgument(f"{field}.queue_id", f"unknown queue {route.queue_id!r}")
    if len(route.steps) > STEPS_PER_ROUTE_MAX:
        raise InvalidArgument(
            f"{field}.steps",
            f"has {len(route.steps)} steps, the limit is {STEPS_PER_ROUTE_MAX}",
        )
    last = len(route.steps) - 1
    for j, step in enumerate(route.steps):
        step_field = f"{field}.steps[{j}]"
        check_finite(f"{step_field}.timeout_s", step.timeout_s, 0.0, STEP_TIMEOUT_S_MAX)
        if j < last and step.timeout_s <= 0:
            raise InvalidArgument(
                f"{step_field}.timeout_s",
                "must be above 0 on every step but the last (the steps after one without a "
                "timeout would never apply)",
            )
        if len(step.required_skills) > SKILLS_PER_TASK_MAX:
            raise InvalidArgument(
                f"{step_field}.required_skills",
                f"names {len(step.required_skills)} skills, the limit is {SKILLS_PER_TASK_MAX}",
            )
        for skill, level in step.required_skills.items():
            skill_field = f"{step_field}.required_skills[{shown(skill)}]"
            check_id(skill_field, skill)
            check_finite(skill_field, level, 0.0, SKILL_LEVEL_MAX)
        if step.worker_expression:
            check_expression(f"{step_field}.worker_expression", step.worker_expression)
        check_priority_delta(f"{step_field}.priority_delta", step.priority_delta)


def check_expression(field: str, source: str) -> None:
    """Raise InvalidArgument if `source` does not parse; the message carries the parser's
    "position N: reason", which points into the field's text."""
    try:
        parse(source)
    except ExpressionError as error:
        raise InvalidArgument(field, str(error)) from None


def check_text(field: str, value: str, chars_max: int) -> None:
    if len(value) > chars_max:
        raise InvalidArgument(field, f"is {len(value)} characters long, the limit is {chars_max}")


def check_priority_delta(field: str, delta: int) -> None:
    if not -PRIORITY_DELTA_ABS_MAX <= delta <= PRIORITY_DELTA_ABS_MAX:
        raise InvalidArgument(
            field,
            f"must be between {-PRIORITY_DELTA_ABS_MAX} and {PRIORITY_DELTA_ABS_MAX}, got {delta}",
        )


def check_priority(field: str, priority: int) -> None:
    if not -PRIORITY_ABS_MAX <= priority <= PRIORITY_ABS_MAX:
        raise InvalidArgument(
            field, f"must be between {-PRIORITY_ABS_MAX} and {PRIORITY_ABS_MAX}, got {priority}"
        )
