"""Assembles the router: engine, writer loop, gRPC servicers, health, reflection and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from prometheus_client import CollectorRegistry, start_http_server

from router._proto.switchboard.v1 import (
    admin_service_pb2,
    admin_service_pb2_grpc,
    clock_service_pb2,
    clock_service_pb2_grpc,
    event_service_pb2,
    stats_service_pb2,
    stats_service_pb2_grpc,
    task_service_pb2,
    task_service_pb2_grpc,
    timeline_service_pb2,
    timeline_service_pb2_grpc,
    worker_service_pb2,
    worker_service_pb2_grpc,
)
from router.api.admin import AdminServicer
from router.api.admission import RequestAdmission
from router.api.audit import Audit
from router.api.authn import AuthConfig, TokenVerifier
from router.api.events import EventServicer, add_event_service
from router.api.guard import AccessGuard
from router.api.handlers import replaced
from router.api.stats import ClockServicer, StatsServicer
from router.api.status import LEADER_METADATA_KEY
from router.api.tasks import TaskServicer
from router.api.timeline import TimelineServicer
from router.api.workers import HELLO_TIMEOUT_S_DEFAULT, WorkerServicer
from router.clock import Clock, SystemClock, TestClock
from router.core.engine import Engine
from router.obs.loop_monitor import LoopMonitor
from router.obs.metrics import RouterMetrics
from router.privacy.customer_keys import CustomerKeys, MemoryWrappedKeys, RedisWrappedKeys
from router.privacy.keyring import Keyring, keyring_in_folder, load_keyring
from router.privacy.task_data import TaskData, personal_attribute_keys
from router.reflection import enable_reflection
from router.service import SNAPSHOT_EVERY_COMMANDS_DEFAULT, Durability, Role, RouterService
from router.store.connect import StoreClient, open_blocking_redis, open_redis
from router.store.embedded import EmbeddedRedis, supervise
from router.store.journal import RedisJournal
from router.store.lease import LEASE_TTL_S_DEFAULT, RedisLease
from router.store.protocols import EventRetention
from router.store.recovery import recover
from router.timeline.projector import TimelineProjector
from router.timeline.reads import TimelineReads
from router.timeline.store import TimelineStore
from router.tls import TlsConfig, refuse_bare_exposure, server_credentials
from router.writer.eventhub import LAG_EVENTS_MAX

log = logging.getLogger(__name__)

REDIS_TIMEOUT_S = 5.0
"""A journal write that takes longer fails the batch (UNAVAILABLE) rather than hang callers."""

SERVICE_NAMES = (
    task_service_pb2.DESCRIPTOR.services_by_name["TaskService"].full_name,
    worker_service_pb2.DESCRIPTOR.services_by_name["WorkerService"].full_name,
    admin_service_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name,
    stats_service_pb2.DESCRIPTOR.services_by_name["StatsService"].full_name,
    clock_service_pb2.DESCRIPTOR.services_by_name["ClockService"].full_name,
    event_service_pb2.DESCRIPTOR.services_by_name["EventService"].full_name,
    timeline_service_pb2.DESCRIPTOR.services_by_name["TimelineService"].full_name,
)

GRPC_OPTIONS: list[tuple[str, Any]] = [
    # Requests are small (the largest is a task or worker with 16 KiB of attributes); a 4 MiB
    # ceiling refuses abuse early. Replies are cut to fit a default client's 4 MiB (List pages
    # are cut by bytes): a larger one is a bug, refused here rather than by the client.
    ("grpc.max_receive_message_length", 4 * 1024 * 1024),
    ("grpc.max_send_message_length", 4 * 1024 * 1024),
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
    durable: bool = True
    """Journal every batch to Redis before answering, and recover from it at start. False keeps
    the state in memory only (tests, benchmarks of the engine alone): lost when the process ends."""
    redis_url: str | None = None
    """redis://, rediss:// (TLS) or unix:// URL of the store; None starts a private Redis server
    with its data in `data_dir`."""
    data_dir: Path = Path("data")
    workspace: str = "default"
    """Namespace of the keys in Redis (`sb:{workspace}:...`)."""
    snapshot_every_commands: int = SNAPSHOT_EVERY_COMMANDS_DEFAULT
    lease_ttl_s: float = LEASE_TTL_S_DEFAULT
    """How long the leader's lease lasts unrenewed: a standby takes over within it after the
    leader dies (the leader renews every third of it)."""
    advertise_address: str = ""
    """The address clients should use for this router, given to them by standbys (default:
    host:port)."""
    min_replicas_acked: int = 0
    """Replicas of the store that must acknowledge each journaled batch (Redis WAIT) before it
    is answered; 0 trusts the primary's own persistence."""
    tls: TlsConfig | None = None
    """TLS (mutual with a client CA) on the gRPC port; None serves plaintext h2c."""
    metrics_tls: bool = False
    """Serve /metrics over HTTPS with the same certificate (and client CA) as the gRPC port."""
    auth: AuthConfig = field(default_factory=AuthConfig)
    """Bearer-token verification; its default (no key) lets every caller do everything."""
    reflection: bool = True
    """Serve server reflection (with authentication on, to callers with a valid token)."""
    insecure: bool = False
    """Allow listening beyond loopback with neither TLS nor authentication."""
    event_retention: EventRetention = EventRetention()  # noqa: RUF009 - frozen
    """How long (and how many batches' worth) the event feed is kept in the store."""
    event_subscriber_lag_max: int = LAG_EVENTS_MAX
    """How many events an event feed subscriber may fall behind before it is cut off."""
    hello_timeout_s: float = HELLO_TIMEOUT_S_DEFAULT
    """How long a new Connect stream may take to send its hello before it is ended
    DEADLINE_EXCEEDED (a stream that never says who it is holds a slot for nothing)."""
    keyring: Keyring | None = None
    """The keys that protect customers' personal data (see `router.privacy.keyring`). None:
    `SWITCHBOARD_KEYRING_FILE` or `SWITCHBOARD_KEYRING` if set, else one kept in `data_dir` for
    the private Redis, else a new one for the in-memory router; an external Redis needs one."""


