"""The customers' routing context (`router/core/customers.py`): what keyed tasks and the
timeline's commands record, what routing reads as `customer.*`, erasure, the settings, and
that every refused command leaves the digest unchanged."""

from __future__ import annotations

import re
from typing import TypeVar

import pytest

from router.core import codec, snapshot
from router.core import commands as cmd
from router.core.engine import Engine
from router.core.errors import CoreError, FailedPrecondition, InvalidArgument, NotFound
from router.core.events import (
    CustomerErased,
    OutcomeRecorded,
    TimelineEntryAppended,
)
from router.core.feed import EventType, to_feed
from router.core.limits import (
    CONTACTS_KEPT_PER_CUSTOMER_MAX,
    SEALED_BYTES_MAX,
    TAGS_PER_ENTRY_MAX,
)
from router.core.model import (
    PolicyFilter,
    QueueConfig,
    Route,
    RoutingPolicy,
    RoutingStep,
    TaskSpec,
    TaskStatus,
    TimelineSettings,
    WorkerProfile,
)

R = TypeVar("R")
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
CK = "ck_" + "a1" * 16
OTHER = "ck_" + "b2" * 16


class Scene:
    def __init__(self) -> None:
        self.engine = Engine()
        self.now_ms = 400 * DAY_MS  # past a year: entries may be too old to keep
        for queue_id in ("general", "specialists", "sales", "verified"):
            self.apply(cmd.UpsertQueue(QueueConfig(queue_id)))

    def apply(self, command: cmd.Command[R]) -> R:
        return self.engine.apply(codec.normalize(command), self.now_ms)

    def create(self, customer_key: str = CK, **fields: object) -> str:
        fields.setdefault("queue_id", "general")
        spec = TaskSpec("chat", customer_id=customer_key, **fields)  # type: ignore[arg-type]
        created = self.apply(cmd.CreateTask(spec, customer_keyed=True))
        return created.task.task_id

    def worker(self, worker_id: str, **fields: object) -> None:
        fields.setdefault("capacity_by_channel", {"chat": 1})
        fields.setdefault("activity", "available")
        self.apply(cmd.UpsertWorker(WorkerProfile(worker_id, **fields)))  # type: ignore[arg-type]


@pytest.fixture
def scene() -> Scene:
    return Scene()


def test_a_keyed_task_records_a_contact_an_unkeyed_one_does_not(scene: Scene) -> None:
    scene.apply(cmd.CreateTask(TaskSpec("chat", queue_id="general", customer_id="plain-1")))
    assert not scene.engine.customers.holds_something()
    scene.create()
    view = scene.engine.customer_context(CK)
    assert view is not None
    assert (view.contacts_24h, view.contacts_7d, view.last_contact_ms) == (1, 1, scene.now_ms)


def test_a_keyed_task_needs_a_customer_key(scene: Scene) -> None:
    digest = scene.engine.digest()
    spec = TaskSpec("chat", queue_id="general", customer_id="alice@example.com")
    with pytest.raises(InvalidArgument, match=r"task\.customer_id"):
        scene.apply(cmd.CreateTask(spec, customer_keyed=True))
    assert scene.engine.digest() == digest


def test_contacts_count_by_day_and_week_and_forget_older_ones(scene: Scene) -> None:
    scene.create(sentiment=-0.5)
    scene.now_ms += 3 * DAY_MS
    scene.create()
    scene.now_ms += 2 * HOUR_MS
    scene.create(sentiment=0.25)
    view = scene.engine.customer_context(CK)
    assert view is not None
    assert (view.contacts_24h, view.contacts_7d, view.last_sentiment) == (2, 3, 0.25)
    scene.now_ms += 8 * DAY_MS
    scene.create()
    context = scene.engine.customers.contexts[CK]
    assert len(context.contacts) == 1  # the others fell out of the week


def test_contacts_are_bounded(scene: Scene) -> None:
    for _ in range(CONTACTS_KEPT_PER_CUSTOMER_MAX + 5):
        scene.create()
        scene.now_ms += 1
    context = scene.engine.customers.contexts[CK]
    assert len(context.contacts) == CONTACTS_KEPT_PER_CUSTOMER_MAX
    scene.engine.check_invariants()


def _policy_to(queue_by_expression: list[tuple[str, str]], default: str = "general") -> cmd.Command:
    filters = tuple(
        PolicyFilter(f"to-{queue_id}", expression, Route(queue_id))
        for expression, queue_id in queue_by_expression
    )
    return cmd.UpsertRoutingPolicy(RoutingPolicy("p", filters=filters,
                                                 default_route=Route(default)))  # fmt: skip


