"""The List calls over real gRPC, as a client with gRPC's default limits meets them: every page
fits a 4 MiB receive limit, and walking the page tokens returns every item exactly once, in
order, whatever cuts a page short (its count, its bytes, the tasks one call examines)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router.api.paging import PAGE_BYTES_MAX, PAGE_SIZE_MAX
from router.core.limits import SKILLS_PER_WORKER_MAX
from router.server import ServerConfig
from tests.conftest import ServerThread
from tests.e2e.raw import Stubs

DEFAULT_RECEIVE_BYTES_MAX = 4 * 1024 * 1024
"""What a gRPC client receives at most unless told otherwise."""


@pytest.fixture
def stubs(stubs: Stubs) -> Stubs:
    """The shared stubs, with the queue these tests use."""
    stubs.queue("support")
    return stubs


def big_attributes(index: int, size_bytes: int) -> struct_pb2.Struct:
    attributes = struct_pb2.Struct()
    attributes.update({"index": index, "notes": "n" * size_bytes})
    return attributes


def walk(list_page: Callable[[str], Any], items: Callable[[Any], list[Any]]) -> list[list[Any]]:
    """Every page of a listing, following next_page_token until it is empty."""
    pages = []
    token = ""
    while True:
        page = list_page(token)
        assert page.ByteSize() <= PAGE_BYTES_MAX < DEFAULT_RECEIVE_BYTES_MAX
        pages.append(items(page))
        token = page.next_page_token
        if not token:
            return pages
        assert len(pages) < 10_000, "the walk does not end"


def list_tasks(stubs: Stubs, **request: Any) -> list[list[str]]:
    def page(token: str) -> tpb.ListTasksResponse:
        return stubs.tasks.ListTasks(tpb.ListTasksRequest(page_token=token, **request), timeout=10)

    return walk(page, lambda reply: [task.task_id for task in reply.tasks])


def flat(pages: list[list[str]]) -> list[str]:
    return [item for page in pages for item in page]


# -- ListTasks ---------------------------------------------------------------------------------


def test_large_tasks_page_by_bytes_for_a_default_client(stubs: Stubs) -> None:
    """320 tasks of 14 KB attributes (4.5 MB in all): one page of 1,000 would not fit a
    default client; each page is cut to fit, and the walk returns every task once, in order."""
    created = [stubs.create(attributes=big_attributes(i, 14_000)).task.task_id for i in range(320)]
    pages = list_tasks(stubs, page_size=1000)
    assert len(pages) >= 2 and all(pages)
    assert flat(pages) == created
    page = stubs.tasks.ListTasks(tpb.ListTasksRequest(page_size=1000), timeout=10)
    assert page.tasks[0].attributes["notes"] == "n" * 14_000  # whole, not truncated


def test_filters_combine_with_paging(stubs: Stubs) -> None:
    stubs.queue("sales")
    stubs.worker("ana", capacity_by_channel={"chat": 100})
    created: list[tuple[str, str, str]] = []
    for i in range(60):
        queue_id, channel = ("support", "sales")[i % 2], ("voice", "chat", "chat")[i % 3]
        task_id = stubs.create(queue_id=queue_id, channel=channel).task.task_id
        created.append((task_id, queue_id, channel))

    def expected(queue_id: str = "", channel: str = "") -> list[str]:
        return [
            task_id
            for task_id, queue, chan in created
            if queue_id in ("", queue) and channel in ("", chan)
        ]

    # ana (chat capacity 100) is offered every chat task: they are reserved, on her.
    assert flat(list_tasks(stubs, worker_id="ana", page_size=7)) == expected(channel="chat")
    pages = list_tasks(stubs, queue_id="sales", channel="voice", page_size=3)
    assert flat(pages) == expected("sales", "voice") and len(pages) == 4
    reserved = list_tasks(
        stubs, queue_id="support", status=pb.TASK_STATUS_RESERVED, channel="chat", page_size=4
    )
    assert flat(reserved) == expected("support", "chat")
    pending = list_tasks(stubs, status=pb.TASK_STATUS_PENDING, channel="chat", page_size=4)
    assert flat(pending) == []
    assert flat(list_tasks(stubs, queue_id="nowhere")) == []


def test_the_scan_budget_gives_short_pages_that_still_walk_everything(
    stubs: Stubs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call examines a bounded number of tasks: past it, the page holds what was found so
    far (maybe nothing) and a token; walking on still finds every match."""
    monkeypatch.setattr("router.api.tasks.TASKS_SCANNED_MAX", 5)
    stubs.queue("sales")
    wanted = []
    for i in range(40):  # support's voice tasks: the 1st and every 10th
        channel = "voice" if i % 10 == 0 else "chat"
        task_id = stubs.create(channel=channel).task.task_id
        stubs.create(queue_id="sales", channel="voice")
        if channel == "voice":
            wanted.append(task_id)
    pages = list_tasks(stubs, queue_id="support", channel="voice", page_size=100)
    assert flat(pages) == wanted
    assert len(pages) == 8 and [] in pages  # 40 candidates, 5 a call


