"""The single-writer loop: batching, answers after apply, and survival of a bug in one command."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from prometheus_client import CollectorRegistry

from router.clock import TestClock
from router.core import commands as cmd
from router.core.engine import Engine
from router.core.errors import Internal, NotFound
from router.core.model import QueueConfig
from router.obs.metrics import RouterMetrics
from router.service import RouterService


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
