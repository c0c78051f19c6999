"""Matching: which worker gets which task. A pending task is offered to the best eligible free
worker (or waits in the waiting index); a worker with free capacity is offered the waiting
task it should take next; a batch-assigned queue collects its tasks and free workers and
assigns them together every window, as an assignment problem."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from router.core.assignment import INELIGIBLE, best_pairs
from router.core.events import Event, TaskQueued
from router.core.limits import ASSIGNMENT_ROUND_TASKS_MAX
from router.core.model import QueueConfig, TaskRecord, TaskStatus, WorkerRecord
from router.core.scoring import best_rows, eligible_rows, empathy_need, scores
from router.core.timers import TimerKind
from router.core.waiting import NO_PIN, GroupTarget, WaitingEntry, WaitingIndex, order_key

if TYPE_CHECKING:
    from router.core.catalog import Catalog
    from router.core.histories import Histories
    from router.core.lifecycle import TaskLifecycle
    from router.core.offers import Offers
    from router.core.roster import Roster
    from router.core.routing import Routing
    from router.core.timers import Clock, TimerQueue


class Matching:
    def __init__(self) -> None:
        self.waiting = WaitingIndex()
        self._round_due_ms: dict[str, int] = {}
        """Per batch-assigned queue, when its next assignment round runs."""

    def connect(
        self,
        *,
        clock: Clock,
        events: list[Event],
        timers: TimerQueue,
        catalog: Catalog,
        roster: Roster,
        lifecycle: TaskLifecycle,
        offers: Offers,
        routing: Routing,
        histories: Histories,
    ) -> None:
        self._clock = clock
        self._events = events
        self._timers = timers
        self._catalog = catalog
        self._queues = catalog.queues
        self._membership = catalog.membership
        self._roster = roster
        self._workers = roster.workers
        self._worker_at_row = roster.worker_at_row
        self._open = lifecycle.tasks.open
        self._offer = offers.offer
        self._task_routing = routing.of_task
        self._histories = histories

    def members(self, target: GroupTarget) -> npt.NDArray[np.bool_]:
        """Who may take tasks of this target (availability and requirement aside)."""
        matrix = self._membership.matrix
        members: npt.NDArray[np.bool_] = matrix[target.queue_slot]
        if target.expression_slot != self._catalog.everyone_slot:
            members = members & matrix[target.expression_slot]
        if target.pinned_row != NO_PIN:
            pinned = np.zeros_like(members)
            if target.pinned_row >= 0:
                pinned[target.pinned_row] = members[target.pinned_row]
            members = pinned
        return members

    # -- greedy matching --------------------------------------------------------------------

    def route_task(self, task: TaskRecord) -> None:
        """Offers a pending task to the best eligible worker (or the best few, for a queue that
        offers to several at once), or makes it wait."""
        queue = self._queues[task.queue_id]
        routing = self._task_routing[task.task_id]
        if queue.assignment_window_s > 0:
            self.enqueue(task)
            self._queued(task)
            self.schedule_round(queue.queue_id)
            return
        rows = best_rows(
            self._roster.columns,
            routing.requirement,
            self.members(routing.target),
            queue.weights,
            need=empathy_need(task.spec.sentiment, task.repeat_contacts),
            excluded_rows=self._roster.rows_of(task.excluded_worker_ids),
            affinity_rows=self._affinity_rows(task),
            now_ms=self._clock.now_ms,
            count=queue.offer_workers_max,
        )
        if not rows:
            self.enqueue(task)
            self._queued(task)
        workers, worker_at_row, offer = self._workers, self._worker_at_row, self._offer
        for row in rows:
            offer(task, workers[worker_at_row[row]])

    def offer(self, task: TaskRecord, worker: WorkerRecord) -> None:
        """Offers a pending task to one worker chosen elsewhere (checked eligible)."""
        self._offer(task, worker)

    def serve_worker(self, worker: WorkerRecord) -> None:
        """Offers a worker with free capacity the waiting tasks it should take next."""
        row = worker.row
        worker_id = worker.worker_id
        open_tasks = self._open
        columns = self._roster.columns
        waiting = self.waiting
        membership = self._membership
        offer = self._offer
        now_ms = self._clock.now_ms
        while np.count_nonzero(columns.ready[row]):  # cheaper than any() on a short row
            task_id = waiting.best_task_for(
                row,
                columns,
                membership,
                lambda task_id: worker_id in open_tasks[task_id].excluded_worker_ids,
                now_ms,
            )
            if task_id is None:
                break
            waiting.remove(task_id)
            offer(open_tasks[task_id], worker)
        if self._catalog.batched_queues:
            self._serve_rounds(worker)

    def _serve_rounds(self, worker: WorkerRecord) -> None:
        """A worker still free may serve a batch-assigned queue: its next round will tell."""
        if not self._roster.columns.ready[worker.row].any():
            return
        for queue_id in sorted(self._catalog.batched_queues):
            if (
                self.waiting.queue_depth(queue_id)
                and self._membership.members(queue_id)[worker.row]
            ):
                self.schedule_round(queue_id)

    def serve_members(self, queue_id: str) -> None:
        """Offers waiting work to every free worker of a queue."""
        columns = self._roster.columns
        rows = columns.row_count
        free = columns.ready[:rows].any(axis=1) & self._membership.members(queue_id)[:rows]
        for row in np.flatnonzero(free).tolist():
            self.serve_worker(self._workers[self._worker_at_row[row]])

    def _queued(self, task: TaskRecord) -> None:
        event = TaskQueued(task.task_id, task.queue_id, task.spec.channel, task.priority)
        self._events.append(event)

    def enqueue(self, task: TaskRecord) -> None:
        self.waiting.add(self._waiting_entry(task))

    def enqueue_all(self, tasks: Iterable[TaskRecord]) -> None:
        """Enqueues many tasks into an empty waiting index at once (a snapshot restore)."""
        self.waiting.add_all(self._waiting_entry(task) for task in tasks)

    def _waiting_entry(self, task: TaskRecord) -> WaitingEntry:
        routing = self._task_routing[task.task_id]
        queue = self._queues[task.queue_id]
        key = order_key(
            priority=task.priority,
            created_ms=task.created_ms,
            seq=task.seq,
            task_id=task.task_id,
            order=queue.order,
            aging_per_ms=routing.target.aging_per_ms,
        )
        return WaitingEntry(
            task.task_id, routing.target, routing.requirement, key, task.created_ms, task.seq
        )

    def _affinity_rows(self, task: TaskRecord) -> list[int]:
        rows = []
        workers = self._workers
        preferred = workers.get(task.spec.preferred_worker_id)
        if preferred is not None:
            rows.append(preferred.row)
        history = self._histories.known_customer(task.spec.customer_id)
        if history is not None:
            last = workers.get(history.last_worker_id)
            if last is not None and last.row not in rows:
                rows.append(last.row)
        return rows

    # -- batch assignment -------------------------------------------------------------------

    def schedule_round(self, queue_id: str) -> None:
        queue = self._queues[queue_id]
        if queue.assignment_window_s <= 0 or queue_id in self._round_due_ms:
            return
        if not self.waiting.queue_depth(queue_id):
            return
        due_ms = self._clock.now_ms + round(queue.assignment_window_s * 1000)
        self._round_due_ms[queue_id] = due_ms
        self._timers.add(due_ms, TimerKind.ROUND, queue_id)

    def forget_round(self, queue_id: str) -> None:
        """The queue is deleted: its round (if any) will not run."""
        self._round_due_ms.pop(queue_id, None)

    def round_pending(self, queue_id: str) -> bool:
        """Whether the queue's free workers wait for its next round."""
        return queue_id in self._round_due_ms

    def round_live(self, due_ms: int, queue_id: str) -> bool:
        return self._round_due_ms.get(queue_id) == due_ms

    def round_due(self, queue_id: str) -> None:
        del self._round_due_ms[queue_id]
        self._run_round(queue_id)

    def _run_round(self, queue_id: str) -> None:
        """Assigns the queue's longest-waiting tasks to its free workers as an assignment
        problem: tier by tier of priority (a higher tier is served first), the tasks that get a
        worker are the first in queue order, and who serves whom maximises the total score."""
        queue = self._queues[queue_id]
        task_ids = self.waiting.first_task_ids(queue_id, ASSIGNMENT_ROUND_TASKS_MAX)
        tiers: dict[int, list[TaskRecord]] = {}
        for task_id in task_ids:
            task = self._open[task_id]
            tiers.setdefault(task.priority, []).append(task)
        for priority in sorted(tiers, reverse=True):
            pending = tiers[priority]
            while pending:
                pending = self._assign_tier(queue, pending)
        if len(task_ids) == ASSIGNMENT_ROUND_TASKS_MAX:
            self.schedule_round(queue_id)

    def _assign_tier(self, queue: QueueConfig, tasks: list[TaskRecord]) -> list[TaskRecord]:
        """One assignment of tasks of one priority to free workers (one task each); returns
        the tasks left that still have an eligible free worker (multi-task workers may take
        another), or [] when no pair was made."""
        columns_of_workers = self._roster.columns
        eligible = []
        for task in tasks:
            routing = self._task_routing[task.task_id]
            rows = eligible_rows(
                columns_of_workers, routing.requirement, self.members(routing.target),
                self._roster.rows_of(task.excluded_worker_ids),
            )  # fmt: skip
            if rows.size:
                eligible.append((task, routing, rows))
        if not eligible:
            return []
        columns = sorted(set().union(*(rows.tolist() for _, _, rows in eligible)))
        # The first in order get the workers; those cut here may still take a worker with room
        # for another task in the next pass (returned below), not wait for the next round.
        candidates = [task for task, _, _ in eligible]
        eligible = eligible[: len(columns)]
        column_of = {row: j for j, row in enumerate(columns)}
        matrix = np.full((len(eligible), len(columns)), INELIGIBLE)
        now_ms = self._clock.now_ms
        for i, (task, routing, rows) in enumerate(eligible):
            need = empathy_need(task.spec.sentiment, task.repeat_contacts)
            row_scores = scores(
                columns_of_workers, rows, routing.requirement, need, queue.weights,
                self._affinity_rows(task), now_ms,
            )  # fmt: skip
            matrix[i, [column_of[r] for r in rows.tolist()]] = row_scores
        pairs = best_pairs(matrix)
        for i, j in pairs:
            task = eligible[i][0]
            self.waiting.remove(task.task_id)
            self._offer(task, self._workers[self._worker_at_row[columns[j]]])
        if not pairs:
            return []
        return [task for task in candidates if task.status is TaskStatus.PENDING]

    # -- snapshot and digest ----------------------------------------------------------------

    def save_rounds(self) -> dict[str, int]:
        return self._round_due_ms

    def restore_rounds(self, rounds: dict[str, int]) -> None:
        self._round_due_ms = dict(rounds)

    def digest_rounds(self) -> list[tuple[str, int]]:
        return sorted(self._round_due_ms.items())

    def digest_waiting(self) -> dict[str, Any]:
        return {q: self.waiting.task_ids(q) for q in self._queues}
