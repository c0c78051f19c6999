"""The routing engine in constructed cases: the scoring picks the agent a person would pick,
capacity holds across channels, offers expire and exclude, and refused commands change nothing."""

from __future__ import annotations

import math
from typing import TypeVar

import pytest

from router.core import commands as cmd
from router.core import snapshot
from router.core.engine import CreatedTask, Engine, WorkerCopy
from router.core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from router.core.events import (
    CANCEL_ORIGINS,
    OfferClosed,
    OfferCreated,
    TaskAssigned,
    TaskCanceled,
)
from router.core.limits import ATTRIBUTES_BYTES_MAX
from router.core.model import (
    DEFAULT_ROUTE,
    ActionKind,
    BusinessHours,
    ExceptionRule,
    OpenHours,
    PauseExpiryAction,
    PolicyFilter,
    QueueAction,
    QueueConfig,
    QueueOrder,
    ReservationStatus,
    Route,
    RoutingPolicy,
    RoutingStep,
    TaskSpec,
    TaskStatus,
    TriggerKind,
    Weekday,
    WorkerProfile,
)
from router.core.task_table import TaskCopy

R = TypeVar("R")


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000_000


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def engine(clock: Clock) -> Engine:
    engine = Engine()
    apply(engine, clock, cmd.UpsertQueue(QueueConfig("support", reservation_timeout_s=30)))
    return engine


def apply(engine: Engine, clock: Clock, command: cmd.Command[R]) -> R:
    return engine.apply(command, clock.now_ms)


def add_worker(engine: Engine, clock: Clock, worker_id: str, **fields: object) -> None:
    fields.setdefault("capacity_by_channel", {"voice": 1, "chat": 2})
    fields.setdefault("activity", "available")
    apply(engine, clock, cmd.UpsertWorker(WorkerProfile(worker_id, **fields)))  # type: ignore[arg-type]


def create(engine: Engine, clock: Clock, **fields: object) -> CreatedTask:
    fields.setdefault("channel", "voice")
    fields.setdefault("queue_id", "support")
    result = apply(engine, clock, cmd.CreateTask(TaskSpec(**fields)))  # type: ignore[arg-type]
    assert isinstance(result, CreatedTask)
    return result


def offers(engine: Engine) -> list[OfferCreated]:
    return [e for e in engine.take_events() if isinstance(e, OfferCreated)]


def offered_to(engine: Engine, task_id: str) -> str:
    return engine.get_task(task_id).worker_id


def advance(clock: Clock, seconds: float) -> None:
    clock.now_ms += round(seconds * 1000)


# -- who gets the task ---------------------------------------------------------------------------


def test_the_specialist_gets_the_hard_skill_task(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "generalist", skills={"billing": 3, "sales": 4})
    advance(clock, 60)  # the generalist has been idle longer: the skill must still win
    add_worker(engine, clock, "specialist", skills={"billing": 5})
    task = create(engine, clock, required_skills={"billing": 2})
    assert offered_to(engine, task.task.task_id) == "specialist"


def test_the_most_empathetic_agent_gets_the_angry_customer(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "calm", skills={"billing": 4}, empathy=0.95)
    add_worker(engine, clock, "brisk", skills={"billing": 4}, empathy=0.1)
    angry = create(engine, clock, required_skills={"billing": 1}, sentiment=-0.9)
    assert offered_to(engine, angry.task.task_id) == "calm"


def test_empathy_does_not_decide_for_a_happy_customer(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "calm", skills={"billing": 4}, empathy=0.95)
    advance(clock, 30)
    add_worker(engine, clock, "brisk", skills={"billing": 4}, empathy=0.1)
    advance(clock, 30)
    happy = create(engine, clock, required_skills={"billing": 1}, sentiment=0.8)
    assert offered_to(engine, happy.task.task_id) == "calm"  # idle longest, not more empathetic
    reservation_id = engine.get_task(happy.task.task_id).reservation_id
    apply(engine, clock, cmd.AcceptOffer("calm", reservation_id))
    apply(engine, clock, cmd.CompleteTask(happy.task.task_id))  # calm is idle from now on
    advance(clock, 1)
    happy2 = create(engine, clock, required_skills={"billing": 1}, sentiment=0.8)
    assert offered_to(engine, happy2.task.task_id) == "brisk"


def test_a_repeat_caller_counts_as_upset(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "calm", empathy=0.9, capacity_by_channel={"voice": 5})
    add_worker(engine, clock, "brisk", empathy=0.1, capacity_by_channel={"voice": 5})
    first = create(engine, clock, customer_id="c1", sentiment=0.0)
    assert first.task.repeat_contacts == 0
    second = create(engine, clock, customer_id="c1", sentiment=0.0)
    assert second.task.repeat_contacts == 1
    third = create(engine, clock, customer_id="c1", sentiment=0.0)
    assert offered_to(engine, third.task.task_id) == "calm"


def test_the_longest_idle_wins_between_equals(engine: Engine, clock: Clock) -> None:
    for name in ("a", "b", "c"):
        add_worker(engine, clock, name, skills={"billing": 3})
        advance(clock, 10)
    first = create(engine, clock, required_skills={"billing": 1})
    second = create(engine, clock, required_skills={"billing": 1})
    assert [offered_to(engine, t.task.task_id) for t in (first, second)] == ["a", "b"]


