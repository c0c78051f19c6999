"""Conversations and presence across a failover, with real processes: a leader and a standby on
one Redis, both on the test clock; the leader is SIGKILLed in the middle of a warm transfer (the
target holds the consult offer), of a consult (the consult has joined), or while agents hold
offers. Over the new leader's public API: the transfer is in exactly one state and ends as its
agents decide on the new leader, the task is held by exactly the agents it was held by, no
capacity leaks (every load is 0 once the work is done), the new leader's state is its journal
replayed in a fresh engine, and its takeover starts every agent's presence grace: an agent back
within the grace keeps its offer, a lost one's offer goes to a connected agent."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import grpc
import pytest
import redis

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import clock_service_pb2 as cpb
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from tests.e2e.raw import RawAgent, Stubs, connect
from tests.integration.support import TestClockPair, replayed_journal

RESERVATION_TIMEOUT_S = 20
"""Below the default presence_timeout_s (30 s): moving the clock past an offer's timeout does
not end the agents' silent streams."""
PRESENCE_GRACE_S = 10.0
"""The default grace; the new leader's clock starts where its own process started, a moment
after the old leader's, so its grace counts from its takeover."""

Holders = list[tuple[str, "pb.ParticipantRole.ValueType", bool]]


@pytest.fixture
def agents() -> Iterator[list[RawAgent]]:
    """The Connect streams a test opens, closed after it (those to the killed leader ended)."""
    opened: list[RawAgent] = []
    yield opened
    for agent in opened:
        agent.close()


