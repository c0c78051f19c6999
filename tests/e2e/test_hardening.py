"""Regressions of issue 14's probes: each malformed request that was answered UNKNOWN (with a
Python exception in the message), accepted without limit, or silently misread, is now refused
with INVALID_ARGUMENT naming the field, and the router goes on serving."""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import clock_service_pb2 as cpb
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from tests.e2e.raw import Stubs
from tests.fuzz.strategies import deep_attributes_bytes

INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def stubs(stubs: Stubs) -> Stubs:
    """The shared stubs, with a queue, a worker and a task."""
    stubs.queue("support")
    stubs.worker("ana")
    return stubs


def refused(call: Any, request: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as raised:
        call(request, timeout=10)
    return raised.value.code(), raised.value.details() or ""


def attributes(document: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(document)
    return struct


# -- attributes ----------------------------------------------------------------------------------


@pytest.mark.parametrize("number", [math.nan, math.inf, -math.inf], ids=str)
def test_a_non_finite_number_in_attributes_is_refused_naming_its_path(
    stubs: Stubs, number: float
) -> None:
    document = attributes({"a": {"b": [1, 2, 3, number]}})
    expected = f"task.attributes.a.b[3]: must be a finite number, got {number}"
    task = pb.Task(channel="voice", queue_id="support", attributes=document)
    create = tpb.CreateTaskRequest(task=task)
    assert refused(stubs.tasks.CreateTask, create) == (INVALID, expected)

    task_id = stubs.create().task.task_id
    update = tpb.UpdateTaskRequest(task_id=task_id, attributes=document)
    assert refused(stubs.tasks.UpdateTask, update) == (INVALID, expected.replace("task.", "", 1))

    worker = wpb.UpsertWorkerRequest(worker=pb.Worker(worker_id="bo", attributes=document))
    assert refused(stubs.workers.UpsertWorker, worker) == (
        INVALID, expected.replace("task.", "worker.", 1)
    )  # fmt: skip


def test_attributes_nested_past_the_limit_are_refused_naming_the_path(stubs: Stubs) -> None:
    document: dict[str, Any] = {"leaf": 1}
    for _ in range(20):
        document = {"a": document}
    task = pb.Task(channel="voice", queue_id="support", attributes=attributes(document))
    code, message = refused(stubs.tasks.CreateTask, tpb.CreateTaskRequest(task=task))
    assert code == INVALID
    assert message == "task.attributes" + ".a" * 16 + (
        ": nests deeper than 16 levels of objects and arrays"
    )


def test_attributes_nested_past_what_protobuf_decodes_are_refused(
    stubs: Stubs, channel: grpc.Channel
) -> None:
    raw = channel.unary_unary("/switchboard.v1.TaskService/CreateTask")
    code, message = refused(raw, deep_attributes_bytes(40))
    assert code == INVALID
    assert message == (
        "request is not a valid switchboard.v1.CreateTaskRequest: its messages nest deeper than "
        "protobuf decodes (attributes may nest at most 16 levels)"
    )


def test_attributes_are_measured_with_integers_as_the_client_wrote_them(stubs: Stubs) -> None:
    """{"counts": [1, 1, ...]} of 15,002 bytes was measured as 29,992 (each 1 as 1.0)."""
    counts = {"counts": [1] * 7_495}  # 15,002 bytes of compact JSON
    created = stubs.create(attributes=attributes(counts)).task
    assert list(created.attributes["counts"]) == [1] * 7_495
    over = attributes({"counts": [1] * 8_189})  # 16,390 bytes
    task = pb.Task(channel="voice", queue_id="support", attributes=over)
    assert refused(stubs.tasks.CreateTask, tpb.CreateTaskRequest(task=task)) == (
        INVALID, "task.attributes: is 16390 bytes as JSON, the limit is 16384 bytes"
    )  # fmt: skip


# -- bytes that are not a message ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "body", "message"),
    [
        (
            "TaskService/CreateTask",
            b"\xff\xff\xff\x07garbage",
            "request is not a valid switchboard.v1.CreateTaskRequest: the bytes do not decode "
            "(Wire format was corrupt)",
        ),
        (
            "WorkerService/UpsertWorker",  # worker.worker_id: not UTF-8
            b"\x0a\x04\x0a\x02\xc3\x28",
            "request is not a valid switchboard.v1.UpsertWorkerRequest: the bytes do not decode",
        ),
    ],
    ids=["garbage", "not-utf8"],
)
def test_bytes_that_are_not_the_message_are_refused(
    stubs: Stubs, channel: grpc.Channel, method: str, body: bytes, message: str
) -> None:
    code, details = refused(channel.unary_unary(f"/switchboard.v1.{method}"), body)
    assert code == INVALID
    assert details.startswith(message)


def test_a_connect_stream_message_that_is_not_a_message_ends_the_stream(
    stubs: Stubs, channel: grpc.Channel
) -> None:
    connect = channel.stream_stream("/switchboard.v1.WorkerService/Connect")
    hello = wpb.ConnectRequest(hello=wpb.ConnectRequest.Hello(worker_id="ana"))
    with pytest.raises(grpc.RpcError) as raised:
        list(connect(iter([hello.SerializeToString(), b"\xff\xff"]), timeout=10))
    assert raised.value.code() == INVALID
    assert (raised.value.details() or "").startswith(
        "request is not a valid switchboard.v1.ConnectRequest: the bytes do not decode"
    )


# -- page tokens and sizes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("²", "page_token: is not a next_page_token returned by this call"),
        ("9" * 5000, "page_token: is 5000 characters long, the limit is 256"),
        ("12", "page_token: is not a next_page_token returned by this call"),
    ],
    ids=["superscript", "5000-digits", "a-bare-number"],
)
def test_a_malformed_page_token_is_refused(stubs: Stubs, token: str, message: str) -> None:
    list_tasks = tpb.ListTasksRequest(page_token=token)
    assert refused(stubs.tasks.ListTasks, list_tasks) == (INVALID, message)
    list_workers = wpb.ListWorkersRequest(page_token=token)
    assert refused(stubs.workers.ListWorkers, list_workers) == (INVALID, message)


