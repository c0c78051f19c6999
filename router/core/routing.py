"""Where a task waits and for whom: its arrival at a queue (business hours, queue-length rules),
its routing policy's route and steps (bullseye widening), and the exception rules that raise,
move or cancel it as it waits. What its current step makes of it (requirement, target) is
derived here and read by matching."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from router.core.calendar import is_open
from router.core.errors import FailedPrecondition
from router.core.events import Event, TaskMoved
from router.core.model import (
    DEFAULT_ROUTE,
    NO_ROUTE,
    ActionKind,
    QueueAction,
    QueueConfig,
    RoutingStep,
    TaskRecord,
    TaskSpec,
    TaskStatus,
    TriggerKind,
    WorkerRecord,
)
from router.core.policies import OPEN_STEP, route_steps, step_at
from router.core.scoring import Requirement, make_requirement
from router.core.timers import TimerKind
from router.core.waiting import NO_PIN, PINNED_TO_NOBODY, GroupTarget

if TYPE_CHECKING:
    from router.core.catalog import Catalog
    from router.core.conversations import Conversations
    from router.core.customers import Customers
    from router.core.histories import CustomerHistory
    from router.core.lifecycle import TaskLifecycle
    from router.core.matching import Matching
    from router.core.roster import Roster
    from router.core.timers import Clock, TimerQueue

_REQUIREMENT_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Arrival:
    """Where a task arriving at a queue ends up (see `Routing.arrival`)."""

    queue_id: str
    cancel_reason: str | None
    priority_raised: int
    cancel_origin: str = "exception"
    """"after_hours" or "exception": which of the queue's rules canceled it."""


class TaskRouting(NamedTuple):
    """What a task's current step makes of it, derived from the record (never stored)."""

    requirement: Requirement
    target: GroupTarget