def test_routing_reads_the_contacts_before_the_task(scene: Scene) -> None:
    scene.apply(_policy_to([("customer.contacts_24h >= 1", "specialists")]))
    first = scene.create(policy_id="p", queue_id="")
    second = scene.create(policy_id="p", queue_id="")
    tasks = scene.engine.tasks.open
    assert tasks[first].queue_id == "general"  # no contact before it
    assert tasks[second].queue_id == "specialists"
    # Evaluated again (a policy upsert): the same answers, whatever came after.
    scene.create(policy_id="p", queue_id="")
    scene.apply(_policy_to([("customer.contacts_24h >= 1", "specialists")]))
    assert tasks[first].queue_id == "general"
    assert tasks[second].queue_id == "specialists"


def test_an_unresolved_repeat_contact_waits_for_its_last_agent_then_a_specialist(
    scene: Scene,
) -> None:
    scene.worker("ann")
    first = scene.create()
    offer = scene.engine.tasks.open[first].offer_ids[0]
    scene.apply(cmd.AcceptOffer("ann", offer))
    scene.apply(cmd.RecordOutcome(first, "ann", "callback_needed", 2, tags=("billing",)))
    scene.apply(cmd.CompleteTask(first))
    scene.apply(cmd.UpsertQueue(QueueConfig("specialists", wrapup_s=0)))
    steps = (RoutingStep(timeout_s=60, known_agent=True), RoutingStep())
    policy = RoutingPolicy("p", filters=(
        PolicyFilter("unresolved", "customer.last_resolved == false", Route("specialists", steps)),
    ), default_route=Route("general"))  # fmt: skip
    scene.apply(cmd.UpsertRoutingPolicy(policy))
    scene.worker("sam")
    scene.apply(cmd.SetActivity("ann", "break"))
    scene.now_ms += HOUR_MS
    second = scene.create(policy_id="p", queue_id="")
    task = scene.engine.tasks.open[second]
    assert (task.queue_id, task.known_agent_id, task.status) == (
        "specialists",
        "ann",
        TaskStatus.PENDING,
    )  # sam is free, but the first step waits for ann
    scene.now_ms += 61_000
    scene.apply(cmd.Tick())
    assert scene.engine.reservations[task.offer_ids[0]].worker_id == "sam"


def test_tags_verified_tier_and_language_reach_the_document(scene: Scene) -> None:
    scene.apply(
        _policy_to([
            ("customer.verified", "verified"),
            ("customer.last_tags HAS 'sales'", "sales"),
        ])
    )  # fmt: skip
    sales = scene.create(OTHER)
    scene.apply(cmd.RecordOutcome(sales, "", "quote", 1, tags=("sales",)))
    assert scene.engine.tasks.open[scene.create(OTHER, policy_id="p", queue_id="")].queue_id == (
        "sales"
    )
    scene.apply(cmd.AppendTimelineEntry(CK, "ivr.pin_verified", identity_verified=True))
    assert scene.engine.tasks.open[scene.create(policy_id="p", queue_id="")].queue_id == "verified"
    scene.now_ms += 901_000  # past the default window of 900 s
    assert scene.engine.tasks.open[scene.create(policy_id="p", queue_id="")].queue_id == "general"
    scene.apply(cmd.UpsertCustomerProfile(CK, "gold", "es", True, b"sealed"))
    document = scene.engine.customers.document(CK, before_seq=10**6, at_ms=scene.now_ms)
    assert document is not None
    assert (document["tier"], document["language"], document["verified"]) == ("gold", "es", True)


def test_a_task_without_a_kept_customer_has_no_customer_object(scene: Scene) -> None:
    assert scene.engine.customers.document("plain", before_seq=1, at_ms=0) is None
    document = scene.engine.customers.document(CK, before_seq=1, at_ms=0, keyed=True)
    assert document == {"known": True, "contacts_24h": 0, "contacts_7d": 0, "last_tags": [],
                        "verified": False}  # fmt: skip


def test_outcomes_and_entries_emit_feed_events_with_ids(scene: Scene) -> None:
    task_id = scene.create()
    scene.engine.take_events()
    recorded = scene.apply(cmd.RecordOutcome(task_id, "", "refund", 1, b"note", True, ("x",)))
    appended = scene.apply(cmd.AppendTimelineEntry(CK, "order.placed", scene.now_ms - 5, "shop"))
    assert recorded.entry_id != appended.entry_id
    events = scene.engine.take_events()
    assert isinstance(events[0], OutcomeRecorded) and isinstance(events[1], TimelineEntryAppended)
    feed = to_feed(events, scene.now_ms)
    assert feed[0].type == EventType.OUTCOME_RECORDED
    assert (feed[0].customer_key, feed[0].sealed, feed[0].tags, feed[0].entry_id) == (
        CK,
        b"note",
        ("x",),
        recorded.entry_id,
    )
    assert (feed[1].kind, feed[1].source, feed[1].occurred_ms) == (
        "order.placed",
        "shop",
        scene.now_ms - 5,
    )