def test_a_page_token_is_bound_to_its_listing_and_filters(stubs: Stubs) -> None:
    for _ in range(3):
        stubs.create(channel="chat")
    first = stubs.tasks.ListTasks(tpb.ListTasksRequest(page_size=1, channel="chat"), timeout=5)
    token = first.next_page_token
    assert token
    again = tpb.ListTasksRequest(page_size=1, channel="chat", page_token=token)
    assert stubs.tasks.ListTasks(again, timeout=5).tasks[0].task_id != first.tasks[0].task_id

    other_filter = tpb.ListTasksRequest(page_size=1, channel="voice", page_token=token)
    assert refused(stubs.tasks.ListTasks, other_filter) == (
        INVALID,
        "page_token: was returned for other filters: repeat the first page's filters, or start "
        "again with an empty page_token",
    )
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    forged = tpb.ListTasksRequest(page_size=1, channel="chat", page_token=tampered)
    assert refused(stubs.tasks.ListTasks, forged) == (
        INVALID, "page_token: is not a next_page_token returned by this call"
    )  # fmt: skip
    other_listing = wpb.ListWorkersRequest(page_token=token)
    assert refused(stubs.workers.ListWorkers, other_listing) == (
        INVALID, "page_token: is not a next_page_token returned by this call"
    )  # fmt: skip


def test_a_page_size_over_the_maximum_is_refused(stubs: Stubs) -> None:
    assert refused(stubs.tasks.ListTasks, tpb.ListTasksRequest(page_size=1001)) == (
        INVALID, "page_size: must be between 0 and 1000 (0: 100), got 1001"
    )  # fmt: skip


def test_an_unknown_status_filter_is_refused(stubs: Stubs) -> None:
    stubs.create()
    assert refused(stubs.tasks.ListTasks, tpb.ListTasksRequest(status=99)) == (  # type: ignore[arg-type]
        INVALID, "status: unknown value 99"
    )  # fmt: skip


# -- lengths -------------------------------------------------------------------------------------


