"""Routing policies end to end, as an operator configures them and a front end and agents see
them: workflows with bullseye steps, known agent, aging and LIFO, exception rules, business
hours, estimated waits, multi-offer, batch assignment and live reconfiguration. Real server on
loopback; time moved with ClockService."""

from __future__ import annotations

import contextlib
import datetime
import queue
from typing import Any

import pytest

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import clock_service_pb2 as cpb
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from tests.e2e import raw
from tests.e2e.raw import RawAgent, Stubs


def connect(stubs: Stubs, agents: list[RawAgent], worker_id: str) -> RawAgent:
    """The worker's Connect stream, saying hello as available."""
    return raw.connect(stubs, agents, worker_id, activity="available")


def policy(stubs: Stubs, policy_id: str, **fields: Any) -> pb.RoutingPolicy:
    request = apb.UpsertRoutingPolicyRequest(policy=pb.RoutingPolicy(policy_id=policy_id, **fields))
    return stubs.admin.UpsertRoutingPolicy(request, timeout=5).policy


def set_activity(stubs: Stubs, worker_id: str, activity: str) -> None:
    request = wpb.SetActivityRequest(worker_id=worker_id, activity=activity)
    stubs.workers.SetActivity(request, timeout=5)


def holder(stubs: Stubs, task_id: str) -> str:
    """The worker a task is offered to or assigned to ("" while it waits)."""
    return stubs.get(task_id).worker_id


def take(agent: RawAgent, task_id: str) -> None:
    """The agent accepts its offer of this task (read from its Connect stream)."""
    while True:
        offer = agent.next_of("offer").offer
        if offer.task_id == task_id:
            break
    agent.accept(offer.reservation_id)
    while agent.next_of("assigned").assigned.task_id != task_id:
        pass


def complete(stubs: Stubs, task_id: str) -> None:
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(task_id=task_id), timeout=5)


def move(queue_id: str) -> pb.QueueAction:
    return pb.QueueAction(kind=pb.QUEUE_ACTION_KIND_MOVE_TO_QUEUE, queue_id=queue_id)


def wait_rule(wait_s: float, action: pb.QueueAction) -> pb.ExceptionRule:
    return pb.ExceptionRule(trigger=pb.EXCEPTION_TRIGGER_WAIT_TIME, wait_s=wait_s, action=action)


# -- workflows: bullseye widening, known agent -----------------------------------------------


def bullseye_policy(stubs: Stubs) -> None:
    """The README's example: level-5 billing experts first, after 20 s level 3 and up, after
    60 s anyone in the queue."""
    stubs.queue("billing", reservation_timeout_s=600)
    steps = [
        pb.RoutingStep(timeout_s=20, required_skills={"billing": 5}),
        pb.RoutingStep(timeout_s=40, required_skills={"billing": 3}, priority_delta=1),
        pb.RoutingStep(),
    ]
    policy(
        stubs,
        "inbound",
        filters=[
            pb.PolicyFilter(
                name="billing",
                expression="department == 'billing' AND customer.tier IN ['gold', 'silver']",
                route=pb.Route(queue_id="billing", steps=steps),
            )
        ],
        default_route=pb.Route(queue_id="billing"),
    )


def test_bullseye_widens_from_experts_to_anyone(stubs: Stubs) -> None:
    bullseye_policy(stubs)
    stubs.worker("expert", skills={"billing": 5}, activity="break")
    stubs.worker("senior", skills={"billing": 3.5}, activity="break")
    stubs.worker("junior", skills={"billing": 1})
    attributes = {"department": "billing", "customer": {"tier": "gold"}}
    created = stubs.create(queue_id="", policy_id="inbound", attributes=attributes)
    task_id = created.task.task_id
    assert created.task.queue_id == "billing"
    assert created.task.status == pb.TASK_STATUS_PENDING  # the junior may not take it yet
    assert created.task.step_index == 0

    stubs.advance(19.9)
    assert stubs.get(task_id).step_index == 0
    stubs.advance(0.1)  # 20 s: level 3 and up, priority + 1
    task = stubs.get(task_id)
    assert (task.step_index, task.effective_priority, task.status) == (
        1,
        1,
        pb.TASK_STATUS_PENDING,
    )
    set_activity(stubs, "senior", "available")
    assert holder(stubs, task_id) == "senior"

    # A second task: nobody of level 3 is free now, so it waits for the third step.
    second = stubs.create(queue_id="", policy_id="inbound", attributes=attributes).task.task_id
    stubs.advance(59.9)
    assert stubs.get(second).status == pb.TASK_STATUS_PENDING
    stubs.advance(0.1)  # 60 s since it arrived: anyone in the queue
    assert holder(stubs, second) == "junior"
    assert stubs.get(second).step_index == 2


