"""The agent side of conversations through the `workers` SDK, against a real router over gRPC:
two AgentSessions make a warm transfer (the target accepts the consult offer from its session),
an agent cancels one, consults, hands over and removes a monitor, and pauses and resumes its own
task; each desktop reads what changed from `task_notices()`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from google.protobuf import struct_pb2

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router._proto.switchboard.v1 import worker_service_pb2_grpc as wgrpc
from tests.conftest import ServerThread
from tests.e2e.test_sdk import WAIT_S, admin, make_queue, make_worker, next_offer, run
from workers import (
    AgentSession,
    ParticipantRole,
    TaskClient,
    TaskNotice,
    TransferMode,
    TransferStatus,
    TransferTarget,
)

WARM = TransferMode.TRANSFER_MODE_WARM
CONSULT = ParticipantRole.PARTICIPANT_ROLE_CONSULT


async def notices_until(
    notices: AsyncIterator[TaskNotice], condition: Callable[[TaskNotice], bool]
) -> list[TaskNotice]:
    """The notices read up to the first that meets `condition` (the last of the list)."""

    async def read() -> list[TaskNotice]:
        seen = []
        async for notice in notices:
            seen.append(notice)
            if condition(notice):
                return seen
        raise AssertionError("the session ended")

    return await asyncio.wait_for(read(), WAIT_S)


async def notice_where(
    notices: AsyncIterator[TaskNotice], condition: Callable[[TaskNotice], bool]
) -> TaskNotice:
    """The next notice that meets `condition`, skipping others."""
    return (await notices_until(notices, condition))[-1]


async def scene(address: str) -> None:
    await make_queue(address, "support", reservation_timeout_s=30)
    await make_queue(address, "specialists", target_expression="team == 'spec'")
    async with admin(address) as channel:
        await make_worker(channel, "ana")
        team = struct_pb2.Struct()
        team.update({"team": "spec"})
        await make_worker(channel, "sam", attributes=team)


async def assigned(
    session: AgentSession, tasks: TaskClient, offers: AsyncIterator[pb.Offer]
) -> pb.Task:
    created = await tasks.create_task(queue_id="support", channel="voice")
    offer = await next_offer(offers)
    assert offer.task_id == created.task.task_id
    return await session.accept(offer)


def test_a_warm_transfer_between_two_sessions(router_server: ServerThread) -> None:
    address = router_server.address

    async def scenario() -> None:
        await scene(address)
        async with (
            AgentSession(address, "ana") as ana,
            AgentSession(address, "sam") as sam,
            TaskClient(address) as tasks,
        ):
            ana_notices, sam_notices = ana.task_notices(), sam.task_notices()
            task = await assigned(ana, tasks, ana.offers())
            response = await ana.transfer_task(
                task.task_id, mode=WARM, target=TransferTarget(queue_id="specialists"),
                reason="billing dispute",
            )  # fmt: skip
            transfer_id = response.transfer.transfer_id
            assert response.transfer.status == TransferStatus.TRANSFER_STATUS_INITIATED
            offer = await next_offer(sam.offers())
            assert (offer.task_id, offer.consult_role, offer.transfer_id) == (
                task.task_id, CONSULT, transfer_id,
            )  # fmt: skip
            started = await notice_where(sam_notices, lambda n: n.kind == "transfer")
            assert started.transfer is not None and started.transfer.transfer_id == transfer_id

            taken = await sam.accept(offer)
            assert (taken.worker_id, taken.queue_id) == ("sam", "specialists")
            assert taken.created_at_ms == task.created_at_ms  # its age kept
            assert not sam.pending_offers
            seen = await notices_until(
                ana_notices,
                lambda n: (
                    n.transfer is not None
                    and n.transfer.status == TransferStatus.TRANSFER_STATUS_COMPLETED
                ),
            )
            done = seen[-1]
            assert done.task_id == task.task_id and done.transfer is not None
            assert (done.transfer.to_worker_id, done.transfer.outcome) == ("sam", "accepted")
            # ana left the task as its primary when sam took it over
            left = [(n.participant.worker_id, n.added) for n in seen if n.participant]
            assert ("ana", False) in left
            finished = await sam.complete(task.task_id)
            assert finished.worker_id == "sam"

    run(scenario)


def test_an_agent_cancels_its_warm_transfer(router_server: ServerThread) -> None:
    address = router_server.address

    async def scenario() -> None:
        await scene(address)
        async with (
            AgentSession(address, "ana") as ana,
            AgentSession(address, "sam") as sam,
            TaskClient(address) as tasks,
        ):
            ana_notices = ana.task_notices()
            task = await assigned(ana, tasks, ana.offers())
            response = await ana.transfer_task(
                task.task_id, mode=WARM, target=TransferTarget(worker_id="sam")
            )
            offer = await next_offer(sam.offers())
            assert offer.transfer_id == response.transfer.transfer_id
            kept = await ana.cancel_transfer(task.task_id, response.transfer.transfer_id)
            assert kept.worker_id == "ana" and kept.status == pb.TASK_STATUS_ASSIGNED
            canceled = await notice_where(
                ana_notices,
                lambda n: (
                    n.transfer is not None
                    and n.transfer.status == TransferStatus.TRANSFER_STATUS_CANCELED
                ),
            )
            assert canceled.task is not None and canceled.task.worker_id == "ana"
            for _ in range(round(WAIT_S / 0.02)):  # the consult offer is withdrawn
                if not sam.pending_offers:
                    break
                await asyncio.sleep(0.02)
            assert not sam.pending_offers

    run(scenario)


def test_an_agent_consults_hands_over_and_removes_a_monitor(router_server: ServerThread) -> None:
    address = router_server.address

    async def scenario() -> None:
        await scene(address)
        async with admin(address) as channel:
            await make_worker(channel, "sup", capacity_by_channel={})
        async with (
            AgentSession(address, "ana") as ana,
            AgentSession(address, "sam") as sam,
            TaskClient(address) as tasks,
        ):
            ana_notices, sam_notices = ana.task_notices(), sam.task_notices()
            task = await assigned(ana, tasks, ana.offers())
            await ana.add_participant(
                task.task_id, role=CONSULT, target=TransferTarget(queue_id="specialists")
            )
            offer = await next_offer(sam.offers())
            assert offer.consult_role == CONSULT and offer.transfer_id == ""
            joined = await sam.accept(offer)
            assert joined.worker_id == "ana"  # a consult: the task stays with ana
            assert {(p.worker_id, p.role) for p in joined.participants} == {
                ("ana", ParticipantRole.PARTICIPANT_ROLE_PRIMARY), ("sam", CONSULT),
            }  # fmt: skip
            added = await notice_where(ana_notices, lambda n: n.kind == "participant")
            assert added.added and added.participant is not None
            assert added.participant.worker_id == "sam"

            monitor = ParticipantRole.PARTICIPANT_ROLE_MONITOR
            watched = await ana.add_participant(
                task.task_id, role=monitor, target=TransferTarget(worker_id="sup")
            )
            assert ("sup", monitor) in {(p.worker_id, p.role) for p in watched.participants}
            unwatched = await ana.remove_participant(task.task_id, "sup")
            assert "sup" not in {p.worker_id for p in unwatched.participants}

            handed = await ana.hand_over_task(task.task_id, "sam")
            assert handed.worker_id == "sam"
            seen = await notices_until(
                sam_notices,
                lambda n: n.participant is not None and n.participant.worker_id == "ana",
            )
            assert [(n.participant.worker_id, n.added) for n in seen if n.participant] == [
                ("sam", True), ("sup", True), ("sup", False), ("ana", False),
            ]  # fmt: skip
            await sam.complete(task.task_id)

    run(scenario)


def test_an_agent_pauses_and_resumes_its_task(router_server: ServerThread) -> None:
    address = router_server.address

    async def scenario() -> None:
        await scene(address)
        async with AgentSession(address, "ana") as ana, TaskClient(address) as tasks:
            offers, notices = ana.offers(), ana.task_notices()
            task = await assigned(ana, tasks, offers)
            paused = await ana.pause_task(task.task_id, reason="customer stepped away")
            assert paused.status == pb.TASK_STATUS_PAUSED
            notice = await notice_where(notices, lambda n: n.kind == "paused")
            assert notice.task_id == task.task_id
            assert (await ana.get_task(task.task_id)).status == pb.TASK_STATUS_PAUSED
            async with admin(address) as channel:  # its capacity is free again
                request = wpb.GetWorkerRequest(worker_id="ana")
                worker = (await wgrpc.WorkerServiceStub(channel).GetWorker(request)).worker
            assert sum(worker.load_by_channel.values()) == 0

            resumed = await ana.resume_task(task.task_id, known_agent_wait_s=30)
            assert resumed.status in (pb.TASK_STATUS_PENDING, pb.TASK_STATUS_RESERVED)
            notice = await notice_where(notices, lambda n: n.kind == "resumed")
            assert notice.task_id == task.task_id
            offer = await next_offer(offers)  # it waits for ana first
            assert offer.task_id == task.task_id
            again = await ana.accept(offer)
            assert again.worker_id == "ana" and again.status == pb.TASK_STATUS_ASSIGNED
            assert again.created_at_ms == task.created_at_ms

    run(scenario)
