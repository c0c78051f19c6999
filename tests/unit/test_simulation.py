"""A seeded simulation of the engine: one seed drives the workload and the clock; invariants are
checked after every command, and replaying the command log gives the identical state and events.
A failure names the seed that reproduces it."""

from __future__ import annotations

import asyncio
import contextlib
import random

import pytest
from prometheus_client import CollectorRegistry

from router.clock import TestClock
from router.core import codec, snapshot
from router.core import commands as cmd
from router.core.conversation_model import ParticipantRole, TransferMode, TransferTarget
from router.core.engine import Engine
from router.core.errors import CoreError
from router.core.model import (
    ActionKind,
    BusinessHours,
    ExceptionRule,
    OpenHours,
    PolicyFilter,
    PresenceSettings,
    QueueAction,
    QueueConfig,
    Route,
    RoutingPolicy,
    RoutingStep,
    TaskSpec,
    TaskStatus,
    TimelineSettings,
    TriggerKind,
    Weekday,
    WorkerProfile,
)
from router.core.replay import replay
from router.obs.metrics import RouterMetrics
from router.service import Durability, RouterService
from router.store.formats import decode_entry
from router.store.memory import MemoryJournal, MemoryLease, MemoryStore
from router.store.recovery import recover

SKILLS = ("billing", "sales", "tech", "claims")
LANGUAGES = ("en", "es", "fr")
CHANNELS = ("voice", "chat", "email")


def random_worker(rng: random.Random, worker_id: str) -> WorkerProfile:
    return WorkerProfile(
        worker_id,
        attributes={"team": rng.choice(["a", "b"]), "senior": rng.random() < 0.3},
        skills={s: float(rng.randint(0, 5)) for s in rng.sample(SKILLS, rng.randint(1, 3))},
        languages=tuple(rng.sample(LANGUAGES, rng.randint(1, 2))),
        empathy=round(rng.random(), 2),
        capacity_by_channel={"voice": 1, "chat": rng.randint(1, 3), "email": 2},
        total_capacity=rng.choice([None, 3.0]),
        cost_by_channel={"voice": 3.0, "chat": 1.0, "email": 1.0},
        activity=rng.choice(["available", "available", "break"]),
    )


def random_sales_queue(rng: random.Random) -> QueueConfig:
    """The queue with every policy feature, its settings drawn at random (live reconfiguration
    re-evaluates its waiting tasks)."""
    rules = []
    if rng.random() < 0.7:
        rules.append(
            ExceptionRule(
                TriggerKind.WAIT_TIME,
                QueueAction(ActionKind.RAISE_PRIORITY, priority_delta=rng.randint(1, 3)),
                wait_s=float(rng.choice([20, 45])),
            )
        )
    if rng.random() < 0.5:
        rules.append(
            ExceptionRule(
                TriggerKind.WAIT_TIME,
                QueueAction(ActionKind.MOVE_TO_QUEUE, queue_id="overflow"),
                wait_s=float(rng.choice([60, 120])),
            )
        )
    if rng.random() < 0.5:
        rules.append(
            ExceptionRule(
                TriggerKind.QUEUE_LENGTH,
                QueueAction(ActionKind.MOVE_TO_QUEUE, queue_id="overflow"),
                queue_length=rng.randint(2, 6),
            )
        )
    if rng.random() < 0.5:
        rules.append(
            ExceptionRule(
                TriggerKind.STEPS_EXHAUSTED,
                QueueAction(ActionKind.CANCEL, reason="no agent"),
            )
        )
    batched = rng.random() < 0.3
    return QueueConfig(
        "sales",
        reservation_timeout_s=10,
        wrapup_s=3,
        priority_aging_per_min=rng.choice([0.0, 0.5, 2.0]),
        exception_rules=tuple(rules),
        offer_workers_max=1 if batched else rng.choice([1, 2, 3]),
        assignment_window_s=rng.choice([0.5, 2.0]) if batched else 0.0,
    )