@dataclass(slots=True)
class RunningServer:
    config: ServerConfig
    grpc_server: grpc.aio.Server
    service: RouterService
    health: health.aio.HealthServicer
    registry: CollectorRegistry
    port: int
    metrics_port: int | None
    loop_monitor: LoopMonitor
    _metrics_http: Any = field(default=None, repr=False)
    _redis: StoreClient | None = field(default=None, repr=False)
    _embedded: EmbeddedRedis | None = field(default=None, repr=False)
    _supervisor: asyncio.Task[None] | None = field(default=None, repr=False)
    timeline_projector: TimelineProjector | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.port}"

    async def wait(self) -> None:
        await self.grpc_server.wait_for_termination()

    async def wait_until_leading(self, timeout_s: float = 30.0) -> None:
        """Returns once this router leads (at once in memory; a durable one takes the lease, or
        waits for another router's to expire). Raises TimeoutError past `timeout_s`."""
        deadline_s = asyncio.get_running_loop().time() + timeout_s
        while not self.service.is_leader:
            if asyncio.get_running_loop().time() > deadline_s:
                raise TimeoutError(f"this router did not take the lead within {timeout_s:g} s")
            await asyncio.sleep(0.01)

    async def stop(self, grace_s: float = 1.0) -> None:
        await self.health.enter_graceful_shutdown()
        await self.grpc_server.stop(grace_s)
        if self.timeline_projector is not None:
            await self.timeline_projector.stop()
        await self.service.stop()
        await self.service.release_lease()  # a standby takes over at once
        if self._supervisor is not None:
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
        await self.loop_monitor.stop()
        await _close_store(self._redis, self._embedded)
        if self._metrics_http is not None:
            self._metrics_http.shutdown()
            self._metrics_http.server_close()


