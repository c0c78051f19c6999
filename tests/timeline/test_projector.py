"""The timeline's store and projector against a real Redis: the feed's events (journaled with
their batches by a real journal, served by a real EventHub) folded into sealed per-customer
entries; a new projector resuming from the stored cursor (as after a failover) with no
duplicate and no gap; the bounds (count and retention, on write and by the sweep); erasure;
and the reads' views, filters, search and paging."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from router._proto.switchboard.v1 import timeline_service_pb2 as tlpb
from router.clock import TestClock
from router.core.engine import Engine
from router.core.errors import InvalidArgument, PermissionDenied
from router.core.feed import EventType, FeedEvent, encode_feed
from router.core.model import TimelineSettings
from router.obs.metrics import RouterMetrics
from router.privacy.customer_keys import CustomerKeys, RedisWrappedKeys
from router.privacy.keyring import Keyring
from router.service import RouterService
from router.store.embedded import EmbeddedRedis
from router.store.journal import RedisJournal
from router.store.lease import RedisLease
from router.timeline.projector import MS_PER_DAY, TimelineProjector
from router.timeline.reads import TimelineReads
from router.timeline.store import TimelineStore
from router.writer.eventhub import EventFilter, EventHub

T = TypeVar("T")
START_MS = 1_800_000_000_000
_workspaces = itertools.count(1)


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@dataclass
class Rig:
    """One workspace's real parts: Redis, journal and lease, a hub per leadership, the
    customers' keys, the timeline store, and the projector of the current leadership."""

    client: aioredis.Redis
    workspace: str
    journal: RedisJournal
    token: str
    keys: CustomerKeys
    store: TimelineStore
    metrics: RouterMetrics
    registry: CollectorRegistry
    now_ms: list[int]
    bounds: TimelineSettings = field(default_factory=TimelineSettings)
    hub: EventHub | None = None
    projector: TimelineProjector | None = None
    last_entry_id: str = "0"
    published: list[FeedEvent] = field(default_factory=list)
    _reads: TimelineReads | None = None

    def lead(self) -> None:
        """A new leadership: a fresh hub whose ring starts after the last journaled entry
        (what came before is in the journal only), and a fresh projector."""
        self.hub = EventHub(self.metrics, self.journal)
        self.hub.lead(self.last_entry_id)
        self.projector = TimelineProjector(
            self.hub.subscribe, self.store, self.keys, self.metrics,
            now_ms=lambda: self.now_ms[0], bounds=lambda: self.bounds,
        )  # fmt: skip

    async def publish(self, *events: FeedEvent) -> None:
        """Journals a batch with its feed events, then puts them on the hub (as the writer
        does after a durable batch)."""
        feed = list(events)
        entry_id = await self.journal.append(b"batch", self.token, events=encode_feed(feed))
        self.last_entry_id = entry_id
        self.published += feed
        if self.hub is not None:
            self.hub.publish(entry_id, feed)

    async def settled(self) -> None:
        """Waits until the projector has written the cursor of the last published event."""
        assert self.hub is not None
        newest = str(self.hub.newest)
        for _ in range(500):
            if await self.store.cursor() == newest:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"the projector did not reach {newest}")

    def reads(self) -> TimelineReads:
        """The reads of one router (page tokens are signed with a key of the router's)."""
        if self._reads is None:
            service = RouterService(
                Engine(), TestClock(START_MS), self.metrics, customer_keys=self.keys
            )
            self._reads = TimelineReads(service, self.store)
        return self._reads

    async def timeline(self, customer: str, **kwargs: Any) -> tlpb.GetTimelineResponse:
        view = kwargs.pop("view", tlpb.TIMELINE_VIEW_FULL)
        viewer = kwargs.pop("viewer", "")
        return await self.reads().get_timeline(
            tlpb.GetTimelineRequest(**kwargs), customer_key=customer, view=view,
            viewer_worker_id=viewer,
        )  # fmt: skip