def test_hard_constraints_exclude_workers(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "junior", skills={"billing": 2}, languages=("es",))
    add_worker(engine, clock, "english", skills={"billing": 5}, languages=("en",))
    task = create(engine, clock, required_skills={"billing": 3}, language="es")
    assert engine.get_task(task.task.task_id).status is TaskStatus.PENDING
    assert task.queue_position == 0
    add_worker(engine, clock, "senior", skills={"billing": 4}, languages=("es", "en"))
    assert offered_to(engine, task.task.task_id) == "senior"


def test_a_preferred_worker_wins_a_near_tie(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "a", skills={"billing": 4})
    add_worker(engine, clock, "b", skills={"billing": 4})
    task = create(engine, clock, required_skills={"billing": 1}, preferred_worker_id="b")
    assert offered_to(engine, task.task.task_id) == "b"


def test_target_expression_limits_the_queue(engine: Engine, clock: Clock) -> None:
    apply(engine, clock, cmd.UpsertQueue(QueueConfig("vip", target_expression="tier == 'gold'")))
    add_worker(engine, clock, "plain", attributes={"tier": "silver"})
    task = create(engine, clock, queue_id="vip")
    assert engine.get_task(task.task.task_id).status is TaskStatus.PENDING
    add_worker(engine, clock, "gold", attributes={"tier": "gold"})
    assert offered_to(engine, task.task.task_id) == "gold"


def test_widening_a_target_serves_waiting_tasks(engine: Engine, clock: Clock) -> None:
    apply(engine, clock, cmd.UpsertQueue(QueueConfig("vip", target_expression="tier == 'gold'")))
    add_worker(engine, clock, "plain", attributes={"tier": "silver"})
    task = create(engine, clock, queue_id="vip")
    apply(
        engine,
        clock,
        cmd.UpsertQueue(QueueConfig("vip", target_expression="tier IN ['gold', 'silver']")),
    )
    assert offered_to(engine, task.task.task_id) == "plain"


# -- order of tasks ------------------------------------------------------------------------------


def test_a_freed_worker_takes_the_highest_priority_then_the_oldest(
    engine: Engine, clock: Clock
) -> None:
    low = create(engine, clock, priority=0)
    advance(clock, 1)
    high_new = create(engine, clock, priority=5)
    advance(clock, 1)
    high_newer = create(engine, clock, priority=5)
    assert [engine.queue_position(t.task.task_id) for t in (low, high_new, high_newer)] == [2, 0, 1]
    add_worker(engine, clock, "a", capacity_by_channel={"voice": 1})
    assert offered_to(engine, high_new.task.task_id) == "a"
    add_worker(engine, clock, "b", capacity_by_channel={"voice": 1})
    assert offered_to(engine, high_newer.task.task_id) == "b"


def test_lifo_queue_serves_the_newest_first(engine: Engine, clock: Clock) -> None:
    apply(engine, clock, cmd.UpsertQueue(QueueConfig("lifo", order=QueueOrder.LIFO)))
    old = create(engine, clock, queue_id="lifo")
    advance(clock, 1)
    new = create(engine, clock, queue_id="lifo")
    add_worker(engine, clock, "a", capacity_by_channel={"voice": 1})
    assert offered_to(engine, new.task.task_id) == "a"
    assert engine.get_task(old.task.task_id).status is TaskStatus.PENDING


def test_raising_priority_reorders_the_queue(engine: Engine, clock: Clock) -> None:
    first = create(engine, clock)
    second = create(engine, clock)
    apply(engine, clock, cmd.UpdateTask(second.task.task_id, priority=10))
    assert engine.queue_position(second.task.task_id) == 0
    assert engine.queue_position(first.task.task_id) == 1


def test_a_freed_worker_skips_tasks_it_cannot_serve(engine: Engine, clock: Clock) -> None:
    needs_french = create(engine, clock, language="fr")
    advance(clock, 1)
    chat = create(engine, clock, channel="chat")
    advance(clock, 1)
    plain = create(engine, clock)
    add_worker(engine, clock, "a", languages=("en",), capacity_by_channel={"voice": 1})
    assert offered_to(engine, plain.task.task_id) == "a"
    assert engine.get_task(needs_french.task.task_id).status is TaskStatus.PENDING
    assert engine.get_task(chat.task.task_id).status is TaskStatus.PENDING


# -- capacity ------------------------------------------------------------------------------------


def test_total_capacity_is_shared_across_channels(engine: Engine, clock: Clock) -> None:
    add_worker(
        engine,
        clock,
        "a",
        capacity_by_channel={"voice": 1, "chat": 3},
        total_capacity=3.0,
        cost_by_channel={"voice": 3.0, "chat": 1.0},
    )
    chat1 = create(engine, clock, channel="chat")
    assert offered_to(engine, chat1.task.task_id) == "a"
    voice = create(engine, clock, channel="voice")
    assert engine.get_task(voice.task.task_id).status is TaskStatus.PENDING  # 1 + 3 > 3
    chat2 = create(engine, clock, channel="chat")
    chat3 = create(engine, clock, channel="chat")
    chat4 = create(engine, clock, channel="chat")
    assert [offered_to(engine, t.task.task_id) for t in (chat2, chat3)] == ["a", "a"]
    assert engine.get_task(chat4.task.task_id).status is TaskStatus.PENDING
    engine.check_invariants()