def until(what: str, condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Waits (in real time) for something the router does on its own."""
    deadline_s = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline_s, f"not {what} within {timeout_s:g} s"
        time.sleep(0.02)


def worker(stubs: Stubs, worker_id: str) -> pb.Worker:
    return stubs.workers.GetWorker(wpb.GetWorkerRequest(worker_id=worker_id), timeout=5).worker


def loads(stubs: Stubs, *worker_ids: str) -> tuple[int, ...]:
    return tuple(sum(worker(stubs, w).load_by_channel.values()) for w in worker_ids)


def every_load(stubs: Stubs) -> dict[str, int]:
    listed = stubs.workers.ListWorkers(wpb.ListWorkersRequest(page_size=1000), timeout=5)
    return {w.worker_id: sum(w.load_by_channel.values()) for w in listed.workers}


def holders(task: pb.Task) -> Holders:
    """Who is on the task, in which role, and whether they are on it (not only invited: a
    consult offer pending)."""
    return [(p.worker_id, p.role, not p.reservation_id) for p in task.participants]


def assigned_to(stubs: Stubs, agent: RawAgent) -> pb.Task:
    task = stubs.create().task
    offer = agent.next_of("offer").offer
    assert offer.task_id == task.task_id
    agent.accept(offer.reservation_id)
    agent.next_of("assigned")
    return stubs.get(task.task_id)


def state_is_the_journal(stubs: Stubs, pair: TestClockPair) -> None:
    """The router's state digest is that of its whole journal replayed in a fresh engine,
    whose invariants hold (capacity, participants, offers)."""
    digest = stubs.admin.GetStateDigest(apb.GetStateDigestRequest(), timeout=10).digest
    replayed = replayed_journal(redis.Redis.from_url(pair.redis_url))
    replayed.check_invariants()
    assert digest == replayed.digest()


def complete(stubs: Stubs, task_id: str) -> None:
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(task_id=task_id), timeout=5)
    assert stubs.get(task_id).status == pb.TASK_STATUS_COMPLETED


def lost_by_the_takeover(stubs: Stubs, *worker_ids: str) -> None:
    """The new leader's first command (AllPresenceLost) started the workers' grace, at its
    takeover: the time of its clock, not yet moved (the old leader's is earlier)."""
    until(
        "presence lost",
        lambda: all(worker(stubs, w).presence_lost_at_ms != 0 for w in worker_ids),
    )
    now_ms = stubs.clock.GetTime(cpb.GetTimeRequest(), timeout=5).now_ms
    for worker_id in worker_ids:
        lost = worker(stubs, worker_id)
        assert (lost.connected, lost.presence_lost_at_ms) == (False, now_ms), worker_id


def warm_transfer_offered(old: Stubs, agents: list[RawAgent]) -> tuple[str, pb.Offer, pb.Task]:
    """ana's task, warm-transferred to ben, whose consult offer is pending: the task's id, the
    offer, and the task as the leader has it."""
    old.queue("support", reservation_timeout_s=RESERVATION_TIMEOUT_S)
    old.worker("ana")
    task_id = assigned_to(old, connect(old, agents, "ana")).task_id
    old.worker("ben")
    ben = connect(old, agents, "ben")
    request = tpb.TransferTaskRequest(
        task_id=task_id, mode=pb.TRANSFER_MODE_WARM,
        target=pb.TransferTarget(worker_id="ben"), reason="billing",
    )  # fmt: skip
    transfer = old.tasks.TransferTask(request, timeout=5).transfer
    offer = ben.next_of("offer").offer
    assert offer.transfer_id == transfer.transfer_id
    before = old.get(task_id)
    assert holders(before) == [
        ("ana", pb.PARTICIPANT_ROLE_PRIMARY, True),
        ("ben", pb.PARTICIPANT_ROLE_CONSULT, False),
    ]
    assert [t.status for t in before.transfers] == [pb.TRANSFER_STATUS_INITIATED]
    assert loads(old, "ana", "ben") == (1, 1)
    return task_id, offer, before


WARM_ENDINGS = {
    # how it ends: (transfer status, outcome, who then holds the task)
    "accepted": (pb.TRANSFER_STATUS_COMPLETED, "accepted", "ben"),
    "rejected": (pb.TRANSFER_STATUS_FAILED, "rejected", "ana"),
    "timed_out": (pb.TRANSFER_STATUS_FAILED, "timed_out", "ana"),
    "target_lost": (pb.TRANSFER_STATUS_FAILED, "worker_unavailable", "ana"),
}


@pytest.mark.parametrize("ending", list(WARM_ENDINGS))
def test_a_warm_transfer_caught_by_a_failover_ends_in_exactly_one_state(
    test_clock_pair: TestClockPair, agents: list[RawAgent], ending: str
) -> None:
    """ben holds the consult offer of ana's warm transfer when the leader dies. The new leader
    has the transfer initiated, ana primary and ben invited, both holding capacity. Then ben
    accepts (the task moves to him), rejects, lets the offer time out, or never comes back
    (his grace runs out): the transfer ends once, and the task ends with one agent."""
    pair = test_clock_pair
    task_id, offer, before = warm_transfer_offered(Stubs.of(pair.leader_channel), agents)
    transfer = before.transfers[0]

    with grpc.insecure_channel(pair.kill_leader()) as channel:
        new = Stubs.of(channel)
        lost_by_the_takeover(new, "ana", "ben")
        taken_over = new.get(task_id)
        assert (taken_over.status, taken_over.worker_id) == (pb.TASK_STATUS_ASSIGNED, "ana")
        assert list(taken_over.participants) == list(before.participants)
        assert list(taken_over.transfers) == list(before.transfers)
        assert [t.status for t in taken_over.transfers] == [pb.TRANSFER_STATUS_INITIATED]
        assert loads(new, "ana", "ben") == (1, 1)
        assert list(worker(new, "ana").task_ids) == [task_id]
        assert list(worker(new, "ben").task_ids) == [task_id]  # the offer holds his capacity
        state_is_the_journal(new, pair)

        connect(new, agents, "ana")
        if ending == "target_lost":
            new.advance(PRESENCE_GRACE_S)  # ben never comes back
        else:
            ben = connect(new, agents, "ben")
            again = ben.next_of("offer").offer  # the pending offer, sent again on attach
            assert (again.reservation_id, again.transfer_id) == (
                offer.reservation_id, transfer.transfer_id,
            )  # fmt: skip
            if ending == "accepted":
                ben.accept(again.reservation_id)
            elif ending == "rejected":
                ben.reject(again.reservation_id)
            else:
                new.advance(RESERVATION_TIMEOUT_S + 1)
        status, outcome, holder = WARM_ENDINGS[ending]
        until(
            "the transfer ended",
            lambda: new.get(task_id).transfers[0].status != pb.TRANSFER_STATUS_INITIATED,
        )
        ended = new.get(task_id)
        assert [(t.status, t.outcome) for t in ended.transfers] == [(status, outcome)]
        assert (ended.status, ended.worker_id) == (pb.TASK_STATUS_ASSIGNED, holder)
        assert holders(ended) == [(holder, pb.PARTICIPANT_ROLE_PRIMARY, True)]
        assert loads(new, "ana", "ben") == ((0, 1) if holder == "ben" else (1, 0))
        assert ended.created_at_ms == before.created_at_ms
        state_is_the_journal(new, pair)

        complete(new, task_id)
        assert every_load(new) == {"ana": 0, "ben": 0}
        state_is_the_journal(new, pair)


@pytest.mark.parametrize("kill", ["at_once", "once_journaled"])
def test_an_accept_racing_the_kill_completes_the_warm_transfer_once(
    test_clock_pair: TestClockPair, agents: list[RawAgent], kill: str
) -> None:
    """ben accepts the consult offer and the leader is SIGKILLed at once (the accept may or may
    not have been journaled: mostly not), or once it says the transfer completed. The new
    leader has the transfer either still initiated (ben accepts again, on it) or completed,
    never both nor neither; it ends completed once, with the task on ben alone."""
    pair = test_clock_pair
    old = Stubs.of(pair.leader_channel)
    task_id, offer, before = warm_transfer_offered(old, agents)
    agents[-1].accept(offer.reservation_id)  # ben's stream to the old leader
    if kill == "once_journaled":
        until(
            "the transfer completed",
            lambda: old.get(task_id).transfers[0].status == pb.TRANSFER_STATUS_COMPLETED,
        )
    with grpc.insecure_channel(pair.kill_leader()) as channel:
        new = Stubs.of(channel)
        lost_by_the_takeover(new, "ana", "ben")
        taken_over = new.get(task_id)
        status = taken_over.transfers[0].status
        assert len(taken_over.transfers) == 1
        assert status in (pb.TRANSFER_STATUS_INITIATED, pb.TRANSFER_STATUS_COMPLETED)
        if kill == "once_journaled":
            assert status == pb.TRANSFER_STATUS_COMPLETED
        state_is_the_journal(new, pair)
        if status == pb.TRANSFER_STATUS_INITIATED:
            assert list(taken_over.participants) == list(before.participants)
            assert loads(new, "ana", "ben") == (1, 1)
            ben = connect(new, agents, "ben")
            ben.accept(ben.next_of("offer").offer.reservation_id)
            until(
                "the transfer completed",
                lambda: new.get(task_id).transfers[0].status == pb.TRANSFER_STATUS_COMPLETED,
            )
        ended = new.get(task_id)
        assert [(t.status, t.outcome) for t in ended.transfers] == [
            (pb.TRANSFER_STATUS_COMPLETED, "accepted")
        ]
        assert holders(ended) == [("ben", pb.PARTICIPANT_ROLE_PRIMARY, True)]
        assert loads(new, "ana", "ben") == (0, 1)
        complete(new, task_id)
        assert every_load(new) == {"ana": 0, "ben": 0}
        state_is_the_journal(new, pair)


@pytest.mark.parametrize("ending", ["handed_over", "removed"])
def test_a_consult_caught_by_a_failover_keeps_both_agents_on_the_task(
    test_clock_pair: TestClockPair, agents: list[RawAgent], ending: str
) -> None:
    """sam has joined ana's task as a consult when the leader dies. The new leader has both on
    the task, each holding capacity; the task is then handed over to sam, or sam is removed,
    and completed: no capacity is left held."""
    pair = test_clock_pair
    old = Stubs.of(pair.leader_channel)
    old.queue("support", reservation_timeout_s=RESERVATION_TIMEOUT_S)
    old.worker("ana")
    ana = connect(old, agents, "ana")
    task_id = assigned_to(old, ana).task_id
    old.worker("sam")
    sam = connect(old, agents, "sam")
    request = tpb.AddParticipantRequest(
        task_id=task_id, role=pb.PARTICIPANT_ROLE_CONSULT,
        target=pb.TransferTarget(worker_id="sam"),
    )  # fmt: skip
    old.tasks.AddParticipant(request, timeout=5)
    sam.accept(sam.next_of("offer").offer.reservation_id)
    assert ana.next_of("participant").participant.participant.worker_id == "sam"
    before = old.get(task_id)
    assert holders(before) == [
        ("ana", pb.PARTICIPANT_ROLE_PRIMARY, True),
        ("sam", pb.PARTICIPANT_ROLE_CONSULT, True),
    ]
    assert loads(old, "ana", "sam") == (1, 1)

    with grpc.insecure_channel(pair.kill_leader()) as channel:
        new = Stubs.of(channel)
        lost_by_the_takeover(new, "ana", "sam")
        taken_over = new.get(task_id)
        assert (taken_over.status, taken_over.worker_id) == (pb.TASK_STATUS_ASSIGNED, "ana")
        assert list(taken_over.participants) == list(before.participants)
        assert loads(new, "ana", "sam") == (1, 1)
        assert list(worker(new, "ana").task_ids) == [task_id]
        assert list(worker(new, "sam").task_ids) == [task_id]
        state_is_the_journal(new, pair)

        connect(new, agents, "ana")
        connect(new, agents, "sam")
        if ending == "handed_over":
            request = tpb.HandOverTaskRequest(task_id=task_id, worker_id="sam")
            new.tasks.HandOverTask(request, timeout=5)
            holder, expected = "sam", (0, 1)
        else:
            request = tpb.RemoveParticipantRequest(task_id=task_id, worker_id="sam")
            new.tasks.RemoveParticipant(request, timeout=5)
            holder, expected = "ana", (1, 0)
        after = new.get(task_id)
        assert after.worker_id == holder
        assert holders(after) == [(holder, pb.PARTICIPANT_ROLE_PRIMARY, True)]
        assert loads(new, "ana", "sam") == expected

        complete(new, task_id)
        assert every_load(new) == {"ana": 0, "sam": 0}
        state_is_the_journal(new, pair)


def test_after_a_failover_an_agent_back_within_the_grace_keeps_its_offer_and_a_lost_ones_moves(
    test_clock_pair: TestClockPair, agents: list[RawAgent]
) -> None:
    """ana and ben each hold an offer on the old leader when it dies. The new leader starts
    both graces on takeover. ana reconnects within it and keeps her offer; ben never comes
    back: when his grace runs out he is set offline and his task is offered to carl, who is
    connected to the new leader."""
    pair = test_clock_pair
    old = Stubs.of(pair.leader_channel)
    old.queue("support", reservation_timeout_s=60)
    old.worker("ana")
    old.worker("carl", activity="offline")
    ana = connect(old, agents, "ana")
    kept = old.create().task.task_id
    ana_offer = ana.next_of("offer").offer
    assert ana_offer.task_id == kept
    old.worker("ben")
    ben = connect(old, agents, "ben")
    moved = old.create().task.task_id
    assert ben.next_of("offer").offer.task_id == moved

    with grpc.insecure_channel(pair.kill_leader()) as channel:
        new = Stubs.of(channel)
        lost_by_the_takeover(new, "ana", "ben")
        assert (new.get(kept).worker_id, new.get(moved).worker_id) == ("ana", "ben")
        state_is_the_journal(new, pair)
        carl = connect(new, agents, "carl", activity="available")
        assert carl.nothing_within(0.3)  # both tasks wait for their agents' return

        new.advance(PRESENCE_GRACE_S / 2)
        ana = connect(new, agents, "ana")
        assert ana.next_of("offer").offer.reservation_id == ana_offer.reservation_id
        new.advance(PRESENCE_GRACE_S / 2 - 0.1)
        assert new.get(moved).worker_id == "ben"  # his grace still keeps it
        new.advance(0.1)  # ben's grace is over: within grace + 1 s
        carl_offer = carl.next_of("offer").offer
        assert carl_offer.task_id == moved
        gone = worker(new, "ben")
        assert (gone.activity, gone.available, gone.connected) == ("offline", False, False)
        back = worker(new, "ana")
        assert (back.connected, back.activity, back.presence_lost_at_ms) == (True, "available", 0)
        assert new.get(kept).status == pb.TASK_STATUS_RESERVED
        assert new.get(kept).worker_id == "ana"

        ana.accept(ana_offer.reservation_id)
        ana.next_of("assigned")
        carl.accept(carl_offer.reservation_id)
        carl.next_of("assigned")
        assert loads(new, "ana", "ben", "carl") == (1, 0, 1)
        complete(new, kept)
        complete(new, moved)
        assert every_load(new) == {"ana": 0, "ben": 0, "carl": 0}
        state_is_the_journal(new, pair)