def random_policy(rng: random.Random) -> RoutingPolicy:
    """A bullseye policy whose steps, filters and skips are drawn at random."""
    steps = (
        RoutingStep(timeout_s=float(rng.choice([10, 30])), known_agent=True),
        RoutingStep(
            timeout_s=float(rng.choice([10, 20])),
            required_skills={"billing": float(rng.choice([4, 5]))},
            skip_if_no_workers=rng.random() < 0.5,
        ),
        RoutingStep(
            timeout_s=float(rng.choice([15, 30])),
            worker_expression=rng.choice(["team == 'a'", "senior OR languages HAS 'es'"]),
            priority_delta=rng.choice([0, 2]),
        ),
        RoutingStep(timeout_s=rng.choice([0.0, 60.0])),
    )
    return RoutingPolicy(
        "main",
        filters=(
            # Keyed customers' context: a repeat contact left unresolved, tags, verification.
            PolicyFilter(
                "unresolved repeat",
                "customer.contacts_24h >= 1 AND customer.last_resolved == false",
                Route("support", steps[:1] + steps[3:]),
            ),
            PolicyFilter("sales tags", "customer.last_tags HAS 'sales'", Route("sales")),
            PolicyFilter("verified", "customer.verified AND channel == 'voice'", Route("vip")),
            PolicyFilter("gold", "tier == 'gold'", Route("sales", steps[rng.randint(0, 2) :])),
            PolicyFilter("vip", "tier == 'vip' AND channel != 'email'", Route("vip")),
        ),
        default_route=Route(rng.choice(["support", "sales"]), steps[rng.randint(1, 3) :]),
    )


HELD_TO = ["team == 'a'", "team == 'b'", "team == 'b' AND senior"]
"""Worker expressions of transfers (a cold transfer holds its task to one until assigned)."""


def conversation_command(rng: random.Random, engine: Engine) -> cmd.Command | None:
    """Transfers, pauses and participants on the tasks there are, or an answer to a consult
    offer (None when nothing fits)."""
    open_tasks = list(engine.tasks.open.values())
    assigned = [t for t in open_tasks if t.status is TaskStatus.ASSIGNED]
    paused = [t for t in open_tasks if t.status is TaskStatus.PAUSED]
    invites = list(engine.conversations.invites.items())
    roll = rng.random()
    worker_id = f"w{rng.randint(1, 14)}"
    queue_id = rng.choice(["", "support", "sales", "vip"])
    if roll < 0.25 and invites:
        reservation_id, task_id = rng.choice(invites)
        participant = next(
            p
            for p in engine.conversations.active[task_id].participants
            if p.reservation_id == reservation_id
        )
        if rng.random() < 0.7:
            return cmd.AcceptOffer(participant.worker_id, reservation_id)
        return cmd.RejectOffer(participant.worker_id, reservation_id, "busy")
    if roll < 0.30 and paused:
        wait_s = rng.choice([None, 0.0, 10.0])
        return cmd.ResumeTask(rng.choice(paused).task_id, known_agent_wait_s=wait_s)
    held_offers = [
        r
        for r in engine.reservations.values()
        if r.status.value == "pending" and engine.conversations.held_to_expression(r.task_id)
    ]
    if roll < 0.40 and held_offers:  # a task held to a cold transfer's expression is taken
        offer = rng.choice(held_offers)
        return cmd.AcceptOffer(offer.worker_id, offer.reservation_id)
    if not assigned:
        return None
    task = rng.choice(assigned)
    conversation = engine.conversations.active.get(task.task_id)
    if roll < 0.50:
        target = rng.choice(
            [
                TransferTarget(queue_id),
                TransferTarget(queue_id, worker_id=worker_id),
                TransferTarget(queue_id, required_skills={rng.choice(SKILLS): 2.0}),
                # cold: held to the expression until assigned (one a policy step uses too)
                TransferTarget(queue_id, worker_expression=rng.choice(HELD_TO)),
                TransferTarget(queue_id, worker_expression=rng.choice(HELD_TO)),
            ]
        )
        wrap_up = rng.random() < 0.3
        return cmd.TransferTask(
            task.task_id, rng.choice(list(TransferMode)), target,
            priority=rng.choice([None, 2]), wrap_up=wrap_up,
            allow_back=not wrap_up and rng.random() < 0.2,
        )  # fmt: skip
    if roll < 0.62:
        return cmd.PauseTask(task.task_id)
    if roll < 0.80:
        role = rng.choice([ParticipantRole.CONSULT, ParticipantRole.MONITOR])
        return cmd.AddParticipant(task.task_id, role, TransferTarget(queue_id, worker_id))
    participants = conversation.participants if conversation is not None else []
    if roll < 0.88 and participants:
        return cmd.RemoveParticipant(task.task_id, rng.choice(participants).worker_id)
    if roll < 0.94 and participants:
        wrap_up = rng.random() < 0.5
        return cmd.HandOverTask(task.task_id, rng.choice(participants).worker_id, wrap_up)
    if conversation is not None and conversation.transfers:
        return cmd.CancelTransfer(task.task_id, conversation.transfers[-1].transfer_id)
    return None