def test_capacity_per_channel_is_respected(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "a", capacity_by_channel={"voice": 1, "chat": 2})
    tasks = [create(engine, clock, channel="chat") for _ in range(3)]
    assert [engine.get_task(t.task.task_id).status for t in tasks] == [
        TaskStatus.RESERVED,
        TaskStatus.RESERVED,
        TaskStatus.PENDING,
    ]
    voice = create(engine, clock, channel="voice")
    assert offered_to(engine, voice.task.task_id) == "a"
    engine.check_invariants()


def test_capacity_cannot_drop_below_held_tasks(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "a", capacity_by_channel={"chat": 2})
    create(engine, clock, channel="chat")
    create(engine, clock, channel="chat")
    digest = engine.digest()
    with pytest.raises(FailedPrecondition, match=r"capacity_by_channel\[chat\]"):
        add_worker(engine, clock, "a", capacity_by_channel={"chat": 1})
    assert engine.digest() == digest


# -- offers: expiry, rejection, exclusion ------------------------------------------------------


def test_an_expired_offer_goes_to_someone_else_and_never_back(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "slow", capacity_by_channel={"voice": 1})
    task = create(engine, clock)
    task_id = task.task.task_id
    reservation_id = engine.get_task(task_id).reservation_id
    engine.take_events()
    advance(clock, 29.999)
    apply(engine, clock, cmd.Tick())
    assert engine.get_task(task_id).status is TaskStatus.RESERVED
    advance(clock, 0.001)
    apply(engine, clock, cmd.Tick())
    closed = [e for e in engine.take_events() if isinstance(e, OfferClosed)]
    assert [e.reservation.status for e in closed] == [ReservationStatus.TIMED_OUT]
    assert engine.get_task(task_id).status is TaskStatus.PENDING  # only "slow" exists: never back
    assert engine.get_task(task_id).excluded_worker_ids == frozenset({"slow"})
    with pytest.raises(FailedPrecondition, match="timed_out"):
        apply(engine, clock, cmd.AcceptOffer("slow", reservation_id))
    add_worker(engine, clock, "quick", capacity_by_channel={"voice": 1})
    assert offered_to(engine, task_id) == "quick"


def test_reject_reoffers_to_another_agent(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "a", skills={"billing": 5})
    add_worker(engine, clock, "b", skills={"billing": 3})
    task_id = create(engine, clock, required_skills={"billing": 1}).task.task_id
    assert offered_to(engine, task_id) == "a"
    apply(engine, clock, cmd.RejectOffer("a", engine.get_task(task_id).reservation_id))
    assert offered_to(engine, task_id) == "b"
    apply(engine, clock, cmd.RejectOffer("b", engine.get_task(task_id).reservation_id))
    assert engine.get_task(task_id).status is TaskStatus.PENDING
    engine.check_invariants()


def test_accepting_someone_elses_offer_is_refused(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "a")
    add_worker(engine, clock, "b")
    task_id = create(engine, clock).task.task_id
    holder = offered_to(engine, task_id)
    other = "b" if holder == "a" else "a"
    with pytest.raises(PermissionDenied, match="was not made to"):
        apply(engine, clock, cmd.AcceptOffer(other, engine.get_task(task_id).reservation_id))
    with pytest.raises(NotFound):
        apply(engine, clock, cmd.AcceptOffer(holder, "res-999"))


def test_going_on_break_rescinds_pending_offers(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "a")
    task_id = create(engine, clock).task.task_id
    engine.take_events()
    apply(engine, clock, cmd.SetActivity("a", "break"))
    closed = [e for e in engine.take_events() if isinstance(e, OfferClosed)]
    assert closed[0].reservation.status is ReservationStatus.RESCINDED
    assert engine.get_task(task_id).status is TaskStatus.PENDING
    assert engine.get_task(task_id).excluded_worker_ids == frozenset()
    apply(engine, clock, cmd.SetActivity("a", "available"))
    assert offered_to(engine, task_id) == "a"


# -- lifecycle -----------------------------------------------------------------------------------


def test_complete_wraps_up_then_frees_the_worker(engine: Engine, clock: Clock) -> None:
    apply(engine, clock, cmd.UpsertQueue(QueueConfig("support", wrapup_s=10)))
    add_worker(engine, clock, "a", capacity_by_channel={"voice": 1})
    first = create(engine, clock).task.task_id
    second = create(engine, clock).task.task_id
    apply(engine, clock, cmd.AcceptOffer("a", engine.get_task(first).reservation_id))
    with pytest.raises(FailedPrecondition, match="only an assigned task"):
        apply(engine, clock, cmd.CompleteTask(second))
    apply(engine, clock, cmd.CompleteTask(first))
    assert engine.get_task(first).status is TaskStatus.WRAPPING
    advance(clock, 9.999)
    apply(engine, clock, cmd.Tick())
    assert engine.get_task(second).status is TaskStatus.PENDING
    advance(clock, 0.001)
    apply(engine, clock, cmd.Tick())
    assert engine.get_task(first).status is TaskStatus.COMPLETED
    assert offered_to(engine, second) == "a"


