"""The single-writer loop: batching, answers after apply, survival of a bug in one command, and
leadership over the in-memory store (standby takeover, a store outage)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry

from router.clock import TestClock
from router.core import commands as cmd
from router.core.engine import Engine
from router.core.errors import Internal, NotFound, Unavailable
from router.core.model import QueueConfig
from router.obs.metrics import RouterMetrics
from router.service import Durability, RouterService
from router.store.memory import MemoryJournal, MemoryLease, MemoryStore


class FaultyEngine(Engine):
    """An engine with a bug: deleting the queue named 'boom' raises an unexpected error."""

    def apply(self, command: cmd.Command, now_ms: int) -> object:
        if isinstance(command, cmd.DeleteQueue) and command.queue_id == "boom":
            raise RuntimeError("a bug")
        return super().apply(command, now_ms)


Scenario = Callable[[RouterService, CollectorRegistry], Awaitable[None]]


def run_with_service(scenario: Scenario, engine: Engine | None = None) -> None:
    async def main() -> None:
        registry = CollectorRegistry()
        service = RouterService(engine or Engine(), TestClock(1_000), RouterMetrics(registry))
        service.start()
        try:
            await asyncio.wait_for(scenario(service, registry), timeout=10)
        finally:
            await service.stop()

    asyncio.run(main())


def test_a_bug_fails_only_its_caller_and_the_writer_goes_on() -> None:
    async def scenario(service: RouterService, _: CollectorRegistry) -> None:
        await service.submit(cmd.UpsertQueue(QueueConfig("support")))
        with pytest.raises(Internal, match="a bug"):
            await service.submit(cmd.DeleteQueue("boom"))
        with pytest.raises(NotFound):
            await service.submit(cmd.DeleteQueue("missing"))
        await service.submit(cmd.DeleteQueue("support"))
        assert "support" not in service.engine.queues

    run_with_service(scenario, FaultyEngine())


def test_commands_submitted_together_are_applied_as_one_batch_in_order() -> None:
    async def scenario(service: RouterService, registry: CollectorRegistry) -> None:
        queues = [cmd.UpsertQueue(QueueConfig(f"q{i}")) for i in range(20)]
        results = await asyncio.gather(*(service.submit(c) for c in queues))
        assert [r.queue.queue_id for r in results] == [f"q{i}" for i in range(20)]
        assert list(service.engine.queues) == [f"q{i}" for i in range(20)]
        batches = registry.get_sample_value("switchboard_batch_commands_count")
        commands = registry.get_sample_value("switchboard_batch_commands_sum")
        # An idle wake-up may add a Tick batch; the 20 commands came in at most two batches.
        assert commands is not None and batches is not None
        assert commands >= 20 and batches <= 2

    run_with_service(scenario)


def test_a_standby_over_the_in_memory_store_takes_over_with_the_same_state() -> None:
    """Leadership runs on the store's protocols alone: over one in-memory store, a standby
    follows the leader's journal, leads once the leader gives up its lease, with the same
    state, and its writes are fenced from the old leader's token."""

    async def main() -> None:
        store = MemoryStore()
        clock = TestClock(1_000)

        def router(address: str) -> RouterService:
            durability = Durability(
                MemoryJournal(store), MemoryLease(store, address, ttl_s=0.5), "0"
            )
            return RouterService(Engine(), clock, RouterMetrics(CollectorRegistry()), durability)

        leader, standby = router("a:1"), router("b:2")
        leader.start()
        while not leader.is_leader:
            await asyncio.sleep(0.001)
        standby.start()
        try:
            await asyncio.sleep(0.05)
            assert not standby.is_leader
            with pytest.raises(Unavailable, match="the leader is at a:1"):
                await standby.submit(cmd.UpsertQueue(QueueConfig("nope")))
            for i in range(5):
                await leader.submit(cmd.UpsertQueue(QueueConfig(f"q{i}")))
            live = (await leader.state_digest()).digest
            await leader.stop()
            await leader.release_lease()
            while not standby.is_leader:
                await asyncio.sleep(0.005)
            assert list(standby.engine.queues) == [f"q{i}" for i in range(5)]
            assert standby.engine.digest() == live
            await standby.submit(cmd.DeleteQueue("q0"))
            assert "q0" not in standby.engine.queues
        finally:
            await leader.stop()
            await standby.stop()

    asyncio.run(asyncio.wait_for(main(), timeout=20))


def test_a_store_outage_refuses_writes_and_the_router_leads_again_after_it() -> None:
    """The journal cannot be written: the caller gets UNAVAILABLE (nothing promised), the
    router steps down; once the store answers again it leads again, from the store's state."""

    async def main() -> None:
        store = MemoryStore()
        durability = Durability(MemoryJournal(store), MemoryLease(store, "a:1", ttl_s=0.3), "0")
        registry = CollectorRegistry()
        service = RouterService(Engine(), TestClock(1_000), RouterMetrics(registry), durability)
        service.start()
        try:
            while not service.is_leader:
                await asyncio.sleep(0.001)
            await service.submit(cmd.UpsertQueue(QueueConfig("kept")))
            store.available = False
            with pytest.raises(Unavailable, match="could not journal"):
                await service.submit(cmd.UpsertQueue(QueueConfig("lost")))
            while service.is_leader:  # it steps down
                await asyncio.sleep(0.001)
            store.available = True
            while not service.is_leader:  # its own lease expires: it takes it again
                await asyncio.sleep(0.01)
            assert list(service.engine.queues) == ["kept"]
            await service.submit(cmd.UpsertQueue(QueueConfig("after")))
            assert registry.get_sample_value("switchboard_lease_losses_total") == 1
        finally:
            await service.stop()

    asyncio.run(asyncio.wait_for(main(), timeout=20))