CUSTOMER_KEYS = [f"ck_{number:032x}" for number in range(1, 13)]
"""Customer keys, as the API makes them of customer ids (keyed tasks and timeline commands)."""


def timeline_command(rng: random.Random, engine: Engine) -> cmd.Command:
    """Outcomes, agent actions, appended entries, profiles, erasures (refused while the customer
    has open tasks) and the timeline settings."""
    roll = rng.random()
    task_ids = list(engine.tasks) or ["task-1"]
    customer_key = rng.choice(CUSTOMER_KEYS)
    if roll < 0.35:
        return cmd.RecordOutcome(
            rng.choice(task_ids), rng.choice(["", "w1", "w2"]), rng.choice(["", "refund"]),
            rng.choice([0, 1, 2, 2]), rng.randbytes(rng.choice([0, 12])), rng.random() < 0.3,
            tuple(rng.sample(["sales", "marketing", "complaint"], rng.randint(0, 2))),
        )  # fmt: skip
    if roll < 0.5:
        return cmd.RecordAgentAction(rng.choice(task_ids), "w1", "kb_search", rng.randbytes(8))
    if roll < 0.7:
        return cmd.AppendTimelineEntry(
            customer_key, rng.choice(["ivr.pin_verified", "order.placed"]),
            at_ms=engine.now_ms - rng.choice([0, 0, 5_000]) if engine.now_ms else 0,
            source="ivr", sealed_body=rng.randbytes(16), tags=("ivr",),
            identity_verified=rng.random() < 0.5,
        )  # fmt: skip
    if roll < 0.85:
        return cmd.UpsertCustomerProfile(
            customer_key, rng.choice(["", "gold"]), rng.choice(["", "es"]), rng.random() < 0.3,
            rng.randbytes(20),
        )  # fmt: skip
    if roll < 0.95:
        return cmd.EraseCustomer(customer_key)
    return cmd.UpsertTimelineSettings(
        TimelineSettings(("name",), rng.choice([30, 365]), 1000, rng.choice([60.0, 900.0]))
    )


