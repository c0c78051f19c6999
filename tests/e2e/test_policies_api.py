"""Routing policies, exception rules and business hours through the real gRPC API: what an
operator sets is what it reads back, a refused change leaves the previous version in place, and a
task created with a policy reports where the policy put it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from tests.e2e.raw import Stubs


@pytest.fixture
def stubs(channel: grpc.Channel) -> Stubs:
    stubs = Stubs.of(channel)
    for queue_id in ("support", "sales", "overflow"):
        stubs.queue(queue_id)
    return stubs


def upsert_queue(stubs: Stubs, queue: pb.Queue) -> apb.UpsertQueueResponse:
    return stubs.admin.UpsertQueue(apb.UpsertQueueRequest(queue=queue), timeout=5)


def get_queue(stubs: Stubs, queue_id: str) -> pb.Queue:
    return stubs.admin.GetQueue(apb.GetQueueRequest(queue_id=queue_id), timeout=5).queue


def upsert_policy(stubs: Stubs, policy: pb.RoutingPolicy) -> apb.UpsertRoutingPolicyResponse:
    request = apb.UpsertRoutingPolicyRequest(policy=policy)
    return stubs.admin.UpsertRoutingPolicy(request, timeout=5)


def get_policy(stubs: Stubs, policy_id: str) -> pb.RoutingPolicy:
    request = apb.GetRoutingPolicyRequest(policy_id=policy_id)
    return stubs.admin.GetRoutingPolicy(request, timeout=5).policy


def list_policies(stubs: Stubs) -> list[pb.RoutingPolicy]:
    return list(
        stubs.admin.ListRoutingPolicies(apb.ListRoutingPoliciesRequest(), timeout=5).policies
    )


def digest(stubs: Stubs) -> str:
    return stubs.admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=5).digest


def refused(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as raised:
        call()
    return raised.value


def move_to(queue_id: str) -> pb.QueueAction:
    return pb.QueueAction(kind=pb.QUEUE_ACTION_KIND_MOVE_TO_QUEUE, queue_id=queue_id)


def wait_rule(wait_s: float, action: pb.QueueAction) -> pb.ExceptionRule:
    return pb.ExceptionRule(trigger=pb.EXCEPTION_TRIGGER_WAIT_TIME, wait_s=wait_s, action=action)


def office_hours(opens: str = "09:00", closes: str = "17:00") -> pb.BusinessHours:
    weekdays = [
        pb.DAY_OF_WEEK_MONDAY,
        pb.DAY_OF_WEEK_TUESDAY,
        pb.DAY_OF_WEEK_WEDNESDAY,
        pb.DAY_OF_WEEK_THURSDAY,
        pb.DAY_OF_WEEK_FRIDAY,
    ]
    return pb.BusinessHours(
        time_zone="Europe/Paris",
        weekly=[pb.OpenHours(day=day, opens=opens, closes=closes) for day in weekdays]
        + [pb.OpenHours(day=pb.DAY_OF_WEEK_SATURDAY, opens="10:00", closes="13:00")],
        holidays=["2025-12-25", "2026-01-01"],
    )


def full_queue(**fields: Any) -> pb.Queue:
    """A queue with every field set to a non-default value (but one of offer_workers_max and
    assignment_window_s, which do not go together)."""
    queue = pb.Queue(
        queue_id="billing",
        display_name="Billing",
        target_expression="skills.billing >= 1",
        weights=pb.ScoringWeights(skill=2.0, empathy=0.5, idle=0.2, affinity=0.4, load=0.3),
        reservation_timeout_s=20.0,
        wrapup_s=15.0,
        order=pb.QUEUE_ORDER_LIFO,
        depth_max=500,
        priority_aging_per_min=1.5,
        exception_rules=[
            wait_rule(
                120,
                pb.QueueAction(kind=pb.QUEUE_ACTION_KIND_RAISE_PRIORITY, priority_delta=10),
            ),
            wait_rule(300, move_to("overflow")),
            pb.ExceptionRule(
                trigger=pb.EXCEPTION_TRIGGER_QUEUE_LENGTH,
                queue_length=50,
                action=pb.QueueAction(kind=pb.QUEUE_ACTION_KIND_CANCEL, reason="queue full"),
            ),
            pb.ExceptionRule(
                trigger=pb.EXCEPTION_TRIGGER_STEPS_EXHAUSTED, action=move_to("overflow")
            ),
        ],
        business_hours=office_hours(),
        after_hours_action=move_to("overflow"),
        offer_workers_max=3,
    )
    for name, value in fields.items():
        setattr(queue, name, value)
    return queue


def bullseye_policy(policy_id: str = "inbound", vip_queue: str = "support") -> pb.RoutingPolicy:
    """VIPs wait for their own agent, then an expert, then any billing agent; buyers go to
    sales; everyone else to support."""
    return pb.RoutingPolicy(
        policy_id=policy_id,
        display_name="Inbound calls",
        filters=[
            pb.PolicyFilter(
                name="vip",
                expression="customer.tier IN ['gold', 'platinum']",
                route=pb.Route(
                    queue_id=vip_queue,
                    steps=[
                        pb.RoutingStep(timeout_s=20, known_agent=True, skip_if_no_workers=True),
                        pb.RoutingStep(
                            timeout_s=30, required_skills={"billing": 4.0}, priority_delta=5
                        ),
                        pb.RoutingStep(
                            timeout_s=60,
                            required_skills={"billing": 2.0, "accounts": 1.5},
                            worker_expression="languages HAS 'en'",
                            priority_delta=10,
                        ),
                        pb.RoutingStep(priority_delta=20),
                    ],
                ),
            ),
            pb.PolicyFilter(
                name="buyers",
                expression="intent == 'buy'",
                route=pb.Route(
                    queue_id="sales",
                    steps=[pb.RoutingStep(timeout_s=30, priority_delta=5), pb.RoutingStep()],
                ),
            ),
        ],
        default_route=pb.Route(queue_id="support"),
    )


# -- queues ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sent",
    [full_queue(), full_queue(offer_workers_max=1, assignment_window_s=2.0)],
    ids=["offer-to-several", "assignment-rounds"],
)
def test_queue_with_every_new_field_round_trips(stubs: Stubs, sent: pb.Queue) -> None:
    upserted = upsert_queue(stubs, sent)
    assert upserted.created
    assert upserted.queue == sent
    assert get_queue(stubs, "billing") == sent
    listed = stubs.admin.ListQueues(apb.ListQueuesRequest(), timeout=5).queues
    assert [q for q in listed if q.queue_id == "billing"] == [sent]

    again = upsert_queue(stubs, sent)
    assert not again.created and again.queue == sent


def test_queue_defaults_read_back_explicitly(stubs: Stubs) -> None:
    stored = upsert_queue(stubs, pb.Queue(queue_id="plain")).queue
    assert stored.offer_workers_max == 1  # 0 on input means 1
    assert stored.priority_aging_per_min == 0 and stored.assignment_window_s == 0
    assert not stored.HasField("business_hours")
    assert not stored.HasField("after_hours_action")
    assert list(stored.exception_rules) == []
    assert get_queue(stubs, "plain") == stored


@pytest.mark.parametrize(
    ("queue", "field_name"),
    [
        (
            pb.Queue(
                queue_id="support",
                exception_rules=[pb.ExceptionRule(wait_s=60, action=move_to("overflow"))],
            ),
            "queue.exception_rules[0].trigger",
        ),
        (
            pb.Queue(
                queue_id="support",
                exception_rules=[
                    wait_rule(60, move_to("overflow")),
                    pb.ExceptionRule(trigger=pb.EXCEPTION_TRIGGER_WAIT_TIME, wait_s=90),
                ],
            ),
            "queue.exception_rules[1].action",
        ),
        (
            pb.Queue(queue_id="support", after_hours_action=pb.QueueAction(reason="closed")),
            "queue.after_hours_action.kind",
        ),
        (
            pb.Queue(
                queue_id="support",
                business_hours=pb.BusinessHours(
                    time_zone="UTC", weekly=[pb.OpenHours(opens="09:00", closes="17:00")]
                ),
            ),
            "queue.business_hours.weekly[0].day",
        ),
    ],
)
def test_unspecified_enums_are_invalid_argument(
    stubs: Stubs, queue: pb.Queue, field_name: str
) -> None:
    before = get_queue(stubs, "support")
    error = refused(lambda: upsert_queue(stubs, queue))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"{field_name}: is required" in (error.details() or "")
    assert get_queue(stubs, "support") == before


def test_cyclic_overflow_is_refused_and_nothing_changes(stubs: Stubs) -> None:
    first = pb.Queue(queue_id="sales", exception_rules=[wait_rule(60, move_to("overflow"))])
    stored = upsert_queue(stubs, first).queue
    before_overflow = get_queue(stubs, "overflow")
    before_digest = digest(stubs)

    cyclic = pb.Queue(queue_id="overflow", exception_rules=[wait_rule(60, move_to("sales"))])
    error = refused(lambda: upsert_queue(stubs, cyclic))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "queue.exception_rules" in (error.details() or "")

    assert get_queue(stubs, "overflow") == before_overflow
    assert get_queue(stubs, "sales") == stored
    assert digest(stubs) == before_digest


def test_impossible_business_hours_are_refused_and_nothing_changes(stubs: Stubs) -> None:
    stored = upsert_queue(stubs, pb.Queue(queue_id="support", business_hours=office_hours()))
    before_digest = digest(stubs)

    backwards = pb.Queue(queue_id="support", business_hours=office_hours("17:00", "09:00"))
    error = refused(lambda: upsert_queue(stubs, backwards))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "queue.business_hours" in (error.details() or "")

    assert get_queue(stubs, "support") == stored.queue
    assert digest(stubs) == before_digest


# -- routing policies -----------------------------------------------------------------------------


def test_bullseye_policy_round_trips(stubs: Stubs) -> None:
    sent = bullseye_policy()
    upserted = upsert_policy(stubs, sent)
    assert upserted.created
    assert upserted.policy == sent
    assert get_policy(stubs, "inbound") == sent

    again = upsert_policy(stubs, sent)
    assert not again.created and again.policy == sent


def test_policy_without_default_route_reads_back_without_one(stubs: Stubs) -> None:
    sent = bullseye_policy()
    sent.ClearField("default_route")
    assert upsert_policy(stubs, sent).policy == sent
    stored = get_policy(stubs, "inbound")
    assert not stored.HasField("default_route")
    assert stored == sent


def test_list_routing_policies_in_id_order(stubs: Stubs) -> None:
    assert list_policies(stubs) == []
    first = bullseye_policy("inbound")
    second = bullseye_policy("callbacks", vip_queue="overflow")
    upsert_policy(stubs, first)
    upsert_policy(stubs, second)
    assert list_policies(stubs) == [second, first]

    first.display_name = "Inbound calls, v2"
    upsert_policy(stubs, first)
    assert list_policies(stubs) == [second, first]


def test_delete_routing_policy(stubs: Stubs) -> None:
    upsert_policy(stubs, bullseye_policy("inbound"))
    upsert_policy(stubs, bullseye_policy("callbacks"))
    stubs.admin.DeleteRoutingPolicy(apb.DeleteRoutingPolicyRequest(policy_id="inbound"), timeout=5)

    error = refused(lambda: get_policy(stubs, "inbound"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert [p.policy_id for p in list_policies(stubs)] == ["callbacks"]
    delete_again = apb.DeleteRoutingPolicyRequest(policy_id="inbound")
    error = refused(lambda: stubs.admin.DeleteRoutingPolicy(delete_again, timeout=5))
    assert error.code() == grpc.StatusCode.NOT_FOUND


def test_policy_naming_an_unknown_queue_is_refused(stubs: Stubs) -> None:
    previous = upsert_policy(stubs, bullseye_policy()).policy
    before_digest = digest(stubs)

    error = refused(lambda: upsert_policy(stubs, bullseye_policy(vip_queue="nope")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "nope" in (error.details() or "")

    assert get_policy(stubs, "inbound") == previous
    assert digest(stubs) == before_digest


def test_new_policy_naming_an_unknown_queue_is_not_created(stubs: Stubs) -> None:
    error = refused(lambda: upsert_policy(stubs, bullseye_policy("fresh", vip_queue="nope")))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused(lambda: get_policy(stubs, "fresh")).code() == grpc.StatusCode.NOT_FOUND
    assert list_policies(stubs) == []


def test_malformed_filter_expression_names_the_position(stubs: Stubs) -> None:
    previous = upsert_policy(stubs, bullseye_policy()).policy
    before_digest = digest(stubs)

    broken = bullseye_policy()
    broken.filters[1].expression = "intent == 'buy' AND"
    error = refused(lambda: upsert_policy(stubs, broken))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = error.details() or ""
    assert "policy.filters[1].expression" in details
    assert "position" in details

    assert get_policy(stubs, "inbound") == previous
    assert digest(stubs) == before_digest


def test_filter_without_a_route_is_invalid_argument(stubs: Stubs) -> None:
    policy = bullseye_policy()
    policy.filters[0].ClearField("route")
    error = refused(lambda: upsert_policy(stubs, policy))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "policy.filters[0].route: is required" in (error.details() or "")
    assert list_policies(stubs) == []


# -- tasks routed by a policy ---------------------------------------------------------------------


def create_with_policy(stubs: Stubs, **fields: Any) -> pb.Task:
    fields.setdefault("channel", "voice")
    fields.setdefault("policy_id", "inbound")
    request = tpb.CreateTaskRequest(task=pb.Task(**fields))
    return stubs.tasks.CreateTask(request, timeout=5).task


def test_task_created_with_a_policy_reports_its_route(stubs: Stubs) -> None:
    upsert_policy(stubs, bullseye_policy())
    stubs.worker("ana", activity="break")  # known, but not taking work

    buyer = create_with_policy(stubs, attributes={"intent": "buy"}, priority=2)
    assert buyer.status == pb.TASK_STATUS_PENDING  # no workers
    assert buyer.policy_id == "inbound"
    assert buyer.queue_id == "sales"
    assert buyer.priority == 2
    assert buyer.effective_priority == 7  # the first step's delta
    assert buyer.step_index == 0
    assert buyer.queued_at_ms == buyer.created_at_ms

    other = create_with_policy(
        stubs, attributes={"intent": "complain"}, known_agent_wait_s=15, preferred_worker_id="ana"
    )
    assert other.queue_id == "support"  # the default route
    assert other.known_agent_wait_s == 15
    assert other.effective_priority == 0
    assert other.step_index == 0  # waiting for ana; the route's one step is step 1

    stubs.advance(30)  # the buyer's first step times out
    later = stubs.get(buyer.task_id)
    assert later.step_index == 1
    assert later.effective_priority == 2
    assert later.queue_id == "sales" and later.queued_at_ms == buyer.queued_at_ms
    assert stubs.get(other.task_id).step_index == 1  # ana's 15 s are over

    in_sales = stubs.tasks.ListTasks(tpb.ListTasksRequest(queue_id="sales"), timeout=5).tasks
    assert [t.task_id for t in in_sales] == [buyer.task_id]


def test_upserting_a_policy_reroutes_its_waiting_tasks(stubs: Stubs) -> None:
    upsert_policy(stubs, bullseye_policy())
    buyer = create_with_policy(stubs, attributes={"intent": "buy"})
    assert buyer.queue_id == "sales"

    moved = bullseye_policy()
    moved.filters[1].route.queue_id = "overflow"
    del moved.filters[1].route.steps[:]
    upsert_policy(stubs, moved)

    rerouted = stubs.get(buyer.task_id)
    assert rerouted.queue_id == "overflow"
    assert rerouted.step_index == 0 and rerouted.effective_priority == 0


def test_a_policy_that_would_strand_a_waiting_task_is_refused(stubs: Stubs) -> None:
    upsert_policy(stubs, bullseye_policy())
    stranded = create_with_policy(stubs, attributes={"intent": "complain"})
    assert stranded.queue_id == "support"  # by the default route
    before_digest = digest(stubs)

    no_default = bullseye_policy()
    no_default.ClearField("default_route")
    error = refused(lambda: upsert_policy(stubs, no_default))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION

    assert get_policy(stubs, "inbound") == bullseye_policy()
    assert stubs.get(stranded.task_id).queue_id == "support"
    assert digest(stubs) == before_digest


def test_a_policy_with_open_tasks_cannot_be_deleted(stubs: Stubs) -> None:
    upsert_policy(stubs, bullseye_policy())
    task = create_with_policy(stubs, attributes={"intent": "buy"})
    delete = apb.DeleteRoutingPolicyRequest(policy_id="inbound")

    error = refused(lambda: stubs.admin.DeleteRoutingPolicy(delete, timeout=5))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert get_policy(stubs, "inbound") == bullseye_policy()

    stubs.tasks.CancelTask(tpb.CancelTaskRequest(task_id=task.task_id), timeout=5)
    stubs.admin.DeleteRoutingPolicy(delete, timeout=5)
    assert list_policies(stubs) == []