def test_closed_tasks_are_listed_and_read_whole(stubs: Stubs) -> None:
    notes = big_attributes(0, 5_000)
    created = [stubs.create(attributes=notes).task.task_id for _ in range(12)]
    for task_id in created[::3]:
        stubs.tasks.CancelTask(tpb.CancelTaskRequest(task_id=task_id, reason="test"), timeout=5)
    canceled = list_tasks(stubs, status=pb.TASK_STATUS_CANCELED, page_size=2)
    assert flat(canceled) == created[::3]
    task = stubs.get(created[3])
    assert task.status == pb.TASK_STATUS_CANCELED and task.cancel_reason == "test"
    assert task.attributes == notes and not task.estimated_wait_known


@pytest.mark.parametrize(
    "token",
    ["²", "9" * 5000, "abc", "-1", "1.5", "\uff11\uff12", "9" * 19],
    ids=lambda t: repr(t[:8]),
)
def test_a_malformed_task_token_is_invalid_argument(stubs: Stubs, token: str) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stubs.tasks.ListTasks(tpb.ListTasksRequest(page_token=token), timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith("page_token:")


@pytest.mark.parametrize("size", [-1, PAGE_SIZE_MAX + 1, 10**9])
def test_a_page_size_out_of_range_is_invalid(stubs: Stubs, size: int) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stubs.tasks.ListTasks(tpb.ListTasksRequest(page_size=size), timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "") == (
        f"page_size: must be between 0 and {PAGE_SIZE_MAX} (0: 100), got {size}"
    )


def test_the_largest_page_size_is_served(stubs: Stubs) -> None:
    for _ in range(3):
        stubs.create()
    request = tpb.ListTasksRequest(page_size=PAGE_SIZE_MAX)
    assert len(stubs.tasks.ListTasks(request, timeout=5).tasks) == 3


# -- ListWorkers -------------------------------------------------------------------------------


def test_workers_with_big_profiles_page_by_bytes_in_id_order(stubs: Stubs) -> None:
    # As big as the limits let a worker be (~34 KB): 16 KiB of attributes, 128 skills of long
    # names; 150 of them take two pages or more.
    skills = {f"skill-{i:03d}-" + "s" * 110: 5.0 for i in range(SKILLS_PER_WORKER_MAX)}
    for i in reversed(range(150)):  # created out of order: listed by id
        stubs.worker(
            f"w{i:03d}",
            display_name="Agent",
            attributes=big_attributes(i, 16_000),
            skills=skills,
            activity="available" if i % 3 else "break",
        )

    def page(token: str, **request: Any) -> wpb.ListWorkersResponse:
        return stubs.workers.ListWorkers(
            wpb.ListWorkersRequest(page_size=1000, page_token=token, **request), timeout=10
        )

    pages = walk(page, lambda reply: [w.worker_id for w in reply.workers])
    assert len(pages) >= 2 and flat(pages) == [f"w{i:03d}" for i in range(150)]
    on_break = walk(
        lambda token: page(token, activity="break"), lambda r: [w.worker_id for w in r.workers]
    )
    assert flat(on_break) == [f"w{i:03d}" for i in range(0, 150, 3)]
    with pytest.raises(grpc.RpcError) as raised:
        stubs.workers.ListWorkers(wpb.ListWorkersRequest(page_token="²"), timeout=5)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith("page_token:")


# -- after a restart ----------------------------------------------------------------------------


def test_closed_tasks_and_page_tokens_survive_a_restart_from_a_snapshot(tmp_path: Path) -> None:
    """Closed tasks are kept as bytes, and snapshots store those bytes: a router restarted from
    a snapshot (and the journal after it) lists and reads them as before, with the same
    digest, and takes the page tokens the router before it gave out."""
    config = ServerConfig(
        port=0, metrics_port=None, test_clock=True, data_dir=tmp_path / "data",
        snapshot_every_commands=25,
    )  # fmt: skip
    server = ServerThread(config).start()
    try:
        with grpc.insecure_channel(server.address) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support")
            created = [
                stubs.create(attributes=big_attributes(i, 2_000)).task.task_id for i in range(40)
            ]
            for task_id in created[:30]:
                stubs.tasks.CancelTask(tpb.CancelTaskRequest(task_id=task_id), timeout=5)
            before = [stubs.get(task_id) for task_id in created]
            listed = list_tasks(stubs, page_size=7)
            first = stubs.tasks.ListTasks(tpb.ListTasksRequest(page_size=7), timeout=5)
            digest = stubs.admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=5).digest
    finally:
        server.stop()
    restarted = ServerThread(config).start()
    try:
        with grpc.insecure_channel(restarted.address) as channel:
            stubs = Stubs.of(channel)
            assert [stubs.get(task_id) for task_id in created] == before
            assert list_tasks(stubs, page_size=7) == listed
            # A page token signed before the restart still walks on: its key derives from the
            # workspace's journaled id key, not from the process.
            second = stubs.tasks.ListTasks(
                tpb.ListTasksRequest(page_size=7, page_token=first.next_page_token), timeout=5
            )
            assert [t.task_id for t in second.tasks] == listed[1]
            assert stubs.admin.GetStateDigest(apb.GetStateDigestRequest()).digest == digest
    finally:
        restarted.stop()