def test_task_created_carries_the_customer_key_only_when_keyed(scene: Scene) -> None:
    scene.engine.take_events()
    scene.create(sentiment=-0.5)
    scene.apply(cmd.CreateTask(TaskSpec("chat", queue_id="general", customer_id="plain")))
    keyed, plain = [
        e for e in to_feed(scene.engine.take_events(), 0) if e.type == EventType.TASK_CREATED
    ]
    assert (keyed.customer_key, keyed.sentiment) == (CK, -0.5)
    assert (plain.customer_key, plain.sentiment) == ("", 0.0)


def test_erasure_is_refused_while_a_task_is_open_then_forgets(scene: Scene) -> None:
    task_id = scene.create()
    digest = scene.engine.digest()
    with pytest.raises(FailedPrecondition, match=task_id):
        scene.apply(cmd.EraseCustomer(CK))
    assert scene.engine.digest() == digest
    scene.apply(cmd.CancelTask(task_id))
    scene.engine.take_events()
    erased = scene.apply(cmd.EraseCustomer(CK))
    assert (erased.contacts_forgotten, erased.known) == (1, True)
    assert scene.engine.customer_context(CK) is None
    assert scene.engine.histories.known_customer(CK) is None
    assert scene.engine.take_events() == [CustomerErased(CK, 1)]
    assert scene.apply(cmd.EraseCustomer(CK)).known is False