def test_a_task_no_filter_matches_takes_the_default_route(stubs: Stubs) -> None:
    bullseye_policy(stubs)
    stubs.worker("junior", skills={"billing": 1})
    created = stubs.create(queue_id="", policy_id="inbound", attributes={"department": "sales"})
    assert created.task.queue_id == "billing"
    assert created.task.worker_id == "junior"  # the default route has no steps


def test_known_agent_waits_for_the_last_agent_then_falls_back(
    stubs: Stubs, agents: list[RawAgent]
) -> None:
    stubs.queue("support")
    stubs.worker("ana", capacity_by_channel={"voice": 1})
    ana = connect(stubs, agents, "ana")
    first = stubs.create(customer_id="c-1").task.task_id
    take(ana, first)
    complete(stubs, first)
    busy = stubs.create(customer_id="c-2").task.task_id  # ana again: the only worker
    take(ana, busy)
    stubs.worker("ben", capacity_by_channel={"voice": 1})

    # c-1 calls back and waits 30 s for ana, who is busy; ben is free.
    repeat = stubs.create(customer_id="c-1", known_agent_wait_s=30).task.task_id
    assert stubs.get(repeat).status == pb.TASK_STATUS_PENDING
    stubs.advance(29.9)
    assert stubs.get(repeat).status == pb.TASK_STATUS_PENDING
    stubs.advance(0.1)
    assert holder(stubs, repeat) == "ben"


def test_known_agent_gets_the_task_when_free_within_the_window(
    stubs: Stubs, agents: list[RawAgent]
) -> None:
    stubs.queue("support")
    stubs.worker("ana", capacity_by_channel={"voice": 1})
    ana = connect(stubs, agents, "ana")
    busy = stubs.create(customer_id="c-2").task.task_id
    take(ana, busy)
    stubs.worker("ben", capacity_by_channel={"voice": 1})
    task = stubs.create(preferred_worker_id="ana", known_agent_wait_s=60).task.task_id
    assert stubs.get(task).status == pb.TASK_STATUS_PENDING  # ben is free, but it waits for ana
    stubs.advance(10)
    complete(stubs, busy)
    assert holder(stubs, task) == "ana"


# -- order: aging, LIFO -------------------------------------------------------------------------


def test_priority_aging_lets_a_long_wait_overtake_a_higher_priority(stubs: Stubs) -> None:
    stubs.queue("aging", priority_aging_per_min=6)  # +1 every 10 s
    stubs.queue("plain")
    stubs.worker("ana", activity="break")
    old = {q: stubs.create(queue_id=q, priority=0).task.task_id for q in ("aging", "plain")}
    stubs.advance(40)
    new = {q: stubs.create(queue_id=q, priority=3).task.task_id for q in ("aging", "plain")}
    stubs.advance(20)  # old: 0 + 6 = 6; new: 3 + 2 = 5 in the aging queue
    assert stubs.get(old["aging"]).queue_position == 0
    assert stubs.get(new["plain"]).queue_position == 0
    set_activity(stubs, "ana", "available")
    # Across both queues the oldest aging task now ranks highest (6 > 3).
    assert holder(stubs, old["aging"]) == "ana"