def random_command(rng: random.Random, engine: Engine, step: int) -> cmd.Command:
    if rng.random() < 0.08:
        return timeline_command(rng, engine)
    if rng.random() < 0.15:
        command = conversation_command(rng, engine)
        if command is not None:
            return command
    roll = rng.random()
    pending_offers = [r for r in engine.reservations.values() if r.status.value == "pending"]
    assigned = [t for t in engine.tasks.open.values() if t.status is TaskStatus.ASSIGNED]
    wrapping = [t for t in engine.tasks.open.values() if t.status is TaskStatus.WRAPPING]
    if roll < 0.30:
        by_policy = rng.random() < 0.5
        keyed = rng.random() < 0.5
        return cmd.CreateTask(
            TaskSpec(
                channel=rng.choice(CHANNELS),
                queue_id="" if by_policy else rng.choice(["support", "sales", "vip"]),
                policy_id="main" if by_policy else "",
                attributes={"tier": rng.choice(["gold", "vip", "basic"])},
                known_agent_wait_s=rng.choice([0.0, 0.0, 15.0]),
                preferred_worker_id=rng.choice(["", "", "w3", "w15"]),
                required_skills={rng.choice(SKILLS): float(rng.randint(0, 4))}
                if rng.random() < 0.7
                else {},
                preferred_skills={rng.choice(SKILLS): 1.0} if rng.random() < 0.3 else {},
                language=rng.choice(["", "", "en", "es", "fr"]),
                priority=rng.choice([0, 0, 1, 5]),
                customer_id=rng.choice(CUSTOMER_KEYS) if keyed else f"c{rng.randint(1, 20)}",
                sentiment=round(rng.uniform(-1, 1), 2),
                ttl_s=rng.choice([0.0, 120.0]),
            ),
            client_request_id=rng.choice(["", f"r{rng.randint(1, 50)}"]),
            customer_keyed=keyed,
        )
    if roll < 0.50 and pending_offers:
        offer = rng.choice(pending_offers)
        return cmd.AcceptOffer(offer.worker_id, offer.reservation_id)
    if roll < 0.57 and pending_offers:
        offer = rng.choice(pending_offers)
        return cmd.RejectOffer(offer.worker_id, offer.reservation_id)
    if roll < 0.72 and assigned:
        return cmd.CompleteTask(rng.choice(assigned).task_id)
    if roll < 0.75 and wrapping:
        return cmd.WrapUpTask(rng.choice(wrapping).task_id)
    if roll < 0.80 and engine.tasks:
        return cmd.CancelTask(rng.choice(list(engine.tasks)))
    if roll < 0.84:
        return random_presence_command(rng)
    if roll < 0.88:
        return cmd.SetActivity(f"w{rng.randint(1, 12)}", rng.choice(["available", "break"]))
    if roll < 0.93:
        return cmd.UpsertWorker(random_worker(rng, f"w{rng.randint(1, 14)}"))
    if roll < 0.95:
        return cmd.RemoveWorker(f"w{rng.randint(1, 14)}")
    if roll < 0.96:
        return cmd.UpdateTask(
            rng.choice(list(engine.tasks) or ["task-1"]), priority=rng.randint(0, 9)
        )
    if roll < 0.965:
        return cmd.UpdateTask(
            rng.choice(list(engine.tasks) or ["task-1"]),
            attributes={"tier": rng.choice(["gold", "vip", "basic"])},
        )
    if roll < 0.97:
        return cmd.UpsertQueue(random_sales_queue(rng))
    if roll < 0.975:
        return cmd.UpsertRoutingPolicy(random_policy(rng))
    if roll < 0.98:
        target = rng.choice(["", "team == 'a'", "senior OR languages HAS 'es'"])
        return cmd.UpsertQueue(QueueConfig("vip", target_expression=target, wrapup_s=5))
    if roll < 0.995:
        return random_presence_command(rng)
    return cmd.Tick()


def random_presence_command(rng: random.Random) -> cmd.Command:
    """Agents' desktops connecting, dropping (grace, re-queue), saying goodbye, draining."""
    worker_id = f"w{rng.randint(1, 12)}"
    roll = rng.random()
    if roll < 0.35:
        return cmd.WorkerAttached(worker_id, rng.choice(["", "", "available", "break"]))
    if roll < 0.65:
        return cmd.PresenceLost(worker_id)
    if roll < 0.75:
        return cmd.WorkerDetached(worker_id, rng.choice(["", "break"]))
    if roll < 0.95:
        return cmd.SetDraining(worker_id, rng.random() < 0.6)
    return cmd.AllPresenceLost()


def run(seed: int, steps: int) -> tuple[Engine, list[tuple[cmd.Command, int]], list[object]]:
    rng = random.Random(seed)
    engine = Engine()
    log: list[tuple[cmd.Command, int]] = []
    events: list[object] = []
    now_ms = 1_700_000_000_000

    def apply(command: cmd.Command) -> None:
        command = codec.normalize(command)  # applied as journaled, as the service does
        log.append((command, now_ms))
        with contextlib.suppress(CoreError):
            engine.apply(command, now_ms)
        events.extend(engine.take_events())

    for command in setup_commands(rng):
        apply(command)
    for step in range(steps):
        now_ms += rng.choice([0, 0, 10, 500, 2_000, 15_000])
        apply(random_command(rng, engine, step))
        try:
            engine.check_invariants()
        except AssertionError as error:
            raise AssertionError(f"seed {seed}, step {step}: {error}") from error
    return engine, log, events


