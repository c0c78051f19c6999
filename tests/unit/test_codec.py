"""The journal codec and engine snapshots: every command round-trips, bad bytes are refused
with a clear error, and a snapshot restores the exact state."""

from __future__ import annotations

import contextlib
import math
import typing
from pathlib import Path

import msgspec
import pytest

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
    QueueOrder,
    Route,
    RoutingPolicy,
    RoutingStep,
    ScoringWeights,
    TaskSpec,
    TimelineSettings,
    TriggerKind,
    Weekday,
    WorkerProfile,
)

CK = "ck_" + "0123456789abcdef" * 2
# A customer key, as the API makes them.

EXAMPLES: list[cmd.Command] = [
    cmd.UpsertChannel("fax", "Fax"),
    cmd.UpsertActivity("lunch", False),
    cmd.UpsertQueue(
        QueueConfig(
            "q", "Q", "tier == 'gold'", ScoringWeights(skill=2.0), 10.0, 5.0, QueueOrder.LIFO, 7
        )
    ),
    cmd.UpsertQueue(
        QueueConfig(
            "sales",
            priority_aging_per_min=0.5,
            exception_rules=(
                ExceptionRule(
                    TriggerKind.WAIT_TIME,
                    QueueAction(ActionKind.MOVE_TO_QUEUE, queue_id="overflow"),
                    wait_s=90.0,
                ),
                ExceptionRule(
                    TriggerKind.QUEUE_LENGTH,
                    QueueAction(ActionKind.RAISE_PRIORITY, priority_delta=5),
                    queue_length=10,
                ),
            ),
            business_hours=BusinessHours(
                "Europe/Paris",
                (OpenHours(Weekday.MONDAY, "09:00", "17:30"),),
                ("2026-12-25",),
            ),
            after_hours_action=QueueAction(ActionKind.CANCEL, reason="closed"),
            offer_workers_max=3,
        )
    ),
    cmd.DeleteQueue("q"),
    cmd.UpsertRoutingPolicy(
        RoutingPolicy(
            "billing",
            "Billing",
            (
                PolicyFilter(
                    "vip",
                    "customer.tier == 'gold'",
                    Route(
                        "sales",
                        (
                            RoutingStep(20.0, {"billing": 5.0}),
                            RoutingStep(40.0, {"billing": 3.0}, "team == 'a'", True, 2, True),
                            RoutingStep(),
                        ),
                    ),
                ),
            ),
            Route("q"),
        )
    ),
    cmd.DeleteRoutingPolicy("billing"),
    cmd.UpsertWorker(
        WorkerProfile(
            "w",
            "W",
            {"tier": "gold", "n": {"a": [1, 2.5]}},
            {"billing": 4.5},
            ("en", "es"),
            0.7,
            {"voice": 1},
            3.0,
            {"voice": 3.0},
            "available",
        )
    ),
    cmd.UpsertWorker(WorkerProfile("w2")),
    cmd.RemoveWorker("w"),
    cmd.SetActivity("w", "break"),
    cmd.CreateTask(
        TaskSpec(
            "voice",
            "q",
            {"a": True},
            {"billing": 2.0},
            {"sales": 0.5},
            "es",
            3,
            "c1",
            -0.5,
            60.0,
            "w",
        ),
        "req-1",
    ),
    cmd.UpdateTask("t", priority=4),
    cmd.UpdateTask("t", attributes={"x": None}),
    cmd.CancelTask("t", "hung up"),
    cmd.AcceptOffer("w", "res-1"),
    cmd.RejectOffer("w", "res-1", "busy"),
    cmd.CompleteTask("t"),
    cmd.WrapUpTask("t"),
    cmd.SeedIds(bytes(range(32))),
    cmd.Tick(),
    cmd.TransferTask(
        "t",
        TransferMode.WARM,
        TransferTarget("q", required_skills={"billing": 4.0}),
        priority=3,
        wrap_up=True,
        reason="specialist",
    ),
    cmd.TransferTask("t", TransferMode.COLD, TransferTarget(worker_id="w"), allow_back=True),
    cmd.CancelTransfer("t", "xfer-1"),
    cmd.PauseTask("t", "customer away"),
    cmd.ResumeTask("t", known_agent_wait_s=30.0),
    cmd.AddParticipant("t", ParticipantRole.MONITOR, TransferTarget(worker_id="sup")),
    cmd.RemoveParticipant("t", "sup"),
    cmd.HandOverTask("t", "w2", wrap_up=True),
    cmd.UpsertChannel("chat", "Chat", requeue_after_disconnect_s=120.0),
    cmd.WorkerAttached("w", "available"),
    cmd.PresenceLost("w"),
    cmd.AllPresenceLost(),
    cmd.WorkerDetached("w", "break"),
    cmd.SetDraining("w", True),
    cmd.UpsertPresenceSettings(PresenceSettings(20.0, 5.0, "offline", 3, "away")),
    cmd.CreateTask(TaskSpec("chat", queue_id="q", customer_id=CK), customer_keyed=True),
    cmd.RecordOutcome("t", "w", "refund_issued", 2, b"\x00sealed", True, ("sales", "vip")),
    cmd.RecordAgentAction("t", "w", "refund_button", b"\x01sealed"),
    cmd.AppendTimelineEntry(CK, "ivr.pin_verified", 5, "ivr", b"\x02", ("ivr",), True),
    cmd.UpsertCustomerProfile(CK, "gold", "es", True, b"\x03"),
    cmd.EraseCustomer(CK),
    cmd.UpsertTimelineSettings(TimelineSettings(("name", "email"), 30, 100, 600.0)),
]