def run(redis_url: str, scenario: Callable[[Rig], Awaitable[T]]) -> T:
    async def main() -> T:
        client = aioredis.from_url(redis_url)
        workspace = f"tl-{next(_workspaces)}"
        lease = RedisLease(client, workspace, "127.0.0.1:1", 30.0)
        assert await lease.try_acquire()
        registry = CollectorRegistry()
        rig = Rig(
            client, workspace, RedisJournal(client, workspace), lease.token,
            CustomerKeys(RedisWrappedKeys(client, workspace), workspace, Keyring.generate()),
            TimelineStore(client, workspace), RouterMetrics(registry), registry, [START_MS],
        )  # fmt: skip
        try:
            return await scenario(rig)
        finally:
            if rig.projector is not None:
                await rig.projector.stop()
            await client.aclose()

    return asyncio.run(main())


def created(task_id: str, customer: str, at_ms: int, channel: str = "voice") -> FeedEvent:
    return FeedEvent(
        EventType.TASK_CREATED, at_ms, task_id, "support", channel, customer_key=customer,
        sentiment=-0.5,
    )  # fmt: skip


def lifecycle(
    task_id: str, at_ms: int, worker: str = "w1", channel: str = "voice"
) -> list[FeedEvent]:
    """A task's events after its creation: assigned, wrapping, completed."""
    return [
        FeedEvent(EventType.TASK_ASSIGNED, at_ms + 1000, task_id, "support", channel, worker,
                  wait_ms=1000),
        FeedEvent(EventType.TASK_WRAPPING, at_ms + 5000, task_id, "support", channel, worker),
        FeedEvent(EventType.TASK_COMPLETED, at_ms + 9000, task_id, "support", channel, worker),
    ]  # fmt: skip


async def outcome(
    rig: Rig, task_id: str, customer: str, at_ms: int, note: str, *, worker: str = "w1",
    private: bool = False, tags: tuple[str, ...] = (),
) -> FeedEvent:  # fmt: skip
    return FeedEvent(
        EventType.OUTCOME_RECORDED, at_ms, task_id, worker_id=worker, customer_key=customer,
        sealed=await rig.keys.seal(customer, note.encode()), disposition="refund_issued",
        resolution=1, tags=tags, note_private=private,
    )  # fmt: skip


def test_the_projector_folds_a_customer_s_tasks_and_outcomes_into_sealed_entries(
    redis_url: str,
) -> None:
    async def scenario(rig: Rig) -> None:
        ck = rig.keys.key_of("jane@example.com")
        await rig.keys.seal(ck, b"jane@example.com")  # the API seals the id at CreateTask
        rig.lead()
        assert rig.projector is not None
        rig.projector.start()
        await rig.publish(created("t1", ck, START_MS), created("other", "", START_MS))
        await rig.publish(*lifecycle("t1", START_MS))
        await rig.publish(
            await outcome(rig, "t1", ck, START_MS + 6000, "Jane's refund, 20 EUR",
                          tags=("billing",))
        )  # fmt: skip
        await rig.settled()
        reply = await rig.timeline(ck)
        assert reply.entries[0].entry_id == "task:t1"
        task = reply.entries[0].task
        assert (task.status, task.agent_ids, task.wait_ms) == (
            5, ["w1"], 1000,  # completed
        )  # fmt: skip
        assert task.disposition == "refund_issued" and list(reply.entries[0].tags) == ["billing"]
        assert reply.entries[1].outcome.note == "Jane's refund, 20 EUR"
        assert reply.entries[1].outcome.task_id == "t1"
        assert reply.total_entries == 2
        # Nothing personal in the clear, and the closed task left the open-task index.
        raw = await rig.client.hgetall(rig.store.entries_key(ck))
        assert raw and not any(b"Jane" in v or b"refund_issued" in v for v in raw.values())
        assert await rig.client.hlen(rig.store.tasks_key) == 0
        written = rig.registry.get_sample_value("switchboard_timeline_entries_written_total")
        assert written is not None and written >= 2

    run(redis_url, scenario)