async def start_server(config: ServerConfig, *, engine: Engine | None = None) -> RunningServer:
    """Starts a router serving on `config.host:config.port` and returns once it listens. A
    durable router starts as a standby (health NOT_SERVING) and leads once it holds the lease,
    at once when no other router does."""
    refuse_bare_exposure(
        config.host, tls=config.tls is not None, authenticated=config.auth.enabled,
        insecure=config.insecure,
    )  # fmt: skip
    if config.metrics_tls and config.tls is None:
        raise ValueError("--metrics-tls needs --tls-cert and --tls-key")
    verifier = TokenVerifier(config.auth) if config.auth.enabled else None
    keyring = _keyring(config)
    clock: Clock = TestClock(config.test_clock_start_ms) if config.test_clock else SystemClock()
    registry = CollectorRegistry()
    metrics = RouterMetrics(registry)
    embedded, client, journal, url = None, None, None, ""
    if config.durable:
        embedded, client, url = await _open_store(config)
        journal = RedisJournal(client, config.workspace, event_retention=config.event_retention)
        recovered = await recover(journal)
        log.info(
            "recovered %d tasks and %d workers (%d journaled batches replayed)",
            len(recovered.engine.tasks), len(recovered.engine.workers), recovered.replayed_batches,
        )  # fmt: skip
        engine, last_entry_id = recovered.engine, recovered.last_entry_id

    # Access first: a caller without the right to a call learns nothing, not even who leads.
    guard = AccessGuard(verifier, Audit(metrics), first_request_timeout_s=config.hello_timeout_s)
    standby_refusal = _StandbyRefusal()
    # RequestAdmission last: every handler before it (the guard, a standby's refusal) gets its
    # decoding.
    server = grpc.aio.server(
        options=GRPC_OPTIONS, interceptors=[guard, standby_refusal, RequestAdmission()]
    )
    try:
        address = f"{config.host}:{config.port}"
        if config.tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, server_credentials(config.tls))
    except RuntimeError as error:  # grpcio raises this when the port cannot be bound
        await _close_store(client, embedded)
        raise OSError(f"cannot listen on {config.host}:{config.port}: {error}") from error
    durability = None
    if client is not None and journal is not None:
        address = config.advertise_address or f"{config.host}:{port}"
        # The keeper's renewals must fail fast enough to retry within the lease's life.
        lease_timeout_s = min(REDIS_TIMEOUT_S, config.lease_ttl_s / 3)
        lease = RedisLease(
            client, config.workspace, address, config.lease_ttl_s,
            keeper_client=lambda: open_blocking_redis(url, timeout_s=lease_timeout_s),
        )  # fmt: skip
        durability = Durability(
            journal,
            lease,
            last_entry_id,
            snapshot_every_commands=config.snapshot_every_commands,
            min_replicas_acked=config.min_replicas_acked,
        )
    wrapped_keys = (
        RedisWrappedKeys(client, config.workspace) if client is not None else MemoryWrappedKeys()
    )
    service = RouterService(
        engine or Engine(), clock, metrics, durability,
        event_lag_max=config.event_subscriber_lag_max,
        customer_keys=CustomerKeys(wrapped_keys, config.workspace, keyring),
    )  # fmt: skip
    projector = None
    if client is not None:
        service.timeline_store = TimelineStore(client, config.workspace)
        projector = TimelineProjector(
            service.subscribe, service.timeline_store, service.customer_keys, metrics,
            now_ms=lambda: max(clock.now_ms(), service.engine.now_ms),
            bounds=lambda: service.engine.customers.settings,
        )  # fmt: skip
    health_servicer = health.aio.HealthServicer()
    standby_refusal.service = service  # known only now: the lease needed the bound port
    guard.service = service

    async def on_role(role: Role) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if role is Role.LEADER
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *SERVICE_NAMES):
            await health_servicer.set(name, status)
        metrics.leader.set(1 if role is Role.LEADER else 0)

    service.add_role_listener(on_role)
    await on_role(service.role)
    if projector is not None:  # after the service's own listener: the feed leads first
        service.add_role_listener(projector.follow_role)
    loop_monitor = LoopMonitor(registry)
    loop_monitor.start()
    service.start()
    supervisor = None
    if embedded is not None:
        supervisor = asyncio.create_task(
            supervise(embedded, metrics.store_restarts.inc), name="embedded-redis-supervisor"
        )

    # Tasks' personal data: sealed with the customer's data key before each command, opened
    # for the replies; which attributes are personal is the timeline settings' to say.
    task_data = TaskData(service.customer_keys, lambda: personal_attribute_keys(service.engine))
    task_service_pb2_grpc.add_TaskServiceServicer_to_server(
        TaskServicer(service, task_data), server
    )
    worker_service_pb2_grpc.add_WorkerServiceServicer_to_server(
        WorkerServicer(service, task_data, hello_timeout_s=config.hello_timeout_s), server
    )
    admin_service_pb2_grpc.add_AdminServiceServicer_to_server(AdminServicer(service), server)
    stats_service_pb2_grpc.add_StatsServiceServicer_to_server(StatsServicer(service), server)
    clock_service_pb2_grpc.add_ClockServiceServicer_to_server(ClockServicer(service), server)
    add_event_service(EventServicer(service), server)
    # The timeline store's reads (GetTimeline, GetCustomerProfile, EraseCustomer's Redis half):
    # none for a router in memory, which keeps no timeline.
    reads = TimelineReads(service) if service.timeline_store is not None else None
    timeline_service_pb2_grpc.add_TimelineServiceServicer_to_server(
        TimelineServicer(service, reads=reads), server
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if config.reflection:
        enable_reflection((*SERVICE_NAMES, health.SERVICE_NAME), server)  # v1 and v1alpha
    await server.start()

    metrics_http = None
    metrics_port = None
    if config.metrics_port is not None:
        metrics_http, _ = start_http_server(
            config.metrics_port, config.host, registry=registry, **_metrics_tls(config)
        )
        metrics_port = metrics_http.server_port
    log.info("switchboard listening on %s:%s (metrics on %s)", config.host, port, metrics_port)
    return RunningServer(
        config, server, service, health_servicer, registry, port, metrics_port, loop_monitor,
        metrics_http, client, embedded, supervisor, projector,
    )  # fmt: skip


def _keyring(config: ServerConfig) -> Keyring:
    """The keyring the router seals customers' data with (see `ServerConfig.keyring`)."""
    keyring = config.keyring or load_keyring(None)
    if keyring is not None:
        return keyring
    if not config.durable:
        return Keyring.generate()
    if config.redis_url is None:
        return keyring_in_folder(config.data_dir)
    raise ValueError(
        "an external Redis (--redis-url) needs a keyring to encrypt customers' personal data: "
        "give --keyring-file PATH (SWITCHBOARD_KEYRING_FILE) or the JSON in SWITCHBOARD_KEYRING "
        "(make one with `switchboard keyring new --out PATH`)"
    )


def _metrics_tls(config: ServerConfig) -> dict[str, Any]:
    """start_http_server's TLS arguments: the gRPC port's certificate, and its client CA."""
    if not config.metrics_tls or config.tls is None:
        return {}
    tls = config.tls
    return {
        "certfile": str(tls.cert_file),
        "keyfile": str(tls.key_file),
        "client_cafile": str(tls.client_ca_file) if tls.client_ca_file else None,
        "client_auth_required": tls.client_ca_file is not None,
    }


async def _open_store(
    config: ServerConfig,
) -> tuple[EmbeddedRedis | None, StoreClient, str]:
    embedded = None
    url = config.redis_url
    if url is None:
        embedded = EmbeddedRedis(config.data_dir)
        await asyncio.to_thread(embedded.start)
        url = embedded.url
    return embedded, open_redis(url, timeout_s=REDIS_TIMEOUT_S), url


async def _close_store(client: StoreClient | None, embedded: EmbeddedRedis | None) -> None:
    if client is not None:
        await client.aclose()
    if embedded is not None:
        await asyncio.to_thread(embedded.stop)


_ALWAYS_ANSWERED = frozenset(
    {
        "/switchboard.v1.AdminService/GetStateDigest",  # to compare a standby with its leader
        "/switchboard.v1.ClockService/GetTime",
    }
)


class _StandbyRefusal(grpc.aio.ServerInterceptor):
    """A standby answers the API with UNAVAILABLE, naming the leader when it knows it, so that
    clients retry there; health and reflection still answer."""

    def __init__(self) -> None:
        self.service: RouterService | None = None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        service = self.service
        method = handler_call_details.method
        if (
            handler is None
            or service is None
            or service.is_leader
            or not method.startswith("/switchboard.v1.")
            or method in _ALWAYS_ANSWERED
        ):
            return handler
        message = service.standby_message()
        leader = service.leader_address

        async def refuse(request: Any, context: grpc.aio.ServicerContext) -> Any:
            if leader:
                context.set_trailing_metadata(((LEADER_METADATA_KEY, leader),))
            await context.abort(grpc.StatusCode.UNAVAILABLE, message)

        return replaced(handler, refuse)