def test_wrap_up_ends_early(engine: Engine, clock: Clock) -> None:
    apply(engine, clock, cmd.UpsertQueue(QueueConfig("support", wrapup_s=60)))
    add_worker(engine, clock, "a", capacity_by_channel={"voice": 1})
    task_id = create(engine, clock).task.task_id
    apply(engine, clock, cmd.AcceptOffer("a", engine.get_task(task_id).reservation_id))
    apply(engine, clock, cmd.CompleteTask(task_id))
    apply(engine, clock, cmd.WrapUpTask(task_id))
    assert engine.get_task(task_id).status is TaskStatus.COMPLETED
    assert engine.get_worker("a").task_ids == {}


def test_cancel_while_reserved_frees_the_worker_for_the_next(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "a", capacity_by_channel={"voice": 1})
    first = create(engine, clock).task.task_id
    second = create(engine, clock).task.task_id
    apply(engine, clock, cmd.CancelTask(first, "caller hung up"))
    assert engine.get_task(first).status is TaskStatus.CANCELED
    assert engine.get_task(first).cancel_reason == "caller hung up"
    assert offered_to(engine, second) == "a"
    with pytest.raises(FailedPrecondition):
        apply(engine, clock, cmd.CancelTask(first))


def test_time_to_live_cancels_a_waiting_task(engine: Engine, clock: Clock) -> None:
    task_id = create(engine, clock, ttl_s=5).task.task_id
    advance(clock, 5)
    apply(engine, clock, cmd.Tick())
    assert engine.get_task(task_id).cancel_reason == "ttl_expired"


def test_accept_assigns_and_reports_the_wait(engine: Engine, clock: Clock) -> None:
    task_id = create(engine, clock).task.task_id
    advance(clock, 7)
    add_worker(engine, clock, "a")
    engine.take_events()
    apply(engine, clock, cmd.AcceptOffer("a", engine.get_task(task_id).reservation_id))
    assigned = [e for e in engine.take_events() if isinstance(e, TaskAssigned)]
    assert assigned[0].wait_ms == 7000
    assert engine.get_task(task_id).status is TaskStatus.ASSIGNED


def test_estimated_wait_follows_the_service_rate(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "a", capacity_by_channel={"voice": 1})
    first = create(engine, clock)
    assert first.estimated_wait_ms == 0  # offered at once
    waiting = create(engine, clock)
    assert waiting.estimated_wait_ms is None  # no service history yet: unknown, not invented
    for task_id in (first.task.task_id, waiting.task.task_id):
        apply(engine, clock, cmd.AcceptOffer("a", engine.get_task(task_id).reservation_id))
        advance(clock, 60)
        apply(engine, clock, cmd.CompleteTask(task_id))
    create(engine, clock)  # offered at once
    later = create(engine, clock)
    assert later.queue_position == 0
    assert later.estimated_wait_ms == 60_000


# -- idempotency and bad input -------------------------------------------------------------------


def test_a_retried_create_returns_the_same_task(engine: Engine, clock: Clock) -> None:
    spec = TaskSpec(channel="voice", queue_id="support", attributes={"a": 1})
    first = apply(engine, clock, cmd.CreateTask(spec, "req-1"))
    again = apply(engine, clock, cmd.CreateTask(spec, "req-1"))
    assert isinstance(first, CreatedTask) and isinstance(again, CreatedTask)
    assert again.task.task_id == first.task.task_id and again.deduplicated
    assert len(engine.tasks) == 1
    with pytest.raises(AlreadyExists):
        apply(engine, clock, cmd.CreateTask(TaskSpec(channel="chat", queue_id="support"), "req-1"))