def test_a_lifo_queue_serves_the_newest_first(stubs: Stubs) -> None:
    stubs.queue("callbacks", order=pb.QUEUE_ORDER_LIFO)
    stubs.worker("ana", activity="break")
    first = stubs.create(queue_id="callbacks").task.task_id
    stubs.advance(1)
    second = stubs.create(queue_id="callbacks").task.task_id
    assert stubs.get(second).queue_position == 0
    set_activity(stubs, "ana", "available")
    assert holder(stubs, second) == "ana" and holder(stubs, first) == ""


# -- exception rules ----------------------------------------------------------------------------


def test_a_long_wait_moves_the_task_to_the_overflow_queue_keeping_its_age(stubs: Stubs) -> None:
    stubs.queue("overflow", target_expression="team == 'overflow'")
    stubs.queue(
        "sales",
        target_expression="team == 'sales'",
        exception_rules=[wait_rule(60, move("overflow"))],
    )
    stubs.worker("olga", attributes={"team": "overflow"}, activity="break")
    created = stubs.create(queue_id="sales").task
    stubs.advance(59.9)
    assert stubs.get(created.task_id).queue_id == "sales"
    stubs.advance(0.1)
    moved = stubs.get(created.task_id)
    assert moved.queue_id == "overflow" and moved.created_at_ms == created.created_at_ms
    set_activity(stubs, "olga", "available")
    assert holder(stubs, created.task_id) == "olga"


def test_a_long_queue_sends_arrivals_to_the_overflow(stubs: Stubs) -> None:
    stubs.queue("overflow")
    length_rule = pb.ExceptionRule(
        trigger=pb.EXCEPTION_TRIGGER_QUEUE_LENGTH, queue_length=2, action=move("overflow")
    )
    stubs.queue("sales", exception_rules=[length_rule])
    queues = [stubs.create(queue_id="sales").task.queue_id for _ in range(3)]
    assert queues == ["sales", "sales", "overflow"]


def test_wait_rules_raise_the_priority_then_cancel(stubs: Stubs) -> None:
    raise_ = pb.QueueAction(kind=pb.QUEUE_ACTION_KIND_RAISE_PRIORITY, priority_delta=10)
    cancel = pb.QueueAction(kind=pb.QUEUE_ACTION_KIND_CANCEL, reason="no_agents")
    stubs.queue("sales", exception_rules=[wait_rule(120, cancel), wait_rule(30, raise_)])
    task_id = stubs.create(queue_id="sales", priority=2).task.task_id
    stubs.advance(30)
    assert stubs.get(task_id).effective_priority == 12
    stubs.advance(90)
    task = stubs.get(task_id)
    assert (task.status, task.cancel_reason) == (pb.TASK_STATUS_CANCELED, "no_agents")


def test_a_task_that_outlives_its_last_step_follows_the_exception_policy(stubs: Stubs) -> None:
    stubs.queue("voicemail")
    exhausted = pb.ExceptionRule(
        trigger=pb.EXCEPTION_TRIGGER_STEPS_EXHAUSTED, action=move("voicemail")
    )
    stubs.queue("experts", target_expression="expert", exception_rules=[exhausted])
    steps = [pb.RoutingStep(timeout_s=30), pb.RoutingStep(timeout_s=30, priority_delta=5)]
    policy(stubs, "experts-only", default_route=pb.Route(queue_id="experts", steps=steps))
    task_id = stubs.create(queue_id="", policy_id="experts-only").task.task_id
    stubs.advance(59.9)
    assert stubs.get(task_id).queue_id == "experts"
    stubs.advance(0.1)
    assert stubs.get(task_id).queue_id == "voicemail"


# -- business hours -----------------------------------------------------------------------------


def closed_today(stubs: Stubs) -> tuple[pb.BusinessHours, float]:
    """A calendar open all week, but today (UTC) is a holiday; and the seconds until it opens."""
    now_ms = stubs.clock.GetTime(cpb.GetTimeRequest(), timeout=5).now_ms
    now = datetime.datetime.fromtimestamp(now_ms / 1000, datetime.UTC)
    days = [
        pb.OpenHours(day=day, opens="00:00", closes="24:00")
        for day in range(pb.DAY_OF_WEEK_MONDAY, pb.DAY_OF_WEEK_SUNDAY + 1)
    ]
    hours = pb.BusinessHours(time_zone="UTC", weekly=days, holidays=[now.date().isoformat()])
    midnight = datetime.datetime.combine(now.date(), datetime.time(), datetime.UTC)
    opens_in_s = (midnight + datetime.timedelta(days=1) - now).total_seconds()
    return hours, opens_in_s


