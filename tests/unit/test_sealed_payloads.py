"""The core's side of sealed personal data: a task's `$sealed` attribute is opaque to it, and a
retried CreateTask counts it by its mac (the API seals again, with a new nonce, each time)."""

from __future__ import annotations

import pytest

from router.core import commands as cmd
from router.core.codec import normalize
from router.core.engine import CreatedTask, Engine
from router.core.errors import AlreadyExists
from router.core.model import QueueConfig, TaskSpec

CK = "ck_" + "ab" * 16


def _spec(mac: str, blob: str) -> TaskSpec:
    return TaskSpec(
        channel="voice", queue_id="support", customer_id=CK,
        attributes={"topic": "billing", "$sealed": {"mac": mac, "blob": blob}},
    )  # fmt: skip


def _create(engine: Engine, spec: TaskSpec, request_id: str) -> CreatedTask:
    command = normalize(cmd.CreateTask(spec, request_id, customer_keyed=True))
    result = engine.apply(command, 1_000_000)
    assert isinstance(result, CreatedTask)
    return result


@pytest.fixture
def engine() -> Engine:
    engine = Engine()
    engine.apply(cmd.UpsertQueue(QueueConfig("support")), 1_000_000)
    return engine


def test_a_retry_sealed_anew_is_the_same_request(engine: Engine) -> None:
    first = _create(engine, _spec("m1", "AAAA"), "r1")
    retried = _create(engine, _spec("m1", "BBBB"), "r1")
    assert retried.deduplicated and retried.task.task_id == first.task.task_id
    # The task keeps what the first request sealed.
    assert retried.task.spec.attributes["$sealed"] == {"mac": "m1", "blob": "AAAA"}


def test_other_personal_data_under_the_same_request_id_is_refused_unchanged(
    engine: Engine,
) -> None:
    _create(engine, _spec("m1", "AAAA"), "r1")
    digest = engine.digest()
    with pytest.raises(AlreadyExists, match="r1"):
        _create(engine, _spec("m2", "AAAA"), "r1")
    assert engine.digest() == digest


def test_a_keyed_task_remembers_its_customer_by_key(engine: Engine) -> None:
    created = _create(engine, _spec("m1", "AAAA"), "")
    assert created.task.spec.customer_id == CK
    assert engine.histories.known_customer(CK) is not None
