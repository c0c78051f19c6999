"""Assembles the router: engine, writer loop, gRPC servicers, health, reflection and metrics."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry, start_http_server

from router._proto.switchboard.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    clock_service_pb2,
    clock_service_pb2_grpc,
    stats_service_pb2,
    stats_service_pb2_grpc,
    task_service_pb2,
    task_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)
from router.api.admin import AdminServicer
from router.api.stats import ClockServicer, StatsServicer
from router.api.tasks import TaskServicer
from router.api.workers import WorkerServicer
from router.clock import Clock, SystemClock, TestClock
from router.core.engine import Engine
from router.obs.metrics import RouterMetrics
from router.service import RouterService

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name,
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    stats_service_pb2.DESCRIPTOR.services_by_name["StatsService"].full_name,
    clock_service_pb2.DESCRIPTOR.services_by_name["ClockService"].full_name,
)

GRPC_OPTIONS: list[tuple[str, Any]] = [
    # Requests are small (the largest is a task or worker with 16 KiB of attributes); a 4 MiB
    # ceiling refuses abuse early while leaving room for List pages of 1000 tasks.
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    # Agent streams live for hours behind NATs and load balancers that drop idle flows: ping
    # every 30 s and accept client pings as often as every 10 s (the SDK's keepalive).
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # One stream per connected agent: thousands per server are expected.
    ("grpc.max_concurrent_streams", 10_000),
    # grpc shares ports by default (SO_REUSEPORT): a second router on a busy port would start
    # and take half the connections. A busy port must be an error.
    ("grpc.so_reuseport", 0),
]


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    """Interface to listen on (0.0.0.0 in a container)."""
    port: int = 50051
    """gRPC port; 0 picks a free one (see RunningServer.port)."""
    metrics_port: int | None = 9464
    """Prometheus /metrics port; None turns the endpoint off, 0 picks a free port."""
    test_clock: bool = False
    """Start with a clock that only ClockService.AdvanceTime moves (for tests)."""
    test_clock_start_ms: int | None = None


@dataclass(slots=True)
class RunningServer:
    config: ServerConfig
    grpc_server: grpc.aio.Server
    service: RouterService
    health: health.aio.HealthServicer
    registry: CollectorRegistry
    port: int
    metrics_port: int | None
    _metrics_http: Any = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    async def wait(self) -> None:
        await self.grpc_server.wait_for_termination()

    async def stop(self, grace_s: float = 1.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.grpc_server.stop(grace_s)
        await self.service.stop()
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()


async def start_server(config: ServerConfig, *, engine: Engine | None = None) -> RunningServer:
    """Starts a router serving on `config.host:config.port` and returns once it listens."""
    clock: Clock = TestClock(config.test_clock_start_ms) if config.test_clock else SystemClock()
    registry = CollectorRegistry()
    metrics = RouterMetrics(registry)
    service = RouterService(engine or Engine(), clock, metrics)
    service.start()

    server = grpc.aio.server(options=GRPC_OPTIONS)
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(TaskServicer(service), server)
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(WorkerServicer(service), server)
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(service), server)
    stats_service_pb2_grpc.add_StatsServiceServicer_to_server(StatsServicer(service), server)
    clock_service_pb2_grpc.add_ClockServiceServicer_to_server(ClockServicer(service), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    try:
        port = server.add_insecure_port(f"{config.host}:{config.port}")
    except RuntimeError as error:  # grpcio raises this when the port cannot be bound
        await service.stop()
        raise OSError(f"cannot listen on {config.host}:{config.port}: {error}") from error
    await server.start()
    for name in ("", *SERVICE_NAMES):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

    metrics_http = None
    metrics_port = None
    if config.metrics_port is not None:
        metrics_http, _ = start_http_server(config.metrics_port, config.host, registry=registry)
        metrics_port = metrics_http.server_port
    log.info("switchboard listening on %s:%s (metrics on %s)", config.host, port, metrics_port)
    return RunningServer(
        config, server, service, health_servicer, registry, port, metrics_port, metrics_http
    )