def test_after_hours_tasks_are_canceled_or_moved(stubs: Stubs) -> None:
    hours, opens_in_s = closed_today(stubs)
    closed = pb.QueueAction(kind=pb.QUEUE_ACTION_KIND_CANCEL, reason="after_hours")
    stubs.queue("voicemail")
    stubs.queue("sales", business_hours=hours, after_hours_action=closed)
    stubs.queue("support", business_hours=hours, after_hours_action=move("voicemail"))
    canceled = stubs.create(queue_id="sales").task
    assert (canceled.status, canceled.cancel_reason) == (pb.TASK_STATUS_CANCELED, "after_hours")
    assert stubs.create(queue_id="support").task.queue_id == "voicemail"

    stubs.advance(opens_in_s + 1)  # the next day: open
    assert stubs.create(queue_id="sales").task.status == pb.TASK_STATUS_PENDING
    assert stubs.create(queue_id="support").task.queue_id == "support"


# -- estimated wait -----------------------------------------------------------------------------


def test_estimated_wait_comes_from_staffing_and_handle_time(
    stubs: Stubs, agents: list[RawAgent]
) -> None:
    stubs.queue("support")
    desks = {}
    for name in ("ana", "ben"):
        stubs.worker(name, capacity_by_channel={"voice": 1})
        desks[name] = connect(stubs, agents, name)
    # Four calls handled in 60 s each teach the queue its handle time.
    for _ in range(2):
        served = [stubs.create().task.task_id for _ in range(2)]
        for task_id in served:
            take(desks[holder(stubs, task_id)], task_id)
        for _ in range(2):  # the desks' heartbeats keep their streams (presence_timeout_s 30)
            stubs.advance(30)
            for desk in desks.values():
                desk.heartbeat()
        for task_id in served:
            complete(stubs, task_id)
    busy = [stubs.create().task.task_id for _ in range(2)]
    assert all(holder(stubs, t) for t in busy)
    waiting = [stubs.create().task for _ in range(3)]
    # k tasks ahead, 2 agents, 60 s each: (k + 1) x 60 / 2.
    assert [t.queue_position for t in waiting] == [0, 1, 2]
    assert [t.estimated_wait_s for t in waiting] == [30, 60, 90]
    assert all(t.estimated_wait_known for t in waiting)
    assert stubs.get(waiting[2].task_id).estimated_wait_s == 90


def test_estimated_wait_is_unknown_before_the_queue_has_served_anyone(stubs: Stubs) -> None:
    stubs.queue("support")
    task = stubs.create().task
    assert task.status == pb.TASK_STATUS_PENDING and not task.estimated_wait_known


# -- multi-offer --------------------------------------------------------------------------------


def test_multi_offer_first_accept_wins_and_the_others_are_rescinded(
    stubs: Stubs, agents: list[RawAgent]
) -> None:
    stubs.queue("chat", offer_workers_max=3)
    desks = {}
    for name in ("ana", "ben", "cy", "dee"):
        stubs.worker(name, capacity_by_channel={"chat": 1})
        desks[name] = connect(stubs, agents, name)
    task_id = stubs.create(queue_id="chat", channel="chat").task.task_id
    assert stubs.get(task_id).status == pb.TASK_STATUS_RESERVED
    offers = {}
    for name, desk in desks.items():
        with contextlib.suppress(queue.Empty):  # one of the four gets no offer
            offers[name] = desk.next_of("offer", timeout_s=0.5).offer
    assert len(offers) == 3
    # A desk that reconnects is sent its own pending offer of the task again.
    loser = list(offers)[-1]
    desks[loser].close()
    desks[loser] = connect(stubs, agents, loser)
    assert desks[loser].next_of("offer").offer.reservation_id == offers[loser].reservation_id
    winner, winning = next(iter(offers.items()))
    assert winning.task_id == task_id
    desks[winner].accept(winning.reservation_id)
    desks[winner].next_of("assigned")
    for name, offer in offers.items():
        if name != winner:
            closed = desks[name].next_of("offer_closed").offer_closed
            assert closed.reservation_id == offer.reservation_id
    task = stubs.get(task_id)
    assert (task.status, task.worker_id) == (pb.TASK_STATUS_ASSIGNED, winner)