@pytest.mark.parametrize(
    ("profile", "field"),
    [
        (WorkerProfile("w", skills={"billing": 6}), r"worker\.skills\[billing\]"),
        (WorkerProfile("w", skills={"billing": math.nan}), r"worker\.skills\[billing\]"),
        (WorkerProfile("w", capacity_by_channel={"voice": -1}), r"capacity_by_channel\[voice\]"),
        (WorkerProfile("w", capacity_by_channel={"fax": 1}), r"capacity_by_channel\[fax\]"),
        (WorkerProfile("w", empathy=1.5), r"worker\.empathy"),
        (WorkerProfile("w", attributes={"skills": 1}), r"worker\.attributes\.skills"),
        (WorkerProfile("w", attributes={"x": "y" * ATTRIBUTES_BYTES_MAX}), r"worker\.attributes"),
        (
            WorkerProfile(
                "",
            ),
            r"worker\.worker_id",
        ),
        (WorkerProfile("w", activity="lunch"), r"worker\.activity"),
    ],
)
def test_bad_worker_is_refused_naming_the_field(
    engine: Engine, clock: Clock, profile: WorkerProfile, field: str
) -> None:
    digest = engine.digest()
    with pytest.raises(InvalidArgument, match=field):
        apply(engine, clock, cmd.UpsertWorker(profile))
    assert engine.digest() == digest


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (TaskSpec("voice", "support", required_skills={"x": 5.5}), r"task\.required_skills\[x\]"),
        (TaskSpec("voice", "support", preferred_skills={"x": 0}), r"task\.preferred_skills\[x\]"),
        (TaskSpec("voice", "support", sentiment=-2), r"task\.sentiment"),
        (TaskSpec("voice", "support", priority=10_000), r"task\.priority"),
        (TaskSpec("fax", "support"), r"task\.channel"),
        (TaskSpec("voice", "support", ttl_s=math.inf), r"task\.ttl_s"),
    ],
)
def test_bad_task_is_refused_naming_the_field(
    engine: Engine, clock: Clock, spec: TaskSpec, field: str
) -> None:
    digest = engine.digest()
    with pytest.raises(InvalidArgument, match=field):
        apply(engine, clock, cmd.CreateTask(spec))
    assert engine.digest() == digest


def test_unknown_things_are_not_found(engine: Engine, clock: Clock) -> None:
    with pytest.raises(NotFound, match="queue"):
        create(engine, clock, queue_id="nope")
    with pytest.raises(NotFound, match="worker"):
        apply(engine, clock, cmd.SetActivity("ghost", "available"))
    with pytest.raises(NotFound, match="task"):
        apply(engine, clock, cmd.CompleteTask("task-404"))


def test_bad_target_expression_names_the_position(engine: Engine, clock: Clock) -> None:
    with pytest.raises(InvalidArgument, match=r"queue\.target_expression: position \d+"):
        apply(engine, clock, cmd.UpsertQueue(QueueConfig("q", target_expression="tier == ")))
    assert "q" not in engine.queues


def test_a_full_queue_refuses_new_tasks(engine: Engine, clock: Clock) -> None:
    apply(engine, clock, cmd.UpsertQueue(QueueConfig("small", depth_max=2)))
    create(engine, clock, queue_id="small")
    create(engine, clock, queue_id="small")
    with pytest.raises(ResourceExhausted, match="full"):
        create(engine, clock, queue_id="small")


def test_a_queue_with_open_tasks_cannot_be_deleted(engine: Engine, clock: Clock) -> None:
    create(engine, clock)
    with pytest.raises(FailedPrecondition, match="open tasks"):
        apply(engine, clock, cmd.DeleteQueue("support"))


def test_removing_a_worker_hands_its_offers_on(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "a")
    task_id = create(engine, clock).task.task_id
    add_worker(engine, clock, "b")
    assert offered_to(engine, task_id) == "a"
    apply(engine, clock, cmd.RemoveWorker("a"))
    assert offered_to(engine, task_id) == "b"
    apply(engine, clock, cmd.AcceptOffer("b", engine.get_task(task_id).reservation_id))
    with pytest.raises(FailedPrecondition, match="holds tasks"):
        apply(engine, clock, cmd.RemoveWorker("b"))
    engine.check_invariants()


def test_time_cannot_go_backwards(engine: Engine, clock: Clock) -> None:
    with pytest.raises(ValueError, match="backwards"):
        engine.apply(cmd.Tick(), clock.now_ms - 1)


def test_snapshots_copy_every_field(engine: Engine, clock: Clock) -> None:
    import dataclasses

    task = create(engine, clock, priority=3, customer_id="c").task
    for record in (engine.get_task(task.task_id), *engine.reservations.values()):
        copy = record.snapshot()
        assert copy == record and copy is not record
        assert [f.name for f in dataclasses.fields(copy)] == [
            f.name for f in dataclasses.fields(record)
        ]


# -- regressions ---------------------------------------------------------------------------------


def test_changing_costs_while_holding_tasks_keeps_capacity_exact(
    engine: Engine, clock: Clock
) -> None:
    profile = {"capacity_by_channel": {"chat": 2, "email": 1}, "total_capacity": 2.0}
    add_worker(engine, clock, "a", cost_by_channel={"chat": 1.0}, **profile)
    chat = create(engine, clock, channel="chat").task.task_id
    apply(engine, clock, cmd.AcceptOffer("a", engine.get_task(chat).reservation_id))
    add_worker(engine, clock, "a", cost_by_channel={"chat": 2.0}, **profile)  # now full
    email = create(engine, clock, channel="email").task.task_id
    assert engine.get_task(email).status is TaskStatus.PENDING
    apply(engine, clock, cmd.CompleteTask(chat))
    assert offered_to(engine, email) == "a"  # load 1 of 2
    second_chat = create(engine, clock, channel="chat").task.task_id
    assert engine.get_task(second_chat).status is TaskStatus.PENDING  # 1 + 2 > 2
    engine.check_invariants()