# -- ListQueues and ListRoutingPolicies ----------------------------------------------------------


def test_queues_page_in_id_order(stubs: Stubs) -> None:
    holidays = [str(date(2030, 1, 1) + timedelta(days=day)) for day in range(1000)]
    weekly = [pb.OpenHours(day=pb.DAY_OF_WEEK_MONDAY, opens="09:00", closes="17:00")]
    hours = pb.BusinessHours(time_zone="UTC", weekly=weekly, holidays=holidays)
    for i in reversed(range(30)):
        stubs.queue(f"q{i:02d}", business_hours=hours)
    every = ["support"] + [f"q{i:02d}" for i in range(30)]

    def page(token: str, size: int = 0) -> apb.ListQueuesResponse:
        request = apb.ListQueuesRequest(page_size=size, page_token=token)
        return stubs.admin.ListQueues(request, timeout=10)

    assert [q.queue_id for q in page("").queues] == sorted(every)  # by default, all that fit
    pages = walk(lambda token: page(token, 4), lambda r: [q.queue_id for q in r.queues])
    assert len(pages) == 8 and flat(pages) == sorted(every)
    assert len(page("").queues[0].business_hours.holidays) == len(hours.holidays)


def test_big_routing_policies_page_by_bytes_in_id_order(stubs: Stubs) -> None:
    """A policy may carry 64 filters of 4 KiB expressions: 15 of them are 4 MB."""
    expression = f"note == '{'x' * 4000}'"
    filters = [
        pb.PolicyFilter(name=f"f{i}", expression=expression, route=pb.Route(queue_id="support"))
        for i in range(64)
    ]
    for i in reversed(range(15)):
        policy = pb.RoutingPolicy(policy_id=f"p{i:02d}", filters=filters)
        stubs.admin.UpsertRoutingPolicy(apb.UpsertRoutingPolicyRequest(policy=policy), timeout=10)

    def page(token: str) -> apb.ListRoutingPoliciesResponse:
        request = apb.ListRoutingPoliciesRequest(page_token=token)
        return stubs.admin.ListRoutingPolicies(request, timeout=10)

    pages = walk(page, lambda reply: [p.policy_id for p in reply.policies])
    assert len(pages) == 2 and flat(pages) == [f"p{i:02d}" for i in range(15)]
    assert len(page("").policies[0].filters) == 64


@pytest.mark.parametrize("token", ["²", "a b", "x" * 200])
def test_a_malformed_queue_or_policy_token_is_invalid_argument(stubs: Stubs, token: str) -> None:
    calls = [
        lambda: stubs.admin.ListQueues(apb.ListQueuesRequest(page_token=token), timeout=5),
        lambda: stubs.admin.ListRoutingPolicies(
            apb.ListRoutingPoliciesRequest(page_token=token), timeout=5
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert (raised.value.details() or "").startswith("page_token:")