def test_a_new_projector_resumes_from_the_stored_cursor_without_duplicates_or_gaps(
    redis_url: str,
) -> None:
    async def scenario(rig: Rig) -> list[str]:
        ck = rig.keys.key_of("+14155550100")
        await rig.keys.seal(ck, b"+14155550100")
        rig.lead()
        assert rig.projector is not None
        rig.projector.start()
        await rig.publish(created("t1", ck, START_MS, "chat"))
        await rig.publish(FeedEvent(EventType.TASK_ASSIGNED, START_MS + 10, "t1", "support",
                                    "chat", "w1", wait_ms=10))  # fmt: skip
        await rig.settled()
        await rig.projector.stop()  # the leader dies; its successor journals more meanwhile
        await rig.publish(await outcome(rig, "t1", ck, START_MS + 20, "first"))
        await rig.publish(
            FeedEvent(EventType.TASK_PAUSED, START_MS + 30, "t1", "support", "chat", "w1",
                      reason="customer away"),
            FeedEvent(EventType.TASK_RESUMED, START_MS + 40, "t1", "support", "chat", "w1",
                      paused_ms=10),
        )  # fmt: skip
        rig.lead()  # a new leader: its ring starts after what the first one journaled
        await rig.publish(
            FeedEvent(EventType.TASK_ASSIGNED, START_MS + 50, "t1", "support", "chat", "w2",
                      wait_ms=50),
            await outcome(rig, "t1", ck, START_MS + 60, "second", worker="w2"),
        )  # fmt: skip
        rig.projector.start()
        await rig.settled()
        # The same delivery again (at least once): nothing changes.
        reply = await rig.timeline(ck)
        task = reply.entries[0].task
        assert list(task.agent_ids) == ["w1", "w2"]
        assert [(p.paused_at_ms, p.resumed_at_ms) for p in task.pauses] == [
            (START_MS + 30, START_MS + 40)
        ]
        assert [p.worker_id for p in task.participants] == ["w1", "w2"]
        return [e.outcome.note for e in reply.entries if e.kind == tlpb.TIMELINE_ENTRY_KIND_OUTCOME]

    assert run(redis_url, scenario) == ["first", "second"]


def test_a_delivery_applied_twice_changes_nothing(redis_url: str) -> None:
    async def scenario(rig: Rig) -> None:
        ck = rig.keys.key_of("c")
        await rig.keys.seal(ck, b"c")
        rig.lead()
        assert rig.hub is not None and rig.projector is not None
        subscription = await rig.hub.subscribe(
            after=None, from_oldest=True, event_filter=EventFilter()
        )
        assigned, wrapping, completed = lifecycle("t1", START_MS)
        transfer = FeedEvent(
            EventType.TRANSFER_INITIATED, START_MS + 2000, "t1", "sales", "voice", "w1",
            from_queue_id="support", transfer_id="x1", transfer_mode="cold",
        )  # fmt: skip
        await rig.publish(created("t1", ck, START_MS), assigned, transfer)
        await rig.publish(wrapping, completed, await outcome(rig, "t1", ck, START_MS + 3000, "n"))
        deliveries = []
        async for batch in subscription.deliveries():
            deliveries += batch
            if len(deliveries) == 6:
                break
        await rig.projector.apply(deliveries)
        before = await rig.timeline(ck)
        await rig.projector.apply(deliveries)
        rig.projector._forget()  # as after a failed write: read back from Redis
        await rig.projector.apply(deliveries)
        assert await rig.timeline(ck) == before
        assert [t.to_queue_id for t in before.entries[0].task.transfers] == ["sales"]

    run(redis_url, scenario)


def test_bounds_drop_the_oldest_entries_on_write_and_the_sweep_purges_past_retention(
    redis_url: str,
) -> None:
    async def scenario(rig: Rig) -> None:
        ck, other = rig.keys.key_of("a"), rig.keys.key_of("b")
        for customer in (ck, other):
            await rig.keys.seal(customer, b"x")
        rig.bounds = TimelineSettings(retention_days=30, entries_per_customer_max=3)
        rig.lead()
        assert rig.projector is not None
        rig.projector.start()
        for n in range(5):
            await rig.publish(created(f"t{n}", ck, START_MS + n))
        await rig.publish(created("old", other, START_MS - 31 * MS_PER_DAY))  # already past
        await rig.publish(created("kept", other, START_MS))
        await rig.settled()
        reply = await rig.timeline(ck)
        assert [e.entry_id for e in reply.entries] == ["task:t2", "task:t3", "task:t4"]
        assert [e.entry_id for e in (await rig.timeline(other)).entries] == ["task:kept"]
        rig.now_ms[0] = START_MS + 30 * MS_PER_DAY + 3  # t0..t2 past retention now
        swept = await rig.projector.sweep_once()
        assert swept == (2, 2)  # both customers; t2 and "kept" go, t3 and t4 stay
        assert [e.entry_id for e in (await rig.timeline(ck)).entries] == ["task:t3", "task:t4"]
        assert await rig.client.zscore(rig.store.customers_key, other) is None
        assert not await rig.client.exists(rig.store.entries_key(other))
        purged = rig.registry.get_sample_value("switchboard_timeline_entries_purged_total")
        assert purged == 5.0

    run(redis_url, scenario)