def test_every_command_type_has_a_journal_name() -> None:
    assert set(codec.COMMAND_TYPES.values()) == set(typing.get_args(cmd.AnyCommand))
    assert {type(c) for c in EXAMPLES} == set(typing.get_args(cmd.AnyCommand))


@pytest.mark.parametrize("command", EXAMPLES, ids=lambda c: type(c).__name__)
def test_commands_round_trip(command: cmd.Command) -> None:
    assert codec.decode_command(codec.encode_command(command)) == command


def test_a_batch_round_trips_with_its_time() -> None:
    batch = codec.Batch(1_700_000_000_123, tuple(EXAMPLES))
    assert codec.decode_batch(codec.encode_batch(batch)) == batch


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (["Explode", {}], "unknown command type 'Explode'"),
        (["CancelTask", {"task_id": 5}], "CancelTask"),
        ({"now_ms": 1.5, "commands": []}, "now_ms must be an integer"),
        ({"commands": []}, "not a journaled batch"),
    ],
)
def test_bad_documents_are_refused(document: object, message: str) -> None:
    decode = codec.decode_batch if isinstance(document, dict) else codec.decode_command
    with pytest.raises(codec.CodecError, match=message):
        decode(msgspec.msgpack.encode(document))


def test_bytes_that_are_not_msgpack_are_refused() -> None:
    with pytest.raises(codec.CodecError, match="not a journaled command"):
        codec.decode_command(b"\xc1")


def test_nan_survives_the_journal_so_validation_can_refuse_it() -> None:
    command = codec.normalize(cmd.UpsertWorker(WorkerProfile("w", skills={"x": math.nan})))
    assert isinstance(command, cmd.UpsertWorker)
    assert math.isnan(command.profile.skills["x"])


def test_normalize_gives_the_journaled_values() -> None:
    command = cmd.CreateTask(TaskSpec("voice", "q", required_skills={"billing": 2}))
    normalized = codec.normalize(command)
    assert isinstance(normalized, cmd.CreateTask)
    assert type(normalized.spec.required_skills["billing"]) is float


def test_an_empty_engine_snapshot_restores() -> None:
    engine = Engine()
    assert snapshot.restore(snapshot.take(engine)).digest() == engine.digest()


def test_bad_snapshots_are_refused() -> None:
    with pytest.raises(snapshot.SnapshotError, match="not a snapshot"):
        snapshot.restore(b"\x00garbage")
    document = msgspec.msgpack.decode(snapshot.take(Engine()))
    document["version"] = 99
    with pytest.raises(snapshot.SnapshotError, match="version 99"):
        snapshot.restore(msgspec.msgpack.encode(document))


V2_DATA = Path(__file__).parent / "fixtures" / "engine-v2.msgpack"
"""A version-2 snapshot and the journal that made it, written by the router before closed tasks
were kept as bytes (commit 7fabe44):

    engine, log, _ = tests.unit.test_simulation.run(5, 200)
    msgspec.msgpack.encode({
        "snapshot": snapshot.take(engine),
        "journal": [codec.encode_batch(codec.Batch(ms, (c,))) for c, ms in log],
    })
"""


def test_a_version_2_snapshot_restores_to_the_state_its_journal_gives() -> None:
    """Existing data folders hold version-2 snapshots: restored, they give the state (and the
    digest) that replaying their journal gives, closed tasks included."""
    saved = msgspec.msgpack.decode(V2_DATA.read_bytes())
    restored = snapshot.restore(saved["snapshot"])
    replayed = Engine()
    for data in saved["journal"]:
        batch = codec.decode_batch(data)
        for command in batch.commands:
            with contextlib.suppress(CoreError):
                replayed.apply(command, batch.now_ms)
    restored.check_invariants()
    assert len(restored.tasks.closed) == 49 and len(restored.tasks.open) == 13
    assert restored.digest() == replayed.digest()
    again = snapshot.restore(snapshot.take(restored))  # and on, as version 3
    assert msgspec.msgpack.decode(snapshot.take(restored))["version"] == snapshot.SNAPSHOT_VERSION
    assert again.digest() == replayed.digest()