class Routing:
    def __init__(self) -> None:
        self.of_task: dict[str, TaskRouting] = {}
        """Per open task, its current step's requirement and target."""
        self._requirement_cache: dict[tuple[object, ...], Requirement] = {}

    def connect(
        self,
        *,
        clock: Clock,
        events: list[Event],
        timers: TimerQueue,
        catalog: Catalog,
        roster: Roster,
        lifecycle: TaskLifecycle,
        matching: Matching,
        conversations: Conversations,
    ) -> None:
        self._clock = clock
        self._events = events
        self._timers = timers
        self._catalog = catalog
        self._roster = roster
        self._lifecycle = lifecycle
        self._open = lifecycle.tasks.open
        self._matching = matching
        self._conversations = conversations

    def connect_customers(self, customers: Customers) -> None:
        self._customers = customers

    # -- choosing the queue -----------------------------------------------------------------

    def policy_route(self, spec: TaskSpec, *, keyed: bool = False) -> tuple[int, str]:
        """The route (filter index) and queue a policy gives a new task (`keyed`: its
        customer_id is a customer key, and its filters see the customer's context)."""
        self._catalog.policy(spec.policy_id)
        customer = None
        if keyed:
            customer = self._customers.document(
                spec.customer_id, before_seq=self._lifecycle.task_seq + 1,
                at_ms=self._clock.now_ms, keyed=True,
            )  # fmt: skip
        index = self.compiled_route_index(spec.policy_id, spec, customer)
        return index, self._catalog.compiled[spec.policy_id].route(index).queue_id

    def customer_document(self, task: TaskRecord) -> dict[str, Any] | None:
        """The `customer` object of the task's document (None: its customer has no routing
        context), counting the contacts made before the task, as when it was created."""
        return self._customers.document(
            task.spec.customer_id, before_seq=task.seq, at_ms=task.created_ms
        )

    def compiled_route_index(
        self, policy_id: str, spec: TaskSpec, customer: Mapping[str, Any] | None = None
    ) -> int:
        """The policy's route for a task; refused when it matches nothing."""
        index = self._catalog.compiled[policy_id].route_index(spec, customer)
        if index is None:
            raise FailedPrecondition(
                f"the task matches no filter of routing policy {policy_id!r}, which has "
                "no default route"
            )
        return index

    def known_agent_of(self, spec: TaskSpec, history: CustomerHistory | None) -> str:
        if spec.preferred_worker_id:
            return spec.preferred_worker_id
        return history.last_worker_id if history is not None else ""

    def arrival(self, queue_id: str) -> Arrival:
        """Where a task arriving at a queue ends up: the after-hours action of a closed queue
        and the queue-length rules may move it on (validation keeps these chains acyclic) or
        cancel it. Pure: nothing changes until the task is created."""
        catalog = self._catalog
        if queue_id not in catalog.queues_with_arrival_rules:
            return Arrival(queue_id, None, 0)
        raised = 0
        visited: list[str] = []
        while True:
            assert queue_id not in visited, f"overflow cycle through {visited}"
            visited.append(queue_id)
            queue = catalog.queues[queue_id]
            action = None
            origin = "exception"
            if (
                queue.business_hours is not None
                and queue.after_hours_action is not None
                and not is_open(queue.business_hours, self._clock.now_ms)
            ):
                action = queue.after_hours_action
                origin = "after_hours"
            else:
                depth = self._matching.waiting.queue_depth(queue_id)
                for rule in queue.exception_rules:
                    if rule.trigger is TriggerKind.QUEUE_LENGTH and depth >= rule.queue_length:
                        if rule.action.kind is ActionKind.RAISE_PRIORITY:
                            raised += rule.action.priority_delta
                        else:
                            action = rule.action
                            break
            if action is None:
                return Arrival(queue_id, None, raised)
            if action.kind is ActionKind.CANCEL:
                return Arrival(queue_id, action.reason or origin, raised, origin)
            if catalog.queue_full(catalog.queues[action.queue_id]):
                return Arrival(queue_id, None, raised)  # a full overflow: stay
            queue_id = action.queue_id

    # -- steps ------------------------------------------------------------------------------

    def start_route(self, task: TaskRecord, offer_to: WorkerRecord | None = None) -> None:
        """Puts a new (or moved) task on the first step of its route and routes it (offers it
        to `offer_to` when given: a transfer to a named worker, checked eligible)."""
        self._enter_step(task, 0, started_ms=self._clock.now_ms)
        self._schedule_wait_timer(task)
        if offer_to is not None:
            self._matching.offer(task, offer_to)
        else:
            self._matching.route_task(task)

    def requirement(
        self, spec: TaskSpec, extra_skills: Mapping[str, float] | None = None
    ) -> Requirement:
        """The requirement of a task with `extra_skills` raising its minimum levels."""
        return self._requirement(spec, extra_skills)

    def keep_in_policy(self, task: TaskRecord) -> None:
        """A task its policy routed that is not being routed now (assigned, wrapping, paused)
        and whose policy changed: its route and step stay within the new policy, so that its
        routing can be derived again (when it is routed again, or restored from a snapshot). A
        route that still exists is kept; one that is gone is chosen again by the filters. Its
        priority and routing are derived from the new policy at once, as a restored engine
        derives every open task's."""
        compiled = self._catalog.compiled[task.spec.policy_id]
        policy = compiled.policy
        index = task.route_index
        gone = (index == DEFAULT_ROUTE and policy.default_route is None) or (
            index >= len(policy.filters)
        )
        if gone:
            chosen = compiled.route_index(task.spec, self.customer_document(task))
            task.route_index = NO_ROUTE if chosen is None else chosen
        task.step_index = min(task.step_index, len(self._steps(task)) - 1)
        self.derive(task)

    def _steps(self, task: TaskRecord) -> tuple[RoutingStep, ...]:
        """The task's steps: a wait for its known agent when it asks for one, then its route's."""
        if task.route_index == NO_ROUTE:
            steps: tuple[RoutingStep, ...] = (OPEN_STEP,)
        else:
            compiled = self._catalog.compiled[task.spec.policy_id]
            steps = route_steps(compiled.route(task.route_index))
        if task.known_agent_id and task.spec.known_agent_wait_s > 0:
            wait = RoutingStep(timeout_s=task.spec.known_agent_wait_s, known_agent=True)
            steps = (wait, *steps)
        return steps

    def _enter_step(self, task: TaskRecord, index: int, *, started_ms: int) -> None:
        """Moves a task not waiting in the index to step `index` (or the first later step not
        skipped; the last step is never skipped) and derives its routing from it."""
        steps = self._steps(task)
        while index < len(steps) - 1 and self._skips(task, steps[index]):
            started_ms = self._clock.now_ms
            index += 1
        step = steps[index]
        task.step_index = index
        timeout_ms = round(step.timeout_s * 1000)
        task.step_due_ms = started_ms + timeout_ms if timeout_ms > 0 else 0
        if task.step_due_ms:
            self._timers.add(task.step_due_ms, TimerKind.STEP, task.task_id)
        self.derive(task, step)

    def _skips(self, task: TaskRecord, step: RoutingStep) -> bool:
        if step.known_agent and task.known_agent_id not in self._roster.workers:
            return True
        if not step.skip_if_no_workers:
            return False
        routing = self._routing_for(task, step)
        columns = self._roster.columns
        rows = columns.row_count
        candidates = self._matching.members(routing.target)[:rows] & columns.available[:rows]
        for col, level in routing.requirement.required:
            candidates &= columns.skills[:rows, col] >= level
        return not candidates.any()

    def derive(self, task: TaskRecord, step: RoutingStep | None = None) -> None:
        """Recomputes what the task's step makes of it: priority, requirement, target."""
        if step is None:
            step = self._steps(task)[task.step_index]
        task.priority = task.spec.priority + task.priority_raised + step.priority_delta
        self.of_task[task.task_id] = self._routing_for(task, step)

    def _routing_for(self, task: TaskRecord, step: RoutingStep) -> TaskRouting:
        pinned = NO_PIN
        if step.known_agent:
            agent = self._roster.workers.get(task.known_agent_id)
            pinned = agent.row if agent is not None else PINNED_TO_NOBODY
        # A task cold-transferred to a worker expression is routed by the transfer's target
        # (no policy step: NO_ROUTE) and held to that expression until it is assigned.
        held_to = (
            self._conversations.held_to_expression(task.task_id)
            if task.route_index == NO_ROUTE
            else ""
        )
        if held_to:
            target = self._catalog.target(task.queue_id, held_to, pinned, transfer=True)
        else:
            target = self._catalog.target(task.queue_id, step.worker_expression, pinned)
        return TaskRouting(self._requirement(task.spec, step.required_skills), target)

    def _requirement(
        self, spec: TaskSpec, step_skills: Mapping[str, float] | None = None
    ) -> Requirement:
        """The task's requirement in a step, shared by every task with the same skills, channel
        and language (a contact center has a few hundred such task types, not one per task).
        A step's minimum levels raise the task's own."""
        required = spec.required_skills
        if step_skills:
            required = dict(required)
            for skill, level in step_skills.items():
                required[skill] = max(level, required.get(skill, level))
        key = (
            spec.channel,
            tuple(sorted(required.items())),
            tuple(spec.preferred_skills.items()),
            spec.language,
        )
        requirement = self._requirement_cache.get(key)
        if requirement is None:
            columns = self._roster.columns
            requirement = make_requirement(
                channel_col=columns.channel_index.get(spec.channel),
                required=[(columns.skill_col(s), lvl) for s, lvl in required.items()],
                preferred=[(columns.skill_col(s), w) for s, w in spec.preferred_skills.items()],
                language_col=columns.language_col(spec.language) if spec.language else -1,
            )
            if len(self._requirement_cache) >= _REQUIREMENT_CACHE_MAX:
                self._requirement_cache.clear()
            self._requirement_cache[key] = requirement
        return requirement

    def step_timed_out(self, task_id: str) -> None:
        task = self._open[task_id]
        steps = self._steps(task)
        waiting = self._matching.waiting
        is_waiting = task.task_id in waiting
        if task.step_index + 1 >= len(steps):
            task.step_due_ms = 0
            self._exception(task, TriggerKind.STEPS_EXHAUSTED)
            return
        if is_waiting:
            waiting.remove(task.task_id)
        self._enter_step(task, task.step_index + 1, started_ms=task.step_due_ms)
        task.updated_ms = self._clock.now_ms
        self._moved(task, task.queue_id, "step")
        if is_waiting:
            self._matching.route_task(task)

    def reroute_by_policy(self, task: TaskRecord) -> None:
        """Routes a task by its policy as it is now: the first matching filter, and the step
        its wait since routing gives. A waiting task (already out of the index) is routed at
        once; a task being offered keeps its offers and is routed so if they end."""
        now_ms = self._clock.now_ms
        index = self.compiled_route_index(
            task.spec.policy_id, task.spec, self.customer_document(task)
        )
        queue_id = self._catalog.compiled[task.spec.policy_id].route(index).queue_id
        from_queue_id = task.queue_id
        if queue_id != from_queue_id:
            self._lifecycle.move_to_queue(task, queue_id)
            task.queued_ms = now_ms
            task.wait_rules_fired = 0
        task.route_index = index
        steps = self._steps(task)
        at = step_at(steps, task.route_started_ms, now_ms)
        self._enter_step(task, at.index, started_ms=at.started_ms)
        self._schedule_wait_timer(task)
        if queue_id != from_queue_id:
            self._moved(task, from_queue_id, "policy")
        if task.status is TaskStatus.PENDING:
            self._matching.route_task(task)

    def rederive_waiting(self, task: TaskRecord) -> None:
        """Re-files a waiting task whose routing (target, pinned worker) has changed."""
        self._matching.waiting.remove(task.task_id)
        self.derive(task)
        self._matching.enqueue(task)

    def repin(self, worker_id: str) -> None:
        """A new worker may be the known agent that waiting tasks wait for."""
        for task_id in self._matching.waiting.task_ids_pinned_to(PINNED_TO_NOBODY):
            task = self._open[task_id]
            if task.known_agent_id == worker_id:
                self.rederive_waiting(task)

    def reevaluate_queue(self, queue: QueueConfig, *, rules_changed: bool) -> None:
        """Re-enters every waiting task of a changed queue, then serves its free members."""
        waiting, matching, open_tasks = self._matching.waiting, self._matching, self._open
        task_ids = waiting.task_ids(queue.queue_id)
        for task_id in task_ids:
            waiting.remove(task_id)
        for task_id in task_ids:
            task = open_tasks[task_id]
            if rules_changed:
                task.priority_raised = 0
                task.wait_rules_fired = 0
            self.derive(task)
            matching.enqueue(task)
        if rules_changed:
            for task_id in task_ids:
                task = open_tasks[task_id]
                if task.status is TaskStatus.PENDING and task.queue_id == queue.queue_id:
                    self.fire_wait_rules(task)
        matching.serve_members(queue.queue_id)
        matching.schedule_round(queue.queue_id)

    # -- exception rules --------------------------------------------------------------------

    def _exception(self, task: TaskRecord, trigger: TriggerKind) -> None:
        """Applies the first rule of the task's queue with this trigger, if any."""
        for rule in self._catalog.queues[task.queue_id].exception_rules:
            if rule.trigger is trigger:
                self._apply_action(task, rule.action)
                return

    def _apply_action(self, task: TaskRecord, action: QueueAction) -> None:
        """An exception action on a pending task (a task being offered is left alone). The
        task may be out of the index (back from an offer, about to be routed)."""
        if task.status is not TaskStatus.PENDING:
            return
        if action.kind is ActionKind.CANCEL:
            self._lifecycle.cancel(task, action.reason or "exception", "exception")
            return
        matching = self._matching
        if task.task_id in matching.waiting:
            matching.waiting.remove(task.task_id)
        task.updated_ms = self._clock.now_ms
        if action.kind is ActionKind.RAISE_PRIORITY:
            task.priority_raised += action.priority_delta
            self.derive(task)
            self._moved(task, task.queue_id, "exception")
            matching.route_task(task)
            return
        arrival = self.arrival(action.queue_id)
        catalog = self._catalog
        if arrival.cancel_reason is None and catalog.queue_full(catalog.queues[arrival.queue_id]):
            matching.enqueue(task)  # the overflow is full: the task stays where it is
            return
        from_queue_id = task.queue_id
        task.queue_id = arrival.queue_id
        self._lifecycle.tasks.changed(task)
        task.queued_ms = self._clock.now_ms
        task.route_index = NO_ROUTE
        task.known_agent_id = ""
        task.wait_rules_fired = 0
        task.priority_raised += arrival.priority_raised
        self._moved(task, from_queue_id, "exception")
        if arrival.cancel_reason is not None:
            self.derive(task)
            self._lifecycle.cancel(task, arrival.cancel_reason, arrival.cancel_origin)
        else:
            self.start_route(task)

    def _moved(self, task: TaskRecord, from_queue_id: str, reason: str) -> None:
        event = TaskMoved(
            task.task_id, task.queue_id, task.spec.channel, task.priority, from_queue_id,
            reason, task.step_index,
        )  # fmt: skip
        self._events.append(event)

    def _next_wait_due_ms(self, task: TaskRecord) -> int | None:
        rules = self._catalog.wait_rules[task.queue_id]
        if not rules or task.wait_rules_fired >= len(rules):
            return None
        return task.queued_ms + round(rules[task.wait_rules_fired].wait_s * 1000)

    def _schedule_wait_timer(self, task: TaskRecord) -> None:
        due_ms = self._next_wait_due_ms(task)
        if due_ms is not None:
            self._timers.add(max(due_ms, self._clock.now_ms), TimerKind.WAIT, task.task_id)

    def fire_wait_rules(self, task: TaskRecord) -> None:
        """Fires the wait-time rules a pending task is due (one at a time, in threshold order,
        until one moves or cancels it), then schedules the next."""
        wait_rules = self._catalog.wait_rules
        while task.status is TaskStatus.PENDING:
            due_ms = self._next_wait_due_ms(task)
            if due_ms is None or due_ms > self._clock.now_ms:
                break
            queue_id = task.queue_id
            rule = wait_rules[queue_id][task.wait_rules_fired]
            task.wait_rules_fired += 1
            self._apply_action(task, rule.action)
            if task.queue_id != queue_id:
                return  # moved: its new queue's rules were scheduled on arrival
        if task.status is TaskStatus.PENDING:
            self._schedule_wait_timer(task)

    # -- timers -----------------------------------------------------------------------------

    def wait_rule_due(self, task_id: str) -> None:
        self.fire_wait_rules(self._open[task_id])

    def step_live(self, due_ms: int, task_id: str) -> bool:
        task = self._open.get(task_id)
        return (
            task is not None
            and task.status in (TaskStatus.PENDING, TaskStatus.RESERVED)
            and task.step_due_ms == due_ms
        )

    def wait_live(self, due_ms: int, task_id: str) -> bool:
        task = self._open.get(task_id)
        return (
            task is not None
            and task.status in (TaskStatus.PENDING, TaskStatus.RESERVED)
            and self._next_wait_due_ms(task) == due_ms
        )