def test_a_lifo_queue_does_not_outrank_an_older_fifo_task(engine: Engine, clock: Clock) -> None:
    apply(engine, clock, cmd.UpsertQueue(QueueConfig("lifo", order=QueueOrder.LIFO)))
    fifo_task = create(engine, clock).task.task_id
    advance(clock, 60)
    create(engine, clock, queue_id="lifo")
    advance(clock, 60)
    add_worker(engine, clock, "a", capacity_by_channel={"voice": 1})
    assert offered_to(engine, fifo_task) == "a"


def test_a_retry_for_a_forgotten_task_is_refused_not_duplicated(
    engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("router.core.task_table.CLOSED_TASKS_KEPT_MAX", 1)
    spec = TaskSpec(channel="voice", queue_id="support")
    first = apply(engine, clock, cmd.CreateTask(spec, "req-1"))
    assert isinstance(first, CreatedTask)
    apply(engine, clock, cmd.CancelTask(first.task.task_id))
    apply(engine, clock, cmd.CancelTask(create(engine, clock).task.task_id))  # forgets the first
    with pytest.raises(FailedPrecondition, match="no longer kept"):
        apply(engine, clock, cmd.CreateTask(spec, "req-1"))
    other = TaskSpec(channel="chat", queue_id="support")  # the payload is still told apart
    with pytest.raises(AlreadyExists, match="different payload"):
        apply(engine, clock, cmd.CreateTask(other, "req-1"))


def test_a_retry_is_the_same_payload_whatever_the_order_of_its_attributes(
    engine: Engine, clock: Clock
) -> None:
    first = TaskSpec("voice", "support", attributes={"a": 1, "b": {"x": [1, 2], "y": None}})
    again = TaskSpec("voice", "support", attributes={"b": {"y": None, "x": [1, 2]}, "a": 1})
    created = apply(engine, clock, cmd.CreateTask(first, "req-1"))
    retried = apply(engine, clock, cmd.CreateTask(again, "req-1"))
    assert isinstance(created, CreatedTask) and isinstance(retried, CreatedTask)
    assert retried.deduplicated and retried.task.task_id == created.task.task_id
    changed = TaskSpec("voice", "support", attributes={"a": 2, "b": {"x": [1, 2], "y": None}})
    with pytest.raises(AlreadyExists):
        apply(engine, clock, cmd.CreateTask(changed, "req-1"))


def test_a_closed_task_is_kept_as_bytes_and_read_back_whole(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "a")
    spec = TaskSpec(
        channel="voice", queue_id="support", attributes={"notes": "n" * 500, "tags": ["x"]}
    )
    created = apply(engine, clock, cmd.CreateTask(spec, "req-1"))
    assert isinstance(created, CreatedTask)
    task_id = created.task.task_id
    apply(engine, clock, cmd.AcceptOffer("a", engine.get_task(task_id).reservation_id))
    completed = apply(engine, clock, cmd.CompleteTask(task_id)).record()
    assert task_id not in engine.tasks.open and isinstance(engine.tasks.closed[task_id][1], bytes)
    assert engine.get_task(task_id) == completed
    assert engine.copy_task(task_id).record() == completed
    retried = apply(engine, clock, cmd.CreateTask(spec, "req-1"))  # an idempotent retry
    assert isinstance(retried, CreatedTask) and retried.deduplicated
    assert retried.task == completed and retried.estimated_wait_ms is None
    with pytest.raises(FailedPrecondition, match="completed"):
        apply(engine, clock, cmd.CancelTask(task_id))
    engine.check_invariants()


def test_a_busy_worker_is_not_the_longest_idle(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "busy", capacity_by_channel={"chat": 3})
    first = create(engine, clock, channel="chat").task.task_id
    apply(engine, clock, cmd.AcceptOffer("busy", engine.get_task(first).reservation_id))
    advance(clock, 3000)
    add_worker(engine, clock, "idle", capacity_by_channel={"chat": 3})
    advance(clock, 600)
    second = create(engine, clock, channel="chat").task.task_id
    assert offered_to(engine, second) == "idle"


def test_timers_of_closed_tasks_are_swept(
    engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("router.core.timers._STALE_TIMERS_SWEPT_MIN", 10)
    add_worker(engine, clock, "a", capacity_by_channel={"voice": 1})
    for _ in range(200):
        task_id = create(engine, clock).task.task_id
        apply(engine, clock, cmd.AcceptOffer("a", engine.get_task(task_id).reservation_id))
        apply(engine, clock, cmd.CompleteTask(task_id))
    assert len(engine.timers) < 50  # 400 timers were set (offer expiry and time-to-live)


def test_tasks_of_the_same_millisecond_are_served_in_creation_order(
    engine: Engine, clock: Clock
) -> None:
    first = create(engine, clock, required_skills={"sales": 1}).task.task_id
    second = create(engine, clock, required_skills={"billing": 1}).task.task_id  # another group
    third = create(engine, clock, required_skills={"sales": 1}).task.task_id
    add_worker(
        engine, clock, "a", skills={"sales": 3, "billing": 3}, capacity_by_channel={"voice": 1}
    )
    assert offered_to(engine, first) == "a"
    apply(engine, clock, cmd.RejectOffer("a", engine.get_task(first).reservation_id))
    assert offered_to(engine, second) == "a"  # the same millisecond: creation order decides
    apply(engine, clock, cmd.RejectOffer("a", engine.get_task(second).reservation_id))
    assert offered_to(engine, third) == "a"


@pytest.mark.parametrize(
    "attributes",
    [
        {"tier": "gold", "score": 3.5, "vip": True, "n": 7, "none": None},
        {"nested": {"a": [1, 2, {"b": "c"}]}},
        {"x": "é" * 2000},
        {"a": [[[[[[[[[[[[[[["fifteen levels"]]]]]]]]]]]]]]]},
        {"counts": [1] * 7000},  # 14,012 bytes of JSON
    ],
)
def test_attributes_within_the_limit_are_accepted(
    engine: Engine, clock: Clock, attributes: dict[str, object]
) -> None:
    assert create(engine, clock, attributes=attributes).task.spec.attributes == attributes


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"x": "y" * ATTRIBUTES_BYTES_MAX}, "bytes as JSON"),
        ({"x": ["y" * 1000] * 20}, "bytes as JSON"),
        ({"x": math.nan}, r"^task.attributes.x: must be a finite number, got nan$"),
        ({"a": {"b": [0, 1, 2, -math.inf]}}, r"^task.attributes.a.b\[3\]: must be a finite"),
        ({"x": {1, 2}}, r"^task.attributes.x: is not a JSON value \(a set\)$"),
        ({"a b": {1: 2}}, r"""^task.attributes\['a b'\]: has a key that is not a string"""),
        ({"n": 2**53 + 1}, r"^task.attributes.n: must be an integer within"),
        (
            {"a": [[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]},
            r"^task.attributes.a(\[0\]){15}: nests deeper than 16 levels",
        ),
    ],
)
def test_attributes_over_the_limit_or_not_json_are_refused(
    engine: Engine, clock: Clock, attributes: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        create(engine, clock, attributes=attributes)


# -- results are copies made by the command ------------------------------------------------------


def test_worker_results_are_copies_later_commands_do_not_change(
    engine: Engine, clock: Clock
) -> None:
    upserted = apply(
        engine, clock, cmd.UpsertWorker(WorkerProfile("a", capacity_by_channel={"voice": 2}))
    )
    assert upserted.created and not upserted.worker.available
    went_available = apply(engine, clock, cmd.SetActivity("a", "available"))
    assert isinstance(went_available, WorkerCopy) and went_available.available
    create(engine, clock)  # offered to "a": its live record now holds the task
    assert engine.get_worker("a").task_ids and engine.get_worker("a").activity == "available"
    apply(engine, clock, cmd.SetActivity("a", "break"))
    assert not upserted.worker.worker.task_ids and upserted.worker.worker.activity == "offline"
    assert not went_available.worker.task_ids and went_available.worker.activity == "available"


def test_task_results_carry_the_position_and_wait_of_their_command(
    engine: Engine, clock: Clock
) -> None:
    first = create(engine, clock)
    second = create(engine, clock)
    assert (first.queue_position, second.queue_position) == (0, 1)
    raised = apply(engine, clock, cmd.UpdateTask(second.task.task_id, priority=5))
    assert isinstance(raised, TaskCopy)
    assert raised.queue_position == 0 == engine.queue_position(second.task.task_id)
    assert raised.estimated_wait_ms == engine.estimated_wait_ms(second.task.task_id)
    assert engine.queue_position(first.task.task_id) == 1
    apply(engine, clock, cmd.CancelTask(second.task.task_id))  # a later command
    assert raised.queue_position == 0 and raised.record().status is TaskStatus.PENDING
    assert raised.record().priority == 5
    canceled = apply(engine, clock, cmd.CancelTask(first.task.task_id))
    assert canceled.record().status is TaskStatus.CANCELED
    assert (canceled.queue_position, canceled.estimated_wait_ms) == (0, None)


def test_an_accepted_task_is_a_copy(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "a")
    task_id = create(engine, clock).task.task_id
    accepted = apply(engine, clock, cmd.AcceptOffer("a", engine.get_task(task_id).reservation_id))
    apply(engine, clock, cmd.CompleteTask(task_id))
    assert accepted.record().status is TaskStatus.ASSIGNED
    assert accepted.estimated_wait_ms == 0


def test_a_rejection_reason_reaches_the_offer_closed_event(engine: Engine, clock: Clock) -> None:
    add_worker(engine, clock, "a")
    task_id = create(engine, clock).task.task_id
    engine.take_events()
    apply(engine, clock, cmd.RejectOffer("a", engine.get_task(task_id).reservation_id, "on a call"))
    closed = [e for e in engine.take_events() if isinstance(e, OfferClosed)]
    assert [(e.reservation.status, e.reason) for e in closed] == [
        (ReservationStatus.REJECTED, "on a call")
    ]


def test_every_cancel_has_one_of_the_documented_origins(engine: Engine, clock: Clock) -> None:
    """The origin is the metric's `reason` label, which the README lists."""
    cancel = QueueAction(ActionKind.CANCEL, reason="sorry")
    ruled = QueueConfig("ruled", exception_rules=(ExceptionRule(TriggerKind.WAIT_TIME, cancel, 5),))
    # Open one minute a week, on Mondays; the clock stands on a Thursday.
    hours = BusinessHours("UTC", (OpenHours(Weekday.MONDAY, "00:00", "00:01"),))
    closed = QueueConfig("closed", business_hours=hours, after_hours_action=cancel)
    parked = QueueConfig("parked", pause_max_s=5, pause_expiry_action=PauseExpiryAction.CANCEL)
    for queue in (ruled, closed, parked):
        apply(engine, clock, cmd.UpsertQueue(queue))
    add_worker(engine, clock, "p")
    paused = create(engine, clock, queue_id="parked").task
    apply(engine, clock, cmd.AcceptOffer("p", engine.get_task(paused.task_id).reservation_id))
    apply(engine, clock, cmd.PauseTask(paused.task_id))
    apply(engine, clock, cmd.SetActivity("p", "offline"))
    apply(engine, clock, cmd.CancelTask(create(engine, clock).task.task_id))
    create(engine, clock, ttl_s=1)
    create(engine, clock, queue_id="ruled")
    create(engine, clock, queue_id="closed")
    advance(clock, 10)
    apply(engine, clock, cmd.Tick())
    origins = [event.origin for event in engine.take_events() if isinstance(event, TaskCanceled)]
    assert sorted(origins) == sorted(CANCEL_ORIGINS)


def test_a_task_offered_while_its_queue_changes_returns_under_the_new_configuration(
    engine: Engine, clock: Clock
) -> None:
    """A queue gains priority aging while one of its tasks is being offered: when the offer
    times out, the task waits under the new aging, exactly as in an engine restored from a
    snapshot taken after the change (which derives every open task afresh)."""
    add_worker(engine, clock, "busy", capacity_by_channel={"voice": 1})
    waiting = create(engine, clock).task.task_id  # offered to busy
    advance(clock, 1)
    offered = create(engine, clock, priority=1).task.task_id  # waits: busy is full
    apply(engine, clock, cmd.RejectOffer("busy", engine.get_task(waiting).reservation_id))
    assert offered_to(engine, offered) == "busy"  # the older waits, the higher-priority offered
    aging = QueueConfig("support", reservation_timeout_s=30.0, priority_aging_per_min=60.0)
    apply(engine, clock, cmd.UpsertQueue(aging))
    restored = snapshot.restore(snapshot.take(engine))
    advance(clock, 31)  # the offer times out in both
    apply(engine, clock, cmd.Tick())
    restored.apply(cmd.Tick(), clock.now_ms)
    assert engine.waiting.task_ids("support") == restored.waiting.task_ids("support")
    assert engine.digest() == restored.digest()


@pytest.mark.parametrize("held_as", [TaskStatus.ASSIGNED, TaskStatus.PAUSED])
def test_a_policy_that_loses_the_route_of_a_task_it_is_not_routing_keeps_the_task_routable(
    engine: Engine, clock: Clock, held_as: TaskStatus
) -> None:
    """A policy loses the filter and the steps that routed a task while the task is held (an
    agent has it, or it is paused): the task's route and step are kept within the new policy,
    and its priority derived from them, so that a snapshot restores it to the same state and it
    routes again when resumed (they pointed past the policy's end: the restore raised
    IndexError; and a held task kept the priority of its old step, which a restore re-derived:
    both found by the seeded simulation with snapshots)."""
    # (floats, as the journal gives them back: the digest compares encodings)
    apply(engine, clock, cmd.UpsertQueue(QueueConfig("support", reservation_timeout_s=30.0)))
    steps = (RoutingStep(timeout_s=5.0), RoutingStep(timeout_s=5.0), RoutingStep())
    vip = PolicyFilter("vip", "tier == 'vip'", Route("support", steps))
    policy = RoutingPolicy("main", filters=(vip,), default_route=Route("support"))
    apply(engine, clock, cmd.UpsertRoutingPolicy(policy))
    task_id = create(engine, clock, queue_id="", policy_id="main",
                     attributes={"tier": "vip"}).task.task_id  # fmt: skip
    advance(clock, 11)  # on its third step when it is offered
    add_worker(engine, clock, "ana")
    apply(engine, clock, cmd.AcceptOffer("ana", engine.get_task(task_id).reservation_id))
    assert engine.get_task(task_id).step_index == 2
    if held_as is TaskStatus.PAUSED:
        apply(engine, clock, cmd.PauseTask(task_id))
    raised = Route("support", (RoutingStep(priority_delta=2),))
    apply(engine, clock, cmd.UpsertRoutingPolicy(RoutingPolicy("main", default_route=raised)))
    task = engine.get_task(task_id)
    assert (task.status, task.route_index, task.step_index) == (held_as, DEFAULT_ROUTE, 0)
    assert task.priority == 2  # derived from its new step, as a restored engine derives it
    restored = snapshot.restore(snapshot.take(engine))
    assert restored.digest() == engine.digest()
    if held_as is TaskStatus.PAUSED:
        apply(engine, clock, cmd.SetActivity("ana", "break"))
        apply(engine, clock, cmd.ResumeTask(task_id))
        assert engine.get_task(task_id).status is TaskStatus.PENDING
    engine.check_invariants()