def test_text_over_its_limit_is_refused_naming_the_field_and_the_limit(stubs: Stubs) -> None:
    task_id = stubs.create().task.task_id
    cancel = tpb.CancelTaskRequest(task_id=task_id, reason="r" * 300)
    assert refused(stubs.tasks.CancelTask, cancel) == (
        INVALID, "reason: is 300 characters long, the limit is 256"
    )  # fmt: skip
    assert stubs.get(task_id).status == pb.TASK_STATUS_RESERVED  # offered to ana, not canceled

    queue = apb.UpsertQueueRequest(queue=pb.Queue(queue_id="q2", display_name="d" * 300))
    assert refused(stubs.admin.UpsertQueue, queue) == (
        INVALID, "queue.display_name: is 300 characters long, the limit is 256"
    )  # fmt: skip

    worker = wpb.UpsertWorkerRequest(worker=pb.Worker(worker_id="bo", display_name="x" * 10**6))
    assert refused(stubs.workers.UpsertWorker, worker) == (
        INVALID, "worker.display_name: is 1000000 characters long, the limit is 256"
    )  # fmt: skip


def test_a_long_value_is_quoted_short_and_the_status_is_not_resource_exhausted(
    stubs: Stubs,
) -> None:
    """A message that quoted a 5,000-character value overflowed gRPC's 16 KiB header limit:
    the client saw RESOURCE_EXHAUSTED."""
    too_long = wpb.SetActivityRequest(worker_id="ana", activity="z" * 5000)
    assert refused(stubs.workers.SetActivity, too_long) == (
        INVALID, "activity: is 5000 characters long, the limit is 128"
    )  # fmt: skip
    unknown = wpb.SetActivityRequest(worker_id="ana", activity="z" * 100)
    assert refused(stubs.workers.SetActivity, unknown) == (
        INVALID, f"activity: unknown activity {'z' * 64!r}… (100 characters)"
    )  # fmt: skip


# -- fields the router would ignore, values it does not know -------------------------------------


def test_a_client_request_id_on_the_task_is_refused(stubs: Stubs) -> None:
    """It was dropped: two creates made two tasks."""
    task = pb.Task(channel="voice", queue_id="support", client_request_id="call-1")
    assert refused(stubs.tasks.CreateTask, tpb.CreateTaskRequest(task=task)) == (
        INVALID,
        "task.client_request_id: is output only: give the idempotency key as "
        "CreateTaskRequest.client_request_id",
    )


@pytest.mark.parametrize(
    "fields",
    [{"task_id": "t-9"}, {"status": pb.TASK_STATUS_COMPLETED}, {"created_at_ms": 5}],
    ids=lambda fields: next(iter(fields)),
)
def test_an_output_only_task_field_is_refused(stubs: Stubs, fields: dict[str, Any]) -> None:
    task = pb.Task(channel="voice", queue_id="support", **fields)
    name = next(iter(fields))
    assert refused(stubs.tasks.CreateTask, tpb.CreateTaskRequest(task=task)) == (
        INVALID, f"task.{name}: is output only (set by the router)"
    )  # fmt: skip


def test_an_output_only_worker_field_is_refused(stubs: Stubs) -> None:
    worker = wpb.UpsertWorkerRequest(worker=pb.Worker(worker_id="bo", task_ids=["t-1"]))
    assert refused(stubs.workers.UpsertWorker, worker) == (
        INVALID, "worker.task_ids: is output only (set by the router)"
    )  # fmt: skip


def test_an_unknown_queue_order_is_refused(stubs: Stubs) -> None:
    queue = apb.UpsertQueueRequest(queue=pb.Queue(queue_id="q2", order=9))  # type: ignore[arg-type]
    assert refused(stubs.admin.UpsertQueue, queue) == (INVALID, "queue.order: unknown value 9")


# -- the test clock ------------------------------------------------------------------------------


def test_advancing_the_test_clock_by_the_largest_int64_is_refused_and_the_router_serves_on(
    stubs: Stubs,
) -> None:
    request = cpb.AdvanceTimeRequest(duration_ms=2**63 - 1)
    assert refused(stubs.clock.AdvanceTime, request) == (
        INVALID, f"duration_ms: must be between 1 and 31622400000, got {2**63 - 1}"
    )  # fmt: skip
    before = stubs.clock.GetTime(cpb.GetTimeRequest(), timeout=5).now_ms
    year_ms = 366 * 24 * 3600 * 1000
    moved = stubs.clock.AdvanceTime(cpb.AdvanceTimeRequest(duration_ms=year_ms), timeout=5)
    assert moved.now_ms == before + year_ms
    assert stubs.create().task.status == pb.TASK_STATUS_RESERVED