REFUSED: dict[str, tuple[cmd.Command[object], type[CoreError], str]] = {
    "outcome of an unknown task": (cmd.RecordOutcome("task-9"), NotFound, "task-9"),
    "outcome with a bad resolution": (cmd.RecordOutcome("T", resolution=7), InvalidArgument,
                                      "resolution"),
    "outcome with a bad disposition": (cmd.RecordOutcome("T", disposition="a b"),
                                       InvalidArgument, "disposition"),
    "outcome with too many tags": (
        cmd.RecordOutcome("T", tags=tuple(f"t{i}" for i in range(TAGS_PER_ENTRY_MAX + 1))),
        InvalidArgument, "tags",
    ),
    "outcome with a bad tag": (cmd.RecordOutcome("T", tags=("ok", "no way")), InvalidArgument,
                               "tags[1]"),
    "outcome with a huge note": (cmd.RecordOutcome("T", sealed_note=b"x" * (SEALED_BYTES_MAX + 1)),
                                 InvalidArgument, "note"),
    "outcome of an unkeyed task": (cmd.RecordOutcome("PLAIN"), FailedPrecondition, "customer"),
    "outcome of a task without customer": (cmd.RecordOutcome("NONE"), FailedPrecondition,
                                           "has no customer_id"),
    "action without worker": (cmd.RecordAgentAction("T", "", "refund"), InvalidArgument,
                              "worker_id"),
    "action without action": (cmd.RecordAgentAction("T", "w", ""), InvalidArgument, "action"),
    "entry with a bad key": (cmd.AppendTimelineEntry("alice", "k"), InvalidArgument,
                             "customer_id"),
    "entry without kind": (cmd.AppendTimelineEntry(CK, ""), InvalidArgument, "entry.kind"),
    "entry in the future": (cmd.AppendTimelineEntry(CK, "k", at_ms=10**15), InvalidArgument,
                            "at_ms"),
    "entry before the retention": (cmd.AppendTimelineEntry(CK, "k", at_ms=1), InvalidArgument,
                                   "retention"),
    "entry with a control char source": (cmd.AppendTimelineEntry(CK, "k", source="a\nb"),
                                         InvalidArgument, "entry.source"),
    "profile with a long tier": (cmd.UpsertCustomerProfile(CK, tier="g" * 33), InvalidArgument,
                                 "profile.tier"),
    "profile with a bad language": (cmd.UpsertCustomerProfile(CK, language="e s"),
                                    InvalidArgument, "profile.language"),
    "erase with a bad key": (cmd.EraseCustomer(""), InvalidArgument, "customer_id"),
    "settings with retention 0": (cmd.UpsertTimelineSettings(TimelineSettings(retention_days=0)),
                                  InvalidArgument, "retention_days"),
    "settings with too many entries": (
        cmd.UpsertTimelineSettings(TimelineSettings(entries_per_customer_max=10_001)),
        InvalidArgument, "entries_per_customer_max",
    ),
    "settings with a reserved key": (
        cmd.UpsertTimelineSettings(TimelineSettings(personal_attribute_keys=("channel",))),
        InvalidArgument, "personal_attribute_keys[0]",
    ),
    "settings with a key twice": (
        cmd.UpsertTimelineSettings(TimelineSettings(personal_attribute_keys=("a", "a"))),
        InvalidArgument, "personal_attribute_keys[1]",
    ),
    "settings with a window of 0": (
        cmd.UpsertTimelineSettings(TimelineSettings(identity_verification_window_s=0.0)),
        InvalidArgument, "identity_verification_window_s",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_command_changes_nothing(scene: Scene, case: str) -> None:
    task_id = scene.create()
    plain = scene.apply(cmd.CreateTask(TaskSpec("chat", queue_id="general", customer_id="p")))
    none = scene.apply(cmd.CreateTask(TaskSpec("chat", queue_id="general")))
    ids = {"T": task_id, "PLAIN": plain.task.task_id, "NONE": none.task.task_id}
    command, error, message = REFUSED[case]
    if isinstance(command, cmd.RecordOutcome | cmd.RecordAgentAction):
        command = type(command)(
            **{**_fields(command), "task_id": ids.get(command.task_id, command.task_id)}
        )
    digest = scene.engine.digest()
    with pytest.raises(error, match=re.escape(message)):
        scene.apply(command)
    assert scene.engine.digest() == digest


def _fields(command: object) -> dict[str, object]:
    return {name: getattr(command, name) for name in command.__slots__}  # type: ignore[attr-defined]


def test_settings_apply_and_are_kept_in_snapshots(scene: Scene) -> None:
    settings = TimelineSettings(("name", "email"), 30, 500, 60.0)
    assert scene.apply(cmd.UpsertTimelineSettings(settings)) == settings
    scene.create(sentiment=0.5)
    scene.apply(cmd.UpsertCustomerProfile(CK, "gold", "es", False, b"sealed"))
    restored = snapshot.restore(snapshot.take(scene.engine))
    assert restored.digest() == scene.engine.digest()
    assert restored.customers.settings == settings
    assert restored.customer_context(CK) == scene.engine.customer_context(CK)


def test_an_engine_without_customers_keeps_its_digest_shape() -> None:
    engine = Engine()
    assert "customers_context" not in engine.digest_state()
    engine.apply(cmd.UpsertTimelineSettings(TimelineSettings(retention_days=30)), 1)
    assert "customers_context" in engine.digest_state()


def test_an_attribute_object_named_customer_keeps_its_other_keys(scene: Scene) -> None:
    scene.apply(_policy_to([("customer.segment == 'smb' AND customer.known", "sales")]))
    attributes = {"customer": {"segment": "smb", "known": False}}
    task_id = scene.create(policy_id="p", queue_id="", attributes=attributes)
    assert scene.engine.tasks.open[task_id].queue_id == "sales"  # the context's `known` wins


def test_the_route_cache_never_answers_from_another_context() -> None:
    from router.core.policies import CompiledPolicy

    policy = RoutingPolicy(
        "p",
        filters=(
            PolicyFilter("repeat", "customer.contacts_24h >= 2", Route("specialists")),
            PolicyFilter("sales", "customer.last_tags HAS 'sales'", Route("sales")),
        ),
        default_route=Route("general"),
    )
    compiled = CompiledPolicy(policy)
    spec = TaskSpec("chat", customer_id=CK, policy_id="p")
    quiet = {"known": True, "contacts_24h": 0, "last_tags": []}
    repeat = {**quiet, "contacts_24h": 3}
    sales = {**quiet, "last_tags": ["sales"]}
    answers = [compiled.route_index(spec, context) for context in (quiet, repeat, sales, quiet)]
    assert answers == [-1, 0, 1, -1]
    assert compiled.route_index(spec) == -1  # no context at all


def test_the_longest_texts_fit_sealed() -> None:
    """The API's longest note, or summary with the largest data, sealed (a version byte, a
    96-bit nonce, a 128-bit tag) is within what the core accepts."""
    from router.core.limits import (
        ENTRY_DATA_BYTES_MAX,
        OUTCOME_NOTE_CHARS_MAX,
        TIMELINE_SUMMARY_CHARS_MAX,
    )

    overhead = 1 + 12 + 16
    assert OUTCOME_NOTE_CHARS_MAX * 4 + overhead <= SEALED_BYTES_MAX
    body = TIMELINE_SUMMARY_CHARS_MAX * 4 + ENTRY_DATA_BYTES_MAX + len('{"data":,"summary":""}')
    assert body + overhead <= SEALED_BYTES_MAX


def test_the_core_knows_customer_keys_as_the_privacy_module_makes_them() -> None:
    from router.core.customers import check_customer_key
    from router.privacy.sealing import customer_key, is_customer_key

    made = customer_key(b"k" * 32, "default", "alice@example.com")
    for text in (made, made.upper(), made[:-1], "alice", "ck_", made + "0"):
        try:
            check_customer_key("customer_id", text)
        except InvalidArgument:
            assert not is_customer_key(text), text
        else:
            assert is_customer_key(text), text