def test_an_erased_customer_is_dropped_and_never_recreated(redis_url: str) -> None:
    async def scenario(rig: Rig) -> None:
        ck = rig.keys.key_of("gone")
        await rig.keys.seal(ck, b"gone")
        rig.lead()
        assert rig.projector is not None
        rig.projector.start()
        await rig.publish(created("t1", ck, START_MS), *lifecycle("t1", START_MS))
        await rig.publish(
            FeedEvent(EventType.CUSTOMER_PROFILE_CHANGED, START_MS, customer_key=ck,
                      sealed=await rig.keys.seal(ck, tlpb.CustomerProfile(
                          customer_id="gone", tier="gold").SerializeToString())),
        )  # fmt: skip
        await rig.settled()
        reads = rig.reads()
        profile = await reads.get_profile(ck)
        assert profile is not None and (profile.customer_id, profile.tier) == ("gone", "gold")
        # EraseCustomer: the key is destroyed, the Redis data deleted; the projector, behind,
        # then sees events of the customer and its erasure.
        assert await rig.keys.erase(ck)
        assert await reads.erase(ck) == (1, True)
        await rig.publish(created("t2", ck, START_MS + 10))
        await rig.publish(FeedEvent(EventType.CUSTOMER_ERASED, START_MS + 20, customer_key=ck))
        await rig.settled()
        assert (await rig.timeline(ck)).total_entries == 0
        assert await reads.get_profile(ck) is None
        for key in (rig.store.entries_key(ck), rig.store.order_key(ck)):
            assert not await rig.client.exists(key)
        assert not await rig.client.hexists(rig.store.profiles_key, ck)
        assert not await rig.client.hexists(rig.store.tasks_key, "t2")

    run(redis_url, scenario)


