"""The engine's audit: the invariants that must hold after every command (for tests and the
simulation), and the digest that proves two engines hold the same state. Each part provides
its share of the digest; this module fixes their order, which is the digest's format: the
value is compared across routers and versions."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from router.core.histories import CANONICAL
from router.core.model import TaskStatus
from router.core.scoring import best_row

if TYPE_CHECKING:
    from router.core.catalog import Catalog
    from router.core.conversations import Conversations
    from router.core.customers import Customers
    from router.core.histories import Histories
    from router.core.identifiers import Identifiers
    from router.core.lifecycle import TaskLifecycle
    from router.core.matching import Matching
    from router.core.offers import Offers
    from router.core.presence import Presence
    from router.core.roster import Roster
    from router.core.routing import Routing
    from router.core.statistics import Statistics
    from router.core.timers import Clock, TimerQueue

_DIGEST_SLICE_ITEMS = 1024


class Audit:
    def __init__(
        self,
        *,
        clock: Clock,
        timers: TimerQueue,
        catalog: Catalog,
        roster: Roster,
        lifecycle: TaskLifecycle,
        offers: Offers,
        routing: Routing,
        matching: Matching,
        statistics: Statistics,
        histories: Histories,
        identifiers: Identifiers,
        conversations: Conversations,
        presence: Presence,
        customers: Customers,
    ) -> None:
        self._clock = clock
        self._timers = timers
        self._catalog = catalog
        self._roster = roster
        self._lifecycle = lifecycle
        self._offers = offers
        self._routing = routing
        self._matching = matching
        self._stats = statistics
        self._histories = histories
        self._ids = identifiers
        self._conversations = conversations
        self._presence = presence
        self._customers = customers

    def check_invariants(self) -> None:
        """Raises AssertionError when the state breaks a rule that must always hold: no worker
        over capacity, no task held by two workers, columns and indexes agree with records, and
        no waiting task has an eligible free worker (matching left nothing undone). O(state):
        for tests."""
        roster, columns = self._roster, self._roster.columns
        holders: dict[str, list[str]] = {}
        for worker in roster.workers.values():
            row = worker.row
            for channel, load in worker.load_by_channel.items():
                col = columns.channel_index.get(channel)
                capacity = worker.profile.capacity_by_channel.get(channel, 0)
                assert 0 < load <= capacity, (
                    f"{worker.worker_id} holds {load} {channel} > {capacity}"
                )
                assert columns.load[row, col] == load, f"{worker.worker_id} load column"
            priced = sum(
                load * worker.profile.cost_by_channel.get(channel, 1.0)
                for channel, load in worker.load_by_channel.items()
            )
            assert abs(columns.total_load[row] - priced) < 1e-6, f"{worker.worker_id} total"
            if worker.profile.total_capacity is not None:
                assert priced <= worker.profile.total_capacity + 1e-9, f"{worker.worker_id} over"
            for task_id in worker.task_ids:
                holders.setdefault(task_id, []).append(worker.worker_id)
            assert columns.available[row] == roster.eligible(worker), (
                f"{worker.worker_id} available column"
            )
        self._check_presence()
        tasks, waiting = self._lifecycle.tasks, self._matching.waiting
        reservations = self._offers.reservations
        conversation_holders = self._conversations.holders
        for task in tasks.values():
            held_by = sorted(holders.get(task.task_id, []))
            # Consults (invited or joined) and agents in wrap-up after handing the task on
            # hold it too; nobody else does (no leak, no holder the state does not name).
            others = conversation_holders(task.task_id)
            if task.status is TaskStatus.RESERVED:
                offered = sorted(reservations[r].worker_id for r in task.offer_ids)
                assert offered, f"{task.task_id} reserved without offers"
                expected = sorted(offered + others)
                assert held_by == expected, f"{task.task_id} held by {held_by}, not {expected}"
            elif task.status in (TaskStatus.ASSIGNED, TaskStatus.WRAPPING):
                expected = sorted([task.worker_id, *others])
                assert held_by == expected, f"{task.task_id} held by {held_by}, not {expected}"
            else:
                assert held_by == sorted(others), f"{task.task_id} {task.status} held by {held_by}"
                assert not task.offer_ids, f"{task.task_id} {task.status} has offers"
            assert (task.status is TaskStatus.PENDING) == (task.task_id in waiting)
        tasks.check()
        self._conversations.check()
        self._customers.check()
        roster.worker_index.check((w.worker_id, w.activity) for w in roster.workers.values())
        self._catalog.membership.check()
        matching = self._matching
        for queue_id, queue in self._catalog.queues.items():
            if matching.round_pending(queue_id):
                continue  # its free workers wait for the round
            for task_id in waiting.task_ids(queue_id):
                task = tasks.open[task_id]
                routing = self._routing.of_task[task_id]
                assert waiting.group_target(task_id) == routing.target, f"{task_id} target"
                free_row = best_row(
                    columns,
                    routing.requirement,
                    matching.members(routing.target),
                    queue.weights,
                    need=0.0,
                    excluded_rows=roster.rows_of(task.excluded_worker_ids),
                    affinity_rows=(),
                    now_ms=self._clock.now_ms,
                )
                assert free_row is None, (
                    f"{task_id} waits while {roster.worker_at_row[free_row]} is free"
                )

    def _check_presence(self) -> None:
        """Presence is kept only for workers that exist and only while it is not the default;
        a connected worker is not lost; a lost one has its grace or has spent it."""
        workers = self._roster.workers
        for worker_id, state in self._presence.workers.items():
            assert worker_id in workers, f"presence of unknown worker {worker_id}"
            assert not state.is_default(), f"{worker_id} default presence kept"
            assert not (state.connected and state.lost_ms), f"{worker_id} connected and lost"
            if state.grace_due_ms:
                assert state.lost_ms and state.grace_due_ms >= state.lost_ms, f"{worker_id} grace"
            limit = self._presence.settings.missed_offers_max
            assert state.missed_offers < max(limit, 1), f"{worker_id} missed offers"

    def digest(self) -> str:
        """A hash of the whole routing state (see `Engine.digest`)."""
        digest = hashlib.sha256()
        encode = CANONICAL.encode
        for name, part in self.digest_state().items():
            if isinstance(part, list):  # in slices: never the whole state in one buffer
                digest.update(encode([name, len(part)]))
                for start in range(0, len(part), _DIGEST_SLICE_ITEMS):
                    digest.update(encode(part[start : start + _DIGEST_SLICE_ITEMS]))
            else:
                digest.update(encode([name, part]))
        return digest.hexdigest()

    def digest_state(self) -> dict[str, Any]:
        """The state that `digest` hashes, part by part, in the digest's order."""
        # The clock is not state: a router that idled to a later time holds the same state.
        lifecycle, offers, matching = self._lifecycle, self._offers, self._matching
        presence = self._presence
        return {
            "seqs": [lifecycle.task_seq, offers.reservation_seq, self._timers.seq],
            # Only once set: an unseeded state (an older router's) keeps the digest it had.
            **({"id_key": self._ids.key} if self._ids.seeded else {}),
            **self._catalog.digest_state(),  # channels, activities, queues, policies
            "rounds": matching.digest_rounds(),
            "workers": self._roster.digest_state(),
            "open_tasks": list(lifecycle.tasks.open.values()),
            # Closed tasks are kept in that same deterministic encoding: their bytes are hashed
            # as they are, in the order they closed (the order they are forgotten in).
            "closed_tasks": [data for _, data in lifecycle.tasks.closed.values()],
            "reservations": offers.digest_state(),
            "waiting": matching.digest_waiting(),
            "timers": self._timers.digest_state(),
            "customers": self._histories.digest_customers(),
            "request_ids": self._histories.digest_request_ids(),
            "counters": self._stats.digest_state(),
            # Only once a conversation command has run: an older router's state keeps its digest.
            **self._conversations.digest_state(),
            # Only once it holds something: an older router's state keeps the digest it had.
            **({"presence": self._presence.digest_state()} if presence.holds_something() else {}),
            # Likewise: only once a customer's context or the timeline settings exist.
            **(
                {"customers_context": self._customers.digest_state()}
                if self._customers.holds_something()
                else {}
            ),
        }