# -- batch assignment ---------------------------------------------------------------------------


def test_batch_assignment_scores_higher_than_greedy(stubs: Stubs) -> None:
    """Ana is the best at billing (5) and good at tech (4); ben is good at billing (4) and
    knows no tech. Greedy gives the first task (billing) to ana and leaves ben the tech task
    (0 + 1 = 1.0 + 0.0 in skill fit); the batch round swaps them (0.8 + 0.8 = 1.6)."""
    weights = pb.ScoringWeights(skill=1, empathy=0, idle=0, affinity=0, load=0)
    fit = {"ana": {"billing": 5, "tech": 4}, "ben": {"billing": 4, "tech": 0}}
    totals = {}
    for mode, window_s in (("greedy", 0.0), ("batch", 1.0)):
        stubs.queue(mode, target_expression=f"mode == '{mode}'", weights=weights,
                    assignment_window_s=window_s)  # fmt: skip
        for name, skills in fit.items():
            stubs.worker(f"{name}-{mode}", skills=skills, attributes={"mode": mode})
        billing = stubs.create(queue_id=mode, required_skills={"billing": 0}).task.task_id
        tech = stubs.create(queue_id=mode, required_skills={"tech": 0}).task.task_id
        stubs.advance(1)
        pairs = {"billing": holder(stubs, billing), "tech": holder(stubs, tech)}
        totals[mode] = sum(fit[worker.split("-")[0]][skill] / 5 for skill, worker in pairs.items())
        assert all(pairs.values()), pairs
    assert totals["greedy"] == pytest.approx(1.0)
    assert totals["batch"] == pytest.approx(1.6)
    assert totals["batch"] > totals["greedy"]


# -- live reconfiguration -----------------------------------------------------------------------


def test_changing_a_queue_re_evaluates_the_tasks_already_waiting(stubs: Stubs) -> None:
    stubs.queue("overflow", target_expression="team == 'nobody'")
    stubs.queue("sales", target_expression="team == 'sales'")
    stubs.worker("ana", attributes={"team": "support"})
    waited = stubs.create(queue_id="sales").task.task_id
    stubs.advance(45)
    fresh = stubs.create(queue_id="sales").task.task_id
    # A new rule: after 30 s, overflow. The task that has waited 45 s moves at once.
    stubs.queue("sales", target_expression="team == 'sales'",
                exception_rules=[wait_rule(30, move("overflow"))])  # fmt: skip
    assert stubs.get(waited).queue_id == "overflow"
    assert stubs.get(fresh).queue_id == "sales"
    # A wider target: the waiting task goes to ana now, not on the next arrival.
    stubs.queue("sales", target_expression="team IN ['sales', 'support']")
    assert holder(stubs, fresh) == "ana"


def test_changing_a_policy_re_routes_its_waiting_tasks(stubs: Stubs) -> None:
    bullseye_policy(stubs)
    stubs.worker("senior", skills={"billing": 3.5})
    attributes = {"department": "billing", "customer": {"tier": "gold"}}
    task_id = stubs.create(queue_id="", policy_id="inbound", attributes=attributes).task.task_id
    assert stubs.get(task_id).status == pb.TASK_STATUS_PENDING
    stubs.advance(5)
    steps = [pb.RoutingStep(timeout_s=20, required_skills={"billing": 3}), pb.RoutingStep()]
    policy(
        stubs,
        "inbound",
        filters=[
            pb.PolicyFilter(
                name="billing",
                expression="department == 'billing'",
                route=pb.Route(queue_id="billing", steps=steps),
            )
        ],
    )
    assert holder(stubs, task_id) == "senior"
