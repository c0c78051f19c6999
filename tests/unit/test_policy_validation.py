"""Validation of queues' exception policies and calendars, routing policies and the tasks that
name them: each impossible setting is refused with the dotted path of the field at fault, and
the settings a contact center really uses pass."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable

import pytest

from router.core.errors import InvalidArgument
from router.core.limits import (
    ASSIGNMENT_WINDOW_S_MAX,
    EXCEPTION_RULES_PER_QUEUE_MAX,
    FILTERS_PER_POLICY_MAX,
    KNOWN_AGENT_WAIT_S_MAX,
    OFFER_WORKERS_MAX,
    PRIORITY_ABS_MAX,
    PRIORITY_AGING_PER_MIN_MAX,
    QUEUE_DEPTH_MAX,
    QUEUES_MAX,
    SKILL_LEVEL_MAX,
    SKILLS_PER_TASK_MAX,
    STEP_TIMEOUT_S_MAX,
    STEPS_PER_ROUTE_MAX,
    TASK_TTL_S_MAX,
)
from router.core.model import (
    DEFAULT_CHANNELS,
    ActionKind,
    BusinessHours,
    ExceptionRule,
    OpenHours,
    PolicyFilter,
    QueueAction,
    QueueConfig,
    Route,
    RoutingPolicy,
    RoutingStep,
    TaskSpec,
    TriggerKind,
    Weekday,
)
from router.core.validation import (
    check_queue_references,
    validate_policy,
    validate_queue,
    validate_task,
)

CHANNELS = {channel: channel for channel in DEFAULT_CHANNELS}
HOURS = BusinessHours(
    "Europe/Paris",
    (
        *(
            OpenHours(day, "08:00", "20:00")
            for day in (Weekday.MONDAY, Weekday.TUESDAY, Weekday.WEDNESDAY, Weekday.THURSDAY)
        ),
        OpenHours(Weekday.FRIDAY, "08:00", "18:00"),
    ),
    ("2026-12-25", "2027-01-01"),
)


def move(queue_id: str) -> QueueAction:
    return QueueAction(ActionKind.MOVE_TO_QUEUE, queue_id=queue_id)


def raise_by(delta: int) -> QueueAction:
    return QueueAction(ActionKind.RAISE_PRIORITY, priority_delta=delta)


def cancel(reason: str = "") -> QueueAction:
    return QueueAction(ActionKind.CANCEL, reason=reason)


def wait_rule(wait_s: float, action: QueueAction) -> ExceptionRule:
    return ExceptionRule(TriggerKind.WAIT_TIME, action, wait_s=wait_s)


def length_rule(queue_length: int, action: QueueAction) -> ExceptionRule:
    return ExceptionRule(TriggerKind.QUEUE_LENGTH, action, queue_length=queue_length)


def refused(check: Callable[[], object]) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as caught:
        check()
    error = caught.value
    assert error.message.startswith(f"{error.field}: ")
    return error


# == queues =====================================================================================

SALES = QueueConfig(
    "sales",
    "Sales",
    priority_aging_per_min=0.5,
    exception_rules=(
        wait_rule(60, raise_by(10)),
        wait_rule(300, move("sales-overflow")),
        length_rule(50, move("callback")),
        ExceptionRule(TriggerKind.STEPS_EXHAUSTED, cancel("nobody could take it")),
    ),
    business_hours=HOURS,
    after_hours_action=move("voicemail"),
    offer_workers_max=3,
)


@pytest.mark.parametrize(
    "queue",
    [
        SALES,
        QueueConfig("plain"),
        QueueConfig("batch", assignment_window_s=2.0),
        QueueConfig("closed-cancel", business_hours=HOURS, after_hours_action=cancel()),
        QueueConfig("hours-only", business_hours=HOURS),
        QueueConfig(
            "edges",
            priority_aging_per_min=PRIORITY_AGING_PER_MIN_MAX,
            offer_workers_max=OFFER_WORKERS_MAX,
            exception_rules=(
                wait_rule(TASK_TTL_S_MAX, raise_by(-2 * PRIORITY_ABS_MAX)),
                length_rule(QUEUE_DEPTH_MAX, raise_by(2 * PRIORITY_ABS_MAX)),
                wait_rule(0.001, cancel("x" * 256)),
            ),
        ),
        QueueConfig("window-max", assignment_window_s=ASSIGNMENT_WINDOW_S_MAX),
    ],
    ids=lambda queue: queue.queue_id,
)
def test_valid_queues(queue: QueueConfig) -> None:
    validate_queue(queue)


def rules(*exception_rules: ExceptionRule) -> QueueConfig:
    return dataclasses.replace(SALES, exception_rules=exception_rules)


BAD_QUEUES: list[tuple[str, QueueConfig, str]] = [
    ("aging NaN", dataclasses.replace(SALES, priority_aging_per_min=math.nan),
     "queue.priority_aging_per_min"),
    ("aging negative", dataclasses.replace(SALES, priority_aging_per_min=-0.1),
     "queue.priority_aging_per_min"),
    ("aging too fast", dataclasses.replace(SALES, priority_aging_per_min=1001.0),
     "queue.priority_aging_per_min"),
    ("too many rules", rules(*[wait_rule(i + 1, raise_by(1))
                               for i in range(EXCEPTION_RULES_PER_QUEUE_MAX + 1)]),
     "queue.exception_rules"),
    ("wait 0", rules(wait_rule(0, raise_by(1))), "queue.exception_rules[0].wait_s"),
    ("wait negative", rules(wait_rule(-5, raise_by(1))), "queue.exception_rules[0].wait_s"),
    ("wait inf", rules(wait_rule(math.inf, raise_by(1))), "queue.exception_rules[0].wait_s"),
    ("wait NaN", rules(wait_rule(math.nan, raise_by(1))), "queue.exception_rules[0].wait_s"),
    ("wait beyond ttl", rules(wait_rule(TASK_TTL_S_MAX + 1, raise_by(1))),
     "queue.exception_rules[0].wait_s"),
    ("wait rule with a length",
     rules(ExceptionRule(TriggerKind.WAIT_TIME, raise_by(1), wait_s=5, queue_length=3)),
     "queue.exception_rules[0].queue_length"),
    ("length 0", rules(wait_rule(5, raise_by(1)), length_rule(0, raise_by(1))),
     "queue.exception_rules[1].queue_length"),
    ("length negative", rules(length_rule(-1, raise_by(1))),
     "queue.exception_rules[0].queue_length"),
    ("length beyond depth", rules(length_rule(QUEUE_DEPTH_MAX + 1, raise_by(1))),
     "queue.exception_rules[0].queue_length"),
    ("length rule with a wait",
     rules(ExceptionRule(TriggerKind.QUEUE_LENGTH, raise_by(1), wait_s=5, queue_length=3)),
     "queue.exception_rules[0].wait_s"),
    ("steps exhausted with a wait",
     rules(ExceptionRule(TriggerKind.STEPS_EXHAUSTED, raise_by(1), wait_s=5)),
     "queue.exception_rules[0].wait_s"),
    ("steps exhausted with a length",
     rules(ExceptionRule(TriggerKind.STEPS_EXHAUSTED, raise_by(1), queue_length=5)),
     "queue.exception_rules[0].queue_length"),
    ("move without a queue", rules(wait_rule(5, move(""))),
     "queue.exception_rules[0].action.queue_id"),
    ("move to a bad id", rules(wait_rule(5, move("no spaces"))),
     "queue.exception_rules[0].action.queue_id"),
    ("move to itself", rules(wait_rule(5, raise_by(1)), wait_rule(9, move("sales"))),
     "queue.exception_rules[1].action.queue_id"),
    ("move with a delta",
     rules(wait_rule(5, QueueAction(ActionKind.MOVE_TO_QUEUE, "other", priority_delta=3))),
     "queue.exception_rules[0].action.priority_delta"),
    ("move with a reason",
     rules(wait_rule(5, QueueAction(ActionKind.MOVE_TO_QUEUE, "other", reason="why"))),
     "queue.exception_rules[0].action.reason"),
    ("raise by 0", rules(wait_rule(5, raise_by(0))),
     "queue.exception_rules[0].action.priority_delta"),
    ("raise too far", rules(wait_rule(5, raise_by(2 * PRIORITY_ABS_MAX + 1))),
     "queue.exception_rules[0].action.priority_delta"),
    ("cut too far", rules(wait_rule(5, raise_by(-2 * PRIORITY_ABS_MAX - 1))),
     "queue.exception_rules[0].action.priority_delta"),
    ("raise with a queue",
     rules(wait_rule(5, QueueAction(ActionKind.RAISE_PRIORITY, "other", priority_delta=3))),
     "queue.exception_rules[0].action.queue_id"),
    ("raise with a reason",
     rules(wait_rule(5, QueueAction(ActionKind.RAISE_PRIORITY, priority_delta=3, reason="r"))),
     "queue.exception_rules[0].action.reason"),
    ("cancel reason too long", rules(wait_rule(5, cancel("x" * 257))),
     "queue.exception_rules[0].action.reason"),
    ("cancel with a queue", rules(wait_rule(5, QueueAction(ActionKind.CANCEL, "other"))),
     "queue.exception_rules[0].action.queue_id"),
    ("cancel with a delta",
     rules(wait_rule(5, QueueAction(ActionKind.CANCEL, priority_delta=1))),
     "queue.exception_rules[0].action.priority_delta"),
    ("bad calendar", dataclasses.replace(SALES, business_hours=BusinessHours("Nowhere", ())),
     "queue.business_hours.time_zone"),
    ("calendar never open",
     dataclasses.replace(SALES, business_hours=BusinessHours("Europe/Paris", ())),
     "queue.business_hours.weekly"),
    ("calendar bad closes", dataclasses.replace(SALES, business_hours=dataclasses.replace(
        HOURS, weekly=(*HOURS.weekly, OpenHours(Weekday.SUNDAY, "10:00", "24:30")))),
     "queue.business_hours.weekly[5].closes"),
    ("after hours without hours",
     dataclasses.replace(SALES, business_hours=None),
     "queue.after_hours_action"),
    ("after hours raise",
     dataclasses.replace(SALES, after_hours_action=raise_by(5)),
     "queue.after_hours_action.kind"),
    ("after hours to itself",
     dataclasses.replace(SALES, after_hours_action=move("sales")),
     "queue.after_hours_action.queue_id"),
    ("after hours cancel with a queue",
     dataclasses.replace(SALES, after_hours_action=QueueAction(ActionKind.CANCEL, "x")),
     "queue.after_hours_action.queue_id"),
    ("offer to 0", dataclasses.replace(SALES, offer_workers_max=0), "queue.offer_workers_max"),
    ("offer to too many", dataclasses.replace(SALES, offer_workers_max=OFFER_WORKERS_MAX + 1),
     "queue.offer_workers_max"),
    ("window negative", dataclasses.replace(SALES, offer_workers_max=1, assignment_window_s=-1),
     "queue.assignment_window_s"),
    ("window NaN",
     dataclasses.replace(SALES, offer_workers_max=1, assignment_window_s=math.nan),
     "queue.assignment_window_s"),
    ("window too long",
     dataclasses.replace(SALES, offer_workers_max=1, assignment_window_s=61.0),
     "queue.assignment_window_s"),
    ("window with several offers", dataclasses.replace(SALES, assignment_window_s=1.0),
     "queue.offer_workers_max"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("queue", "field"),
    [(queue, field) for _, queue, field in BAD_QUEUES],
    ids=[name for name, _, _ in BAD_QUEUES],
)
def test_impossible_queue_settings_name_their_field(queue: QueueConfig, field: str) -> None:
    assert refused(lambda: validate_queue(queue)).field == field


def test_a_field_that_the_kind_does_not_use_is_named_in_the_message() -> None:
    queue = rules(ExceptionRule(TriggerKind.STEPS_EXHAUSTED, cancel(), wait_s=30))
    assert "not used by a steps_exhausted trigger" in refused(lambda: validate_queue(queue)).message
    queue = rules(wait_rule(5, QueueAction(ActionKind.CANCEL, "other")))
    assert "not used by a cancel action" in refused(lambda: validate_queue(queue)).message


def test_several_offers_with_an_assignment_window_says_why() -> None:
    queue = dataclasses.replace(SALES, assignment_window_s=1.0)
    assert "one worker" in refused(lambda: validate_queue(queue)).message


# == references between queues ==================================================================


def queues_of(*queues: QueueConfig) -> dict[str, QueueConfig]:
    return {queue.queue_id: queue for queue in queues}


def overflow_to(queue_id: str, target: str, wait_s: float = 60) -> QueueConfig:
    return QueueConfig(queue_id, exception_rules=(wait_rule(wait_s, move(target)),))


def test_targets_that_exist_pass() -> None:
    existing = queues_of(
        QueueConfig("sales-overflow"), QueueConfig("callback"), QueueConfig("voicemail")
    )
    check_queue_references(SALES, existing)
    check_queue_references(SALES, {**existing, "sales": QueueConfig("sales")})


def test_an_unknown_move_target() -> None:
    existing = queues_of(QueueConfig("sales-overflow"), QueueConfig("voicemail"))
    error = refused(lambda: check_queue_references(SALES, existing))
    assert error.field == "queue.exception_rules[2].action.queue_id"
    assert "unknown queue 'callback'" in error.message


def test_an_unknown_after_hours_target() -> None:
    existing = queues_of(QueueConfig("sales-overflow"), QueueConfig("callback"))
    error = refused(lambda: check_queue_references(SALES, existing))
    assert error.field == "queue.after_hours_action.queue_id"
    assert "unknown queue 'voicemail'" in error.message


def test_a_two_queue_cycle_shows_the_chain() -> None:
    existing = queues_of(QueueConfig("sales"), overflow_to("overflow", "sales"))
    error = refused(lambda: check_queue_references(overflow_to("sales", "overflow"), existing))
    assert error.field == "queue.exception_rules[0].action.queue_id"
    assert "overflow chain sales -> overflow -> sales is cyclic" in error.message


def test_a_longer_cycle_through_an_after_hours_move() -> None:
    existing = queues_of(
        overflow_to("a", "b"), overflow_to("b", "c"), overflow_to("c", "a"), QueueConfig("x")
    )
    new_a = QueueConfig(
        "a",
        exception_rules=(wait_rule(30, move("x")),),
        business_hours=HOURS,
        after_hours_action=move("b"),
    )
    check_queue_references(overflow_to("a", "x"), existing)  # replacing a's move breaks it
    error = refused(lambda: check_queue_references(new_a, existing))
    assert error.field == "queue.after_hours_action.queue_id"
    assert "overflow chain a -> b -> c -> a is cyclic" in error.message


def test_the_first_cyclic_action_in_order_is_named() -> None:
    existing = queues_of(overflow_to("p", "s"), overflow_to("q", "s"), QueueConfig("ok"))
    new_s = QueueConfig(
        "s",
        exception_rules=(
            wait_rule(10, move("ok")),
            wait_rule(20, move("q")),
            wait_rule(30, move("p")),
        ),
    )
    error = refused(lambda: check_queue_references(new_s, existing))
    assert error.field == "queue.exception_rules[1].action.queue_id"
    assert "s -> q -> s" in error.message


def test_diamonds_and_chains_that_end_are_not_cycles() -> None:
    existing = queues_of(
        overflow_to("left", "end"), overflow_to("right", "end"), QueueConfig("end")
    )
    top = QueueConfig(
        "top", exception_rules=(wait_rule(10, move("left")), wait_rule(20, move("right")))
    )
    check_queue_references(top, existing)


def test_the_replaced_version_of_the_queue_is_ignored() -> None:
    # The stored "sales" moves to "overflow" (which moves back): the new one cancels instead.
    existing = queues_of(overflow_to("sales", "overflow"), overflow_to("overflow", "archive"))
    existing["archive"] = QueueConfig("archive")
    check_queue_references(
        QueueConfig("sales", exception_rules=(wait_rule(5, cancel()),)), existing
    )
    closing = overflow_to("archive", "sales")
    error = refused(lambda: check_queue_references(closing, existing))
    assert "archive -> sales -> overflow -> archive" in error.message


def test_a_chain_as_long_as_the_queue_limit() -> None:
    ids = [f"q{i}" for i in range(QUEUES_MAX)]
    existing = queues_of(*(overflow_to(a, b) for a, b in itertools.pairwise(ids)))
    existing[ids[-1]] = QueueConfig(ids[-1])
    check_queue_references(overflow_to("first", ids[0]), existing)
    # Closing the chain into a ring: found without recursion, and shown whole.
    error = refused(lambda: check_queue_references(overflow_to(ids[-1], ids[0]), existing))
    shown = " -> ".join([ids[-1], *ids[:5], f"({QUEUES_MAX + 1 - 12} more)", *ids[-6:]])
    assert error.message.endswith(f"overflow chain {shown} is cyclic")


# == routing policies ===========================================================================

QUEUE_IDS = frozenset({"billing", "support", "sales"})

BULLSEYE = RoutingPolicy(
    "billing-bullseye",
    "Billing, experts first",
    filters=(
        PolicyFilter(
            "billing",
            "department == 'billing'",
            Route(
                "billing",
                (
                    RoutingStep(timeout_s=20, required_skills={"billing": 5}),
                    RoutingStep(timeout_s=40, required_skills={"billing": 3}, priority_delta=5),
                    RoutingStep(priority_delta=10),
                ),
            ),
        ),
    ),
)


@pytest.mark.parametrize(
    "policy",
    [
        BULLSEYE,
        dataclasses.replace(BULLSEYE, default_route=Route("support")),
        RoutingPolicy("default-only", default_route=Route("support")),
        RoutingPolicy(
            "everything",
            filters=(
                PolicyFilter("", "true", Route("sales")),
                PolicyFilter("x" * 128, "vip == true AND language IN ['fr', 'de']", Route("sales")),
            ),
        ),
        RoutingPolicy(
            "known-agent-first",
            filters=(
                PolicyFilter(
                    "returning",
                    "customer_tier == 'gold'",
                    Route(
                        "support",
                        (
                            RoutingStep(timeout_s=30, known_agent=True, skip_if_no_workers=True),
                            RoutingStep(timeout_s=60, worker_expression="languages HAS 'fr'"),
                            RoutingStep(timeout_s=120, worker_expression=""),
                        ),
                    ),
                ),
            ),
        ),
        RoutingPolicy(
            "edges",
            "d" * 256,
            filters=tuple(
                PolicyFilter(f"f{i}", "true", Route("sales")) for i in range(FILTERS_PER_POLICY_MAX)
            ),
            default_route=Route(
                "sales",
                tuple(
                    RoutingStep(
                        timeout_s=STEP_TIMEOUT_S_MAX,
                        required_skills={
                            f"s{k}": SKILL_LEVEL_MAX for k in range(SKILLS_PER_TASK_MAX)
                        },
                        priority_delta=2 * PRIORITY_ABS_MAX,
                    )
                    for _ in range(STEPS_PER_ROUTE_MAX)
                ),
            ),
        ),
    ],
    ids=lambda policy: policy.policy_id,
)
def test_valid_policies(policy: RoutingPolicy) -> None:
    validate_policy(policy, QUEUE_IDS)


def with_steps(*steps: RoutingStep) -> RoutingPolicy:
    route = dataclasses.replace(BULLSEYE.filters[0].route, steps=steps)
    return dataclasses.replace(
        BULLSEYE, filters=(dataclasses.replace(BULLSEYE.filters[0], route=route),)
    )


def with_filters(*filters: PolicyFilter) -> RoutingPolicy:
    return dataclasses.replace(BULLSEYE, filters=filters)


OK_FILTER = BULLSEYE.filters[0]
STEP0 = "policy.filters[0].route.steps[0]"
STEP1 = "policy.filters[0].route.steps[1]"

BAD_POLICIES: list[tuple[str, RoutingPolicy, str]] = [
    ("no id", dataclasses.replace(BULLSEYE, policy_id=""), "policy.policy_id"),
    ("bad id", dataclasses.replace(BULLSEYE, policy_id="a/b"), "policy.policy_id"),
    ("long id", dataclasses.replace(BULLSEYE, policy_id="p" * 129), "policy.policy_id"),
    ("long display name", dataclasses.replace(BULLSEYE, display_name="d" * 257),
     "policy.display_name"),
    ("nothing routes", RoutingPolicy("empty"), "policy.filters"),
    ("too many filters", with_filters(*[OK_FILTER] * (FILTERS_PER_POLICY_MAX + 1)),
     "policy.filters"),
    ("long filter name", with_filters(OK_FILTER, dataclasses.replace(OK_FILTER, name="n" * 129)),
     "policy.filters[1].name"),
    ("bad expression",
     with_filters(OK_FILTER, OK_FILTER, dataclasses.replace(OK_FILTER, expression="tier ==")),
     "policy.filters[2].expression"),
    ("empty expression", with_filters(dataclasses.replace(OK_FILTER, expression="")),
     "policy.filters[0].expression"),
    ("unknown queue", with_filters(dataclasses.replace(OK_FILTER, route=Route("nowhere"))),
     "policy.filters[0].route.queue_id"),
    ("no queue", with_filters(dataclasses.replace(OK_FILTER, route=Route(""))),
     "policy.filters[0].route.queue_id"),
    ("default to an unknown queue", dataclasses.replace(BULLSEYE, default_route=Route("gone")),
     "policy.default_route.queue_id"),
    ("default with a bad step", dataclasses.replace(
        BULLSEYE, default_route=Route("sales", (RoutingStep(timeout_s=-1),))),
     "policy.default_route.steps[0].timeout_s"),
    ("too many steps", with_steps(*[RoutingStep(timeout_s=1)] * (STEPS_PER_ROUTE_MAX + 1)),
     "policy.filters[0].route.steps"),
    ("negative timeout", with_steps(RoutingStep(timeout_s=-1)), f"{STEP0}.timeout_s"),
    ("NaN timeout", with_steps(RoutingStep(timeout_s=math.nan)), f"{STEP0}.timeout_s"),
    ("infinite timeout", with_steps(RoutingStep(timeout_s=math.inf)), f"{STEP0}.timeout_s"),
    ("timeout too long", with_steps(RoutingStep(timeout_s=STEP_TIMEOUT_S_MAX + 1)),
     f"{STEP0}.timeout_s"),
    ("middle step never ends",
     with_steps(RoutingStep(timeout_s=5), RoutingStep(), RoutingStep()), f"{STEP1}.timeout_s"),
    ("bad skill id", with_steps(RoutingStep(required_skills={"bad skill": 1})),
     f"{STEP0}.required_skills[bad skill]"),
    ("skill level too high",
     with_steps(RoutingStep(timeout_s=5), RoutingStep(required_skills={"billing": 5.5})),
     f"{STEP1}.required_skills[billing]"),
    ("negative skill level", with_steps(RoutingStep(required_skills={"billing": -1})),
     f"{STEP0}.required_skills[billing]"),
    ("NaN skill level", with_steps(RoutingStep(required_skills={"billing": math.nan})),
     f"{STEP0}.required_skills[billing]"),
    ("too many step skills", with_steps(RoutingStep(
        required_skills={f"s{k}": 1 for k in range(SKILLS_PER_TASK_MAX + 1)})),
     f"{STEP0}.required_skills"),
    ("bad worker expression",
     with_steps(RoutingStep(timeout_s=5), RoutingStep(worker_expression="skills.billing >")),
     f"{STEP1}.worker_expression"),
    ("blank worker expression",
     with_steps(RoutingStep(timeout_s=5), RoutingStep(worker_expression="  ")),
     f"{STEP1}.worker_expression"),
    ("step raises too far", with_steps(RoutingStep(priority_delta=2 * PRIORITY_ABS_MAX + 1)),
     f"{STEP0}.priority_delta"),
    ("step cuts too far", with_steps(RoutingStep(priority_delta=-2 * PRIORITY_ABS_MAX - 1)),
     f"{STEP0}.priority_delta"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("policy", "field"),
    [(policy, field) for _, policy, field in BAD_POLICIES],
    ids=[name for name, _, _ in BAD_POLICIES],
)
def test_impossible_policies_name_their_field(policy: RoutingPolicy, field: str) -> None:
    assert refused(lambda: validate_policy(policy, QUEUE_IDS)).field == field


def test_a_policy_with_neither_filters_nor_default_says_so() -> None:
    error = refused(lambda: validate_policy(RoutingPolicy("empty"), QUEUE_IDS))
    assert error.message == (
        "policy.filters: a policy needs at least one filter or a default route"
    )


def test_expression_errors_carry_the_position() -> None:
    policy = with_filters(OK_FILTER, dataclasses.replace(OK_FILTER, expression="tier =="))
    error = refused(lambda: validate_policy(policy, QUEUE_IDS))
    assert error.message.startswith("policy.filters[1].expression: position 7: ")
    policy = with_steps(RoutingStep(worker_expression="languages HAS"))
    error = refused(lambda: validate_policy(policy, QUEUE_IDS))
    assert error.field == f"{STEP0}.worker_expression"
    assert "position 13: " in error.message


def test_an_unknown_queue_is_named() -> None:
    policy = with_filters(dataclasses.replace(OK_FILTER, route=Route("nowhere")))
    assert "unknown queue 'nowhere'" in refused(lambda: validate_policy(policy, QUEUE_IDS)).message


def test_the_last_step_may_last_for_ever_or_time_out() -> None:
    validate_policy(with_steps(RoutingStep(timeout_s=5), RoutingStep()), QUEUE_IDS)
    validate_policy(with_steps(RoutingStep(timeout_s=5), RoutingStep(timeout_s=5)), QUEUE_IDS)


# == tasks ======================================================================================


@pytest.mark.parametrize(
    "spec",
    [
        TaskSpec("voice", queue_id="sales"),
        TaskSpec("chat", policy_id="billing-bullseye"),
        TaskSpec("chat", policy_id="p", known_agent_wait_s=KNOWN_AGENT_WAIT_S_MAX),
        TaskSpec("chat", queue_id="q", customer_id="c1", known_agent_wait_s=30),
    ],
)
def test_valid_tasks(spec: TaskSpec) -> None:
    validate_task(spec, CHANNELS, "req-1")


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        (TaskSpec("voice"), "task.queue_id", "give queue_id or policy_id"),
        (
            TaskSpec("voice", queue_id="q", policy_id="p"),
            "task.policy_id",
            "give queue_id or policy_id, not both",
        ),
        (TaskSpec("voice", queue_id="bad queue"), "task.queue_id", "not a valid id"),
        (TaskSpec("voice", policy_id="bad/policy"), "task.policy_id", "not a valid id"),
        (TaskSpec("voice", policy_id="p" * 129), "task.policy_id", "the limit is 128"),
        (TaskSpec("voice", "q", known_agent_wait_s=-1), "task.known_agent_wait_s", "between"),
        (
            TaskSpec("voice", "q", known_agent_wait_s=KNOWN_AGENT_WAIT_S_MAX + 1),
            "task.known_agent_wait_s",
            "between",
        ),
        (TaskSpec("voice", "q", known_agent_wait_s=math.nan), "task.known_agent_wait_s", "finite"),
    ],
)
def test_impossible_tasks(spec: TaskSpec, field: str, message: str) -> None:
    error = refused(lambda: validate_task(spec, CHANNELS, "req-1"))
    assert error.field == field
    assert message in error.message