def test_views_filters_search_and_paging(redis_url: str) -> None:
    async def scenario(rig: Rig) -> None:
        ck = rig.keys.key_of("v")
        await rig.keys.seal(ck, b"v")
        rig.lead()
        assert rig.projector is not None
        rig.projector.start()
        await rig.publish(created("call", ck, START_MS, "voice"), *lifecycle("call", START_MS))
        await rig.publish(created("chat", ck, START_MS + 100_000, "chat"),
                          *lifecycle("chat", START_MS + 100_000, "w2", "chat"))  # fmt: skip
        await rig.publish(
            await outcome(rig, "call", ck, START_MS + 6000, "Private about w1", private=True),
            await outcome(rig, "chat", ck, START_MS + 106_000, "Offered the Premium plan",
                          worker="w2", private=True, tags=("sales",)),
            FeedEvent(EventType.AGENT_ACTION_RECORDED, START_MS + 106_500, "chat",
                      worker_id="w2", customer_key=ck, kind="refund_button",
                      sealed=await rig.keys.seal(ck, b"goodwill")),
            FeedEvent(EventType.TIMELINE_ENTRY_APPENDED, START_MS + 200_000, customer_key=ck,
                      kind="order.placed", source="shop", tags=("sales",),
                      sealed=await rig.keys.seal(
                          ck, b'{"summary": "Order 42", "data": {"total": 99}}')),
        )  # fmt: skip
        await rig.settled()
        full = await rig.timeline(ck)
        assert [e.kind for e in full.entries] == [1, 2, 1, 2, 3, 4]
        assert full.entries[4].agent_action.reason == "goodwill"
        assert full.entries[5].external.summary == "Order 42"
        assert full.entries[5].external.data["total"] == 99
        agent = await rig.timeline(ck, view=tlpb.TIMELINE_VIEW_AGENT, viewer="w2")
        assert [e.kind for e in agent.entries] == [1, 2, 1, 2, 4]
        assert agent.entries[1].outcome.note_hidden and not agent.entries[1].outcome.note
        assert agent.entries[3].outcome.note == "Offered the Premium plan"  # its own
        frontend = await rig.timeline(ck, view=tlpb.TIMELINE_VIEW_FRONTEND)
        assert all(not e.outcome.note for e in frontend.entries)
        # Filters and search.
        chat = await rig.timeline(ck, channels=["chat"])
        assert [e.entry_id for e in chat.entries][:1] == ["task:chat"] and len(chat.entries) == 3
        sales = await rig.timeline(ck, tags=["sales"])
        assert [e.kind for e in sales.entries] == [1, 2, 4]  # the task carries its outcome's tags
        premium = await rig.timeline(ck, text="PREMIUM")
        assert [e.entry_id for e in premium.entries] == [full.entries[3].entry_id]
        hidden = await rig.timeline(ck, text="premium", view=tlpb.TIMELINE_VIEW_AGENT,
                                    viewer="w1")  # fmt: skip
        assert not hidden.entries  # a note it may not see is not searched
        mine = await rig.timeline(ck, worker_id="w1")
        assert [e.entry_id for e in mine.entries] == ["task:call", full.entries[1].entry_id]
        window = await rig.timeline(ck, from_ms=START_MS + 100_000, to_ms=START_MS + 200_000,
                                    kinds=[tlpb.TIMELINE_ENTRY_KIND_TASK])  # fmt: skip
        assert [e.entry_id for e in window.entries] == ["task:chat"]
        # Paging, both ways.
        for newest_first in (False, True):
            seen: list[str] = []
            token = ""
            while True:
                page = await rig.timeline(ck, page_size=4, page_token=token,
                                          newest_first=newest_first)  # fmt: skip
                seen += [e.entry_id for e in page.entries]
                token = page.next_page_token
                if not token:
                    break
            expected = [e.entry_id for e in full.entries]
            assert seen == (expected[::-1] if newest_first else expected)
        page = await rig.timeline(ck, page_size=2)
        with pytest.raises(InvalidArgument, match="page_token"):
            await rig.timeline(ck, page_size=2, tags=["sales"], page_token=page.next_page_token)
        with pytest.raises(InvalidArgument, match="page_size"):
            await rig.timeline(ck, page_size=201)
        with pytest.raises(PermissionDenied):
            await rig.timeline(ck, worker_id="w1", view=tlpb.TIMELINE_VIEW_AGENT, viewer="w2")

    run(redis_url, scenario)


def test_entries_of_the_same_millisecond_keep_the_feed_s_order(redis_url: str) -> None:
    async def scenario(rig: Rig) -> None:
        ck = rig.keys.key_of("same-ms")
        await rig.keys.seal(ck, b"x")
        rig.lead()
        assert rig.projector is not None
        rig.projector.start()
        pin = FeedEvent(EventType.TIMELINE_ENTRY_APPENDED, START_MS, customer_key=ck,
                        kind="ivr.pin_verified", entry_id="tle-zzz")  # fmt: skip
        recorded = await outcome(rig, "call", ck, START_MS, "n")
        await rig.publish(pin, created("call", ck, START_MS), _with_id(recorded, "tle-aaa"))
        later = FeedEvent(EventType.TIMELINE_ENTRY_APPENDED, START_MS, customer_key=ck,
                          kind="survey.answered", entry_id="tle-000")  # fmt: skip
        await rig.publish(later)
        await rig.settled()
        expected = ["tle-zzz", "task:call", "tle-aaa", "tle-000"]  # as recorded, not by id
        assert [e.entry_id for e in (await rig.timeline(ck)).entries] == expected
        for newest_first in (False, True):
            seen, token = [], ""
            while True:
                page = await rig.timeline(ck, page_size=1, page_token=token,
                                          newest_first=newest_first)  # fmt: skip
                seen += [e.entry_id for e in page.entries]
                token = page.next_page_token
                if not token:
                    break
            assert seen == (expected[::-1] if newest_first else expected)
        window = await rig.timeline(ck, from_ms=START_MS, to_ms=START_MS + 1)
        assert len(window.entries) == 4
        assert not (await rig.timeline(ck, from_ms=START_MS + 1)).entries

    run(redis_url, scenario)


def _with_id(event: FeedEvent, entry_id: str) -> FeedEvent:
    return msgspec.structs.replace(event, entry_id=entry_id)