@pytest.mark.parametrize("seed", range(8))
def test_invariants_hold_under_a_random_workload(seed: int) -> None:
    engine, _, events = run(seed, 600)
    assert any(t.status is TaskStatus.COMPLETED for t in engine.tasks.values()), f"seed {seed}"
    assert events


@pytest.mark.parametrize("seed", range(3))
def test_invariants_hold_while_closed_tasks_are_forgotten(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With few closed tasks kept, the oldest are forgotten all along: the indexes follow, a
    snapshot restores them, and a replay forgets the same ones."""
    monkeypatch.setattr("router.core.task_table.CLOSED_TASKS_KEPT_MAX", 12)
    engine, log, _ = run(100 + seed, 400)
    assert len(engine.tasks.closed) == 12 and engine.identifiers.task_id(1) not in engine.tasks
    restored = snapshot.restore(snapshot.take(engine))
    restored.check_invariants()
    assert restored.digest() == engine.digest()
    replica = Engine()
    for command, now_ms in log:
        with contextlib.suppress(CoreError):
            replica.apply(command, now_ms)
    assert replica.digest() == engine.digest(), f"seed {seed}"


@pytest.mark.parametrize("seed", range(3))
def test_replaying_the_log_gives_the_same_state_and_events(seed: int) -> None:
    engine, log, events = run(seed, 400)
    replica = Engine()
    replayed: list[object] = []
    for command, now_ms in log:
        with contextlib.suppress(CoreError):
            replica.apply(command, now_ms)
        replayed.extend(replica.take_events())
    assert replica.digest() == engine.digest(), f"seed {seed}"
    assert replayed == events, f"seed {seed}"


@pytest.mark.parametrize("seed", range(3))
def test_a_restored_snapshot_behaves_as_the_original(seed: int) -> None:
    """Snapshot at every 50th step of a random workload; the restored engine has the same digest
    and, given the same later commands, emits the same events and reaches the same states."""
    engine, log, events = run(seed, 300)
    replica = Engine()
    replayed: list[object] = []
    for step, (command, now_ms) in enumerate(log):
        if step % 50 == 0:
            restored = snapshot.restore(snapshot.take(replica))
            assert restored.digest() == replica.digest(), f"seed {seed}, step {step}"
            restored.check_invariants()
            replica = restored
        with contextlib.suppress(CoreError):
            replica.apply(command, now_ms)
        replayed.extend(replica.take_events())
    assert replica.digest() == engine.digest(), f"seed {seed}"
    assert replayed == events, f"seed {seed}"


def test_a_journaled_log_replays_to_the_same_state() -> None:
    engine, log, events = run(11, 300)
    replica = Engine()
    replayed: list[object] = []
    for command, now_ms in log:
        batch = codec.decode_batch(codec.encode_batch(codec.Batch(now_ms, (command,))))
        for journaled in batch.commands:
            with contextlib.suppress(CoreError):
                replica.apply(journaled, batch.now_ms)
        replayed.extend(replica.take_events())
    assert replica.digest() == engine.digest()
    assert replayed == events


def setup_commands(rng: random.Random) -> list[cmd.Command]:
    """The queues, policy and workers a run starts with."""
    # Open 14:00-16:00 UTC on weekdays: the run starts at 22:13 UTC on a Tuesday, so tasks
    # arriving in support are moved to overflow after hours.
    hours = BusinessHours(
        "UTC", tuple(OpenHours(day, "14:00", "16:00") for day in list(Weekday)[:5])
    )
    after_hours = QueueAction(ActionKind.MOVE_TO_QUEUE, queue_id="overflow")
    setup: list[cmd.Command] = [
        cmd.SeedIds(rng.randbytes(32)),  # as the writer does: ids derived from a key
        cmd.UpsertQueue(QueueConfig("overflow", reservation_timeout_s=20)),
        cmd.UpsertQueue(QueueConfig("support", reservation_timeout_s=20)),
        cmd.UpsertQueue(
            QueueConfig(
                "support",
                reservation_timeout_s=20,
                business_hours=hours,
                after_hours_action=after_hours if rng.random() < 0.5 else None,
            )
        ),
    ]
    setup.append(cmd.UpsertQueue(random_sales_queue(rng)))
    setup.append(cmd.UpsertQueue(QueueConfig("vip", target_expression="senior", wrapup_s=5)))
    setup.append(cmd.UpsertRoutingPolicy(random_policy(rng)))
    setup.extend(cmd.UpsertWorker(random_worker(rng, f"w{i}")) for i in range(1, 11))
    setup.append(
        cmd.UpsertPresenceSettings(
            PresenceSettings(
                presence_grace_s=rng.choice([5.0, 10.0]),
                missed_offers_max=rng.choice([0, 2, 3]),
            )
        )
    )
    setup.append(cmd.UpsertChannel("chat", requeue_after_disconnect_s=rng.choice([0.0, 30.0])))
    setup.append(cmd.UpsertChannel("email", requeue_after_disconnect_s=60.0))
    setup.extend(cmd.WorkerAttached(f"w{i}") for i in range(1, 11) if rng.random() < 0.7)
    return setup


async def run_through_the_writer(
    seed: int, steps: int, *, snapshot_every_commands: int
) -> tuple[str, MemoryJournal]:
    """The random workload submitted to the real writer (`RouterService`, leading over the
    in-memory journal and lease) in virtual time, several commands at a time so that batches
    hold many; invariants checked after every group. Returns the live digest and the journal."""
    rng = random.Random(seed)
    store = MemoryStore()
    journal = MemoryJournal(store)
    clock = TestClock(1_700_000_000_000)
    durability = Durability(
        journal, MemoryLease(store, "sim:1", ttl_s=30), "0",
        snapshot_every_commands=snapshot_every_commands,
    )  # fmt: skip
    service = RouterService(Engine(), clock, RouterMetrics(CollectorRegistry()), durability)
    service.start()
    try:
        while not service.is_leader:
            await asyncio.sleep(0.001)

        async def submit(command: cmd.Command) -> None:
            with contextlib.suppress(CoreError):
                await service.submit(command)

        # The writer seeds the ids itself, first: the setup's SeedIds is refused (as it must).
        for command in setup_commands(rng):
            await submit(command)
        step = 0
        while step < steps:
            advance_ms = rng.choice([0, 0, 10, 500, 2_000, 15_000])
            if advance_ms:
                clock.advance(advance_ms)
            group = [
                random_command(rng, service.engine, step + i) for i in range(rng.randint(1, 6))
            ]
            await asyncio.gather(*(submit(command) for command in group))
            step += len(group)
            try:
                service.engine.check_invariants()
            except AssertionError as error:
                raise AssertionError(f"seed {seed}, step {step}: {error}") from error
        await asyncio.sleep(0.01)  # timers that fell due fire (and are journaled)
        digest = await service.state_digest()
    finally:
        await service.stop()
    assert digest.journaled_batches > 0
    return digest.digest, journal


@pytest.mark.parametrize("seed", range(3))
def test_the_real_writer_over_the_in_memory_journal_replays_to_the_same_state(seed: int) -> None:
    """Commands go through the real writer (batching, apply, journal append) onto the in-memory
    journal; replaying that journal from the start reaches the live digest."""
    live, journal = asyncio.run(run_through_the_writer(seed, 400, snapshot_every_commands=10**9))

    async def entries() -> list[tuple[str, bytes]]:
        return [entry async for entry in journal.entries_after("0")]

    replica = Engine()
    replay(replica, (decode_entry(data, entry_id) for entry_id, data in asyncio.run(entries())))
    assert replica.digest() == live, f"seed {seed}"


def test_the_real_writer_with_snapshots_recovers_to_the_same_state() -> None:
    """With snapshots taken along the way (and the journal trimmed behind them), a recovery
    (snapshot plus the journal after it) reaches the live digest."""
    seed = 21
    live, journal = asyncio.run(run_through_the_writer(seed, 400, snapshot_every_commands=60))
    recovered = asyncio.run(recover(journal))
    assert asyncio.run(journal.load_snapshot()) is not None, "no snapshot was taken"
    assert recovered.engine.digest() == live, f"seed {seed}"


@pytest.mark.parametrize("seed", [7, 9, 11])  # seeds with connected workers at the kill
def test_a_writer_killed_mid_workload_is_taken_over_with_nothing_acknowledged_lost(
    seed: int,
) -> None:
    """The workload (presence drops, transfers, pauses and consults among it) runs through a
    leader; the leader is killed in the middle (its task canceled with commands in flight, its
    lease not released). A second router recovers from the snapshot and the journal, takes the
    lease once it expires (issuing lost presence for the workers the state says are connected),
    and runs the rest of the workload. Every task whose creation the first leader acknowledged
    is in the second's state, invariants hold throughout, and a recovery of the whole journal
    reaches the second leader's digest."""
    asyncio.run(_kill_in_the_middle(seed=seed, steps_before=250, steps_after=250))


async def _kill_in_the_middle(*, seed: int, steps_before: int, steps_after: int) -> None:
    rng = random.Random(seed)
    lease_now_ms = [0]
    store = MemoryStore(clock_ms=lambda: lease_now_ms[0])
    journal = MemoryJournal(store)
    clock = TestClock(1_700_000_000_000)

    def router(engine: Engine, address: str, last_entry_id: str) -> RouterService:
        durability = Durability(
            journal, MemoryLease(store, address, ttl_s=30), last_entry_id,
            snapshot_every_commands=60,
        )  # fmt: skip
        return RouterService(engine, clock, RouterMetrics(CollectorRegistry()), durability)

    first = router(Engine(), "sim:1", "0")
    first.start()
    acknowledged: list[str] = []
    try:
        await _lead(first)
        for command in setup_commands(rng):
            await _submit(first, command, acknowledged)
        await _drive(first, rng, clock, steps_before, acknowledged, seed)
        # Killed with a group of commands in flight: whatever of it was not journaled is lost,
        # and none of it was acknowledged.
        group = [random_command(rng, first.engine, steps_before + i) for i in range(6)]
        in_flight = [asyncio.ensure_future(_submit(first, c, [])) for c in group]
        await asyncio.sleep(0)
    finally:
        await first.stop()  # cancels the writer: no lease release, no goodbye
    for future in in_flight:
        future.cancel()
    connected = first.engine.presence.connected_count()

    lease_now_ms[0] += 31_000  # the dead leader's lease runs out
    recovered = await recover(journal)
    second = router(recovered.engine, "sim:2", recovered.last_entry_id)
    second.start()
    try:
        await _lead(second)
        await asyncio.sleep(0.01)  # its AllPresenceLost is applied
        engine = second.engine
        missing = [task_id for task_id in acknowledged if task_id not in engine.tasks]
        assert not missing, f"seed {seed}: acknowledged tasks lost in the takeover: {missing}"
        if connected:
            lost = [w for w in engine.presence.workers.values() if w.lost_ms]
            assert lost, f"seed {seed}: no worker lost its presence at the takeover"
        engine.check_invariants()
        await _drive(second, rng, clock, steps_after, acknowledged, seed)
        await asyncio.sleep(0.01)
        live = (await second.state_digest()).digest
    finally:
        await second.stop()
    assert (await recover(journal)).engine.digest() == live, f"seed {seed}"


async def _lead(service: RouterService) -> None:
    for _ in range(5_000):
        if service.is_leader:
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the router never took the lease")


async def _submit(service: RouterService, command: cmd.Command, created: list[str]) -> None:
    """Submits a command; the id of a task it created is recorded once acknowledged."""
    with contextlib.suppress(CoreError):
        result = await service.submit(command)
        if isinstance(command, cmd.CreateTask):
            created.append(result.task.task_id)


async def _drive(
    service: RouterService,
    rng: random.Random,
    clock: TestClock,
    steps: int,
    created: list[str],
    seed: int,
) -> None:
    """The random workload, several commands at a time, invariants checked after each group."""
    step = 0
    while step < steps:
        advance_ms = rng.choice([0, 0, 10, 500, 2_000, 15_000])
        if advance_ms:
            clock.advance(advance_ms)
        group = [random_command(rng, service.engine, step + i) for i in range(rng.randint(1, 6))]
        await asyncio.gather(*(_submit(service, command, created) for command in group))
        step += len(group)
        try:
            service.engine.check_invariants()
        except AssertionError as error:
            raise AssertionError(f"seed {seed}, step {step}: {error}") from error
