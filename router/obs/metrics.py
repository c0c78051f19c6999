"""Prometheus metrics of the router. Every metric lives in the registry it is given, so that each
test builds a fresh one and reads values with `registry.get_sample_value(...)`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from router.core.engine import QueueStats
from router.core.events import (
    Event,
    OfferClosed,
    OfferCreated,
    TaskAssigned,
    TaskCanceled,
    TaskCompleted,
    TaskCreated,
    TaskPaused,
    TaskRequeued,
    TaskResumed,
    TransferChanged,
    WorkerPresenceChanged,
)
from router.core.windows import Windows, window_start_ms

DECISION_BUCKETS_S = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
)
"""From 50 us to 250 ms: one routing decision should take well under a millisecond."""
SERVICE_LEVEL_THRESHOLD_S = 20
"""The service level gauges' threshold (GetStats answers at any threshold)."""
SERVICE_LEVEL_WINDOW_S = 900
WAIT_BUCKETS_S = (1, 5, 10, 20, 30, 60, 120, 300, 600, 1800, 3600)
SNAPSHOT_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
"""From the writer's pause to fork (milliseconds) to a background save of a large state."""


_Labelled = TypeVar("_Labelled", Counter, Histogram)


class RouterMetrics:
    """The router's metrics, fed with the engine's events and periodic queue statistics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._children: dict[tuple[object, tuple[object, ...]], Any] = {}
        """Labelled children of the event counters, by metric and label values (`_child`)."""
        labels = ("queue", "channel")
        self.tasks_created = Counter(
            "switchboard_tasks_created", "Tasks created.", labels, registry=registry
        )
        self.tasks_assigned = Counter(
            "switchboard_tasks_assigned", "Tasks accepted by a worker.", labels, registry=registry
        )
        self.tasks_canceled = Counter(
            "switchboard_tasks_canceled",
            "Tasks canceled (by request or time-to-live).",
            (*labels, "reason"),
            registry=registry,
        )
        self.presence_changes = Counter(
            "switchboard_presence_changes",
            "Changes of agents' presence (connected, lost, disconnected, expired, away, "
            "draining, undrained).",
            ("change",),
            registry=registry,
        )
        self.tasks_requeued = Counter(
            "switchboard_tasks_requeued",
            "Assigned tasks routed again after their agent's stream was lost.",
            labels,
            registry=registry,
        )
        self.transfers = Counter(
            "switchboard_transfers",
            "Transfers by mode and status (initiated, completed, failed, canceled).",
            ("queue", "mode", "status"),
            registry=registry,
        )
        self.tasks_paused = Counter(
            "switchboard_tasks_paused", "Tasks paused.", labels, registry=registry
        )
        self.tasks_resumed = Counter(
            "switchboard_tasks_resumed",
            "Paused tasks resumed (origin: caller, or pause when the pause ran out).",
            (*labels, "origin"),
            registry=registry,
        )
        self.tasks_completed = Counter(
            "switchboard_tasks_completed",
            "Tasks completed (wrap-up over).",
            labels,
            registry=registry,
        )
        self.offers = Counter(
            "switchboard_offers",
            "Offers made and how they ended.",
            ("queue", "outcome"),
            registry=registry,
        )
        self.wait_seconds = Histogram(
            "switchboard_task_wait_seconds",
            "Time from creation to assignment.",
            ("queue",),
            buckets=WAIT_BUCKETS_S,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "switchboard_queue_depth", "Tasks waiting in the queue.", ("queue",), registry=registry
        )
        self.queue_longest_wait = Gauge(
            "switchboard_queue_longest_wait_seconds",
            "Age of the oldest waiting task.",
            ("queue",),
            registry=registry,
        )
        self.workers = Gauge(
            "switchboard_workers", "Workers by activity.", ("activity",), registry=registry
        )
        self.decision_seconds = Histogram(
            "switchboard_routing_decision_seconds",
            "Time to apply one command, routing included.",
            buckets=DECISION_BUCKETS_S,
            registry=registry,
        )
        self.batch_size = Histogram(
            "switchboard_batch_commands",
            "Commands applied per batch of the writer loop.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=registry,
        )

        self.snapshot_seconds = Histogram(
            "switchboard_snapshot_seconds",
            "Snapshots: how long the writer paused to take one (phase=writer: the fork), and how "
            "long it took in the background to encode and save it (phase=background).",
            ("phase",),
            buckets=SNAPSHOT_BUCKETS_S,
            registry=registry,
        )
        self.snapshot_bytes = Gauge(
            "switchboard_snapshot_bytes", "Size of the latest saved snapshot.", registry=registry
        )
        self.lease_losses = Counter(
            "switchboard_lease_losses",
            "Times this router lost the leadership it held.",
            registry=registry,
        )
        self.store_behind = Counter(
            "switchboard_store_behind",
            "Times the store came back behind what this router held (restarted empty, or from an "
            "older copy): written_back (the leader wrote its state back), refused_to_lead (a "
            "standby would not lead from it), superseded (another router led from it first).",
            ("action",),
            registry=registry,
        )
        self.replica_shortfalls = Counter(
            "switchboard_replica_ack_shortfalls",
            "Journaled batches fewer replicas acknowledged in time than --min-replicas-acked "
            "asks (their callers got UNAVAILABLE).",
            registry=registry,
        )
        self.leader = Gauge(
            "switchboard_leader",
            "1 while this router leads (holds the lease and serves), 0 while it stands by.",
            registry=registry,
        )
        self.store_restarts = Counter(
            "switchboard_store_restarts",
            "Times the router restarted its embedded Redis server after it died.",
            registry=registry,
        )
        self.auth_refusals = Counter(
            "switchboard_auth_refusals",
            "Calls refused: UNAUTHENTICATED (missing_token, expired, invalid_token) or "
            "PERMISSION_DENIED (role: not for this role; scope: another worker's or queue's).",
            ("reason",),
            registry=registry,
        )
        self.admin_changes = Counter(
            "switchboard_admin_changes",
            "Configuration changes (AdminService and WorkerService upserts and removals) "
            "that passed the access check, whatever their outcome (the audit log has it).",
            ("method",),
            registry=registry,
        )
        self.queue_service_level = Gauge(
            "switchboard_queue_service_level",
            f"Share of the tasks answered within {SERVICE_LEVEL_THRESHOLD_S} s over the last "
            f"{SERVICE_LEVEL_WINDOW_S // 60} minutes (answered within / (answered + abandoned "
            "after)); absent while nothing counts.",
            ("queue",),
            registry=registry,
        )
        self.channel_service_level = Gauge(
            "switchboard_channel_service_level",
            "The same service level by channel, across queues.",
            ("channel",),
            registry=registry,
        )
        self.events_published = Counter(
            "switchboard_events_published",
            "Events journaled and put on the event feed (EventService.Subscribe).",
            registry=registry,
        )
        self.event_subscribers = Gauge(
            "switchboard_event_subscribers",
            "Event feed subscribers connected to this router.",
            registry=registry,
        )
        self.event_subscriber_lag = Gauge(
            "switchboard_event_subscriber_lag_max_events",
            "How many events the furthest-behind subscriber of the event feed has still to "
            "read (it is cut off past the limit).",
            registry=registry,
        )
        self.event_subscribers_cut_off = Counter(
            "switchboard_event_subscribers_cut_off",
            "Event feed subscribers cut off (RESOURCE_EXHAUSTED) for falling too far behind.",
            registry=registry,
        )
        self.timeline_entries_written = Counter(
            "switchboard_timeline_entries_written",
            "Customer timeline entries the projector wrote (created or updated).",
            registry=registry,
        )
        self.timeline_entries_purged = Counter(
            "switchboard_timeline_entries_purged",
            "Customer timeline entries dropped by retention or the per-customer bound.",
            registry=registry,
        )
        self.timeline_projector_lag = Gauge(
            "switchboard_timeline_projector_lag_events",
            "Events published that the timeline projector has not yet folded into the timeline.",
            registry=registry,
        )
        self.timeline_erasures = Counter(
            "switchboard_timeline_erasures",
            "Customers whose timeline and profile EraseCustomer deleted.",
            registry=registry,
        )

    def observe_events(self, events: Iterable[Event]) -> None:
        child = self._child
        for event in events:
            if isinstance(event, TaskCreated):
                task = event.task
                child(self.tasks_created, task.queue_id, task.spec.channel).inc()
            elif isinstance(event, OfferCreated):
                child(self.offers, event.task.queue_id, "offered").inc()
            elif isinstance(event, OfferClosed):
                outcome = event.reservation.status.value
                child(self.offers, event.task.queue_id, outcome).inc()
            elif isinstance(event, TaskAssigned):
                task = event.task
                child(self.offers, task.queue_id, "accepted").inc()
                child(self.tasks_assigned, task.queue_id, task.spec.channel).inc()
                child(self.wait_seconds, task.queue_id).observe(event.wait_ms / 1000)
            elif isinstance(event, TaskCanceled):
                task = event.task
                # Reasons are free text: the label is who canceled (caller, ttl, exception).
                child(self.tasks_canceled, task.queue_id, task.spec.channel, event.origin).inc()
            elif isinstance(event, TaskCompleted):
                task = event.task
                child(self.tasks_completed, task.queue_id, task.spec.channel).inc()
            elif isinstance(event, WorkerPresenceChanged):
                child(self.presence_changes, event.change).inc()
            elif isinstance(event, TransferChanged):
                transfer = event.transfer
                child(
                    self.transfers,
                    transfer.from_queue_id,
                    transfer.mode.value,
                    transfer.status.value,
                ).inc()
            elif isinstance(event, TaskPaused):
                task = event.task
                child(self.tasks_paused, task.queue_id, task.spec.channel).inc()
            elif isinstance(event, TaskResumed):
                task = event.task
                child(self.tasks_resumed, task.queue_id, task.spec.channel, event.origin).inc()
            elif isinstance(event, TaskRequeued):
                child(self.tasks_requeued, event.queue_id, event.channel).inc()

    def _child(self, metric: _Labelled, *labels: object) -> _Labelled:
        """`metric.labels(*labels)`, kept: prometheus_client takes a lock and builds its key on
        every `labels` call (about 1.5 us), and a batch's events name the same few queues."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def observe_service_levels(self, windows: Windows, now_ms: int) -> None:
        start_ms = window_start_ms(now_ms, SERVICE_LEVEL_WINDOW_S)
        for gauge, by_key in (
            (self.queue_service_level, windows.queues),
            (self.channel_service_level, windows.channels),
        ):
            for key, minutes in by_key.items():
                split = windows.tally(minutes, start_ms).split(SERVICE_LEVEL_THRESHOLD_S)
                if split.answered_within + split.answered_after + split.abandoned_after:
                    gauge.labels(key).set(split.service_level)
                else:
                    with contextlib.suppress(KeyError):
                        gauge.remove(key)

    def observe_state(
        self, queue_stats: Iterable[QueueStats], workers_by_activity: Mapping[str, int]
    ) -> None:
        for stats in queue_stats:
            self.queue_depth.labels(stats.queue_id).set(stats.waiting)
            self.queue_longest_wait.labels(stats.queue_id).set(stats.longest_wait_ms / 1000)
        for activity, count in workers_by_activity.items():
            self.workers.labels(activity).set(count)
