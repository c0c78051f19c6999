"""Who may call what: THE table from every RPC to the roles allowed and the scope each is held to.

`admin` may call everything. The other roles may call what their row lists, within a scope:

- `supervisor`, scoped to the queues of its token's `queues` claim: reads a task only when the
  task is in one of them (`GetTask`), lists only one of them (`ListTasks` must name a
  `queue_id` of its own), reads one of its queues (`GetQueue`), sees statistics of its queues
  only (`GetRealtimeStats` is answered with the other queues left out), and sets the activity
  of a worker who belongs to one of them (the queue's target set). It subscribes to events and
  asks for statistics (`GetStats`, `WatchStats`) naming only queues of its own (`queue_ids`),
  and is answered without the cross-queue figures (per channel, workspace). Workers, channels,
  activities, queue and policy configurations are read unscoped: they hold no customer data.
- `frontend`: creates, updates, cancels, reads and lists tasks (queue position and estimated
  wait come with them), unscoped: a front end serves every queue.
- `agent`, scoped to the worker of its token's `worker_id` claim: connects only as itself,
  accepts and rejects only its own offers, completes, wraps up, transfers, pauses and adds
  participants to only tasks assigned to it, resumes only a task it paused (still paused),
  removes a participant from a task assigned to it or leaves one it is a participant of, sets
  only its own activity, reads only its own worker and the tasks assigned or offered to it or
  that it is a participant of, and lists only its own tasks (`ListTasks` must name its
  `worker_id`). On the customer timeline, an agent records outcomes and actions only as its own
  worker and only on a task it holds or held (`RecordOutcome`, `RecordAgentAction`), and reads
  a customer's timeline, profile and context only by the `task_id` of a task it holds now
  (offered, assigned, wrapping, or as a participant), never by `customer_id`; its timeline
  filter `worker_id` may name only itself. Supervisors and front ends read the timeline of any
  customer (a customer is not bound to a queue); what each role sees of it is the timeline's
  view (`router/api/timeline.py`).

Each scope reads the engine between batches (the single writer's read side) and answers None
(allowed) or the reason for PERMISSION_DENIED. A test enumerates every RPC of every service in
the proto descriptors against this table, so an RPC without a row fails the suite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from router._proto.switchboard.v1 import stats_service_pb2 as spb
from router.api.authn import Principal, Role
from router.core.engine import Engine
from router.core.model import TaskStatus
from router.core.task_index import QUEUE_ID, WORKER_ID

Scope = Callable[[Principal, Any, Engine], str | None]
"""(caller, request, engine) -> None when allowed, else why not. For a stream of requests (the
Connect stream), the request is its first message."""
Narrow = Callable[[Principal, Any], Any]
"""(caller, response) -> the response with what the caller may not see left out."""

ADMIN, SUPERVISOR, FRONTEND, AGENT = Role.ADMIN, Role.SUPERVISOR, Role.FRONTEND, Role.AGENT


@dataclass(frozen=True, slots=True)
class Rule:
    roles: frozenset[Role]
    """Roles allowed besides admin (which is allowed everything, unscoped)."""
    scope: Scope | None = None
    narrow: Narrow | None = None
    audited: bool = False
    """A configuration change: written to the audit log and counted, whoever makes it."""


# -- scopes ----------------------------------------------------------------------------------------


def _holders(engine: Engine, task_id: str) -> tuple[str, frozenset[str]] | None:
    """The task's queue and the workers holding it (assigned), offered it, or on it as a
    participant (a consult or monitor, joined or invited); None if unknown. Reads the index
    keys of a closed task, not its decoded record."""
    tasks = engine.tasks
    task = tasks.open.get(task_id)
    if task is not None:
        reservations = engine.reservations
        offered = {reservations[r].worker_id for r in task.offer_ids if r in reservations}
        held = {task.worker_id} if task.worker_id else set()
        return task.queue_id or task.spec.queue_id, frozenset(
            held | offered | _participants(engine, task_id)
        )
    closed = tasks.closed.get(task_id)
    if closed is None:
        return None
    keys = closed[0]
    return keys[QUEUE_ID], frozenset({keys[WORKER_ID]} - {""})


def _task_read(principal: Principal, request: Any, engine: Engine) -> str | None:
    if principal.role is FRONTEND:
        return None
    holders = _holders(engine, request.task_id)
    if principal.role is SUPERVISOR:
        if holders is None or holders[0] not in principal.queues:
            return f"task {request.task_id!r} is not in your queues"
        return None
    if holders is None or principal.worker_id not in holders[1]:
        return f"task {request.task_id!r} is not assigned or offered to you"
    return None


def _task_held(principal: Principal, request: Any, engine: Engine) -> str | None:
    """An agent completes, wraps up, transfers, pauses or adds participants to only a task
    assigned to it (a front end acts on any task)."""
    if principal.role is FRONTEND:
        return None
    task = engine.tasks.open.get(request.task_id)
    if task is None or task.worker_id != principal.worker_id:
        return f"task {request.task_id!r} is not assigned to you"
    return None


def _participants(engine: Engine, task_id: str) -> set[str]:
    """The consults and monitors of an open task (at most PARTICIPANTS_PER_TASK_MAX)."""
    conversation = engine.conversations.active.get(task_id)
    if conversation is None:
        return set()
    return {participant.worker_id for participant in conversation.participants}


def _task_paused_by(principal: Principal, request: Any, engine: Engine) -> str | None:
    """An agent resumes only a task that it paused and that is still paused: a paused task's
    known agent is the agent who held it when it was paused (a front end resumes any task)."""
    if principal.role is FRONTEND:
        return None
    task = engine.tasks.open.get(request.task_id)
    if (
        task is None
        or task.status is not TaskStatus.PAUSED
        or task.known_agent_id != principal.worker_id
    ):
        return f"task {request.task_id!r} is not a task you paused"
    return None


def _participant_removal(principal: Principal, request: Any, engine: Engine) -> str | None:
    """An agent removes participants from a task assigned to it, or takes itself off a task
    it is a participant of (a consult hanging up)."""
    if (
        principal.role is AGENT
        and request.worker_id == principal.worker_id
        and principal.worker_id in _participants(engine, request.task_id)
    ):
        return None
    return _task_held(principal, request, engine)


def _held_now(engine: Engine, task_id: str, worker_id: str) -> bool:
    """The worker is offered, holds (assigned or wrapping), or is a participant of the open
    task, or wraps up after handing it on."""
    if task_id not in engine.tasks.open:
        return False
    holders = _holders(engine, task_id)
    return (holders is not None and worker_id in holders[1]) or (
        worker_id in engine.conversations.holders(task_id)
    )


def _held_or_held_before(engine: Engine, task_id: str, worker_id: str) -> bool:
    """The worker holds the task now, or held it: its last primary (a closed task's too), the
    agent it waits for again (paused, re-queued), or an agent who transferred it away."""
    task = engine.tasks.open.get(task_id)
    if task is None:
        closed = engine.tasks.closed.get(task_id)
        return closed is not None and closed[0][WORKER_ID] == worker_id
    if _held_now(engine, task_id, worker_id) or worker_id in (task.worker_id, task.known_agent_id):
        return True
    conversation = engine.conversations.active.get(task_id)
    return conversation is not None and any(
        transfer.from_worker_id == worker_id for transfer in conversation.transfers
    )


def _recorded_by_holder(principal: Principal, request: Any, engine: Engine) -> str | None:
    """An agent records outcomes and actions as itself, on a task it holds or held."""
    if principal.role is not AGENT:
        return None
    if request.worker_id != principal.worker_id:
        return "record as your own worker (worker_id)"
    if not _held_or_held_before(engine, request.task_id, principal.worker_id):
        return f"task {request.task_id!r} is not one you hold or held"
    return None


def _customer_of_held_task(principal: Principal, request: Any, engine: Engine) -> str | None:
    """An agent reads a customer only through a task it holds now (and, in a timeline, filters
    by no worker but itself)."""
    if principal.role is not AGENT:
        return None
    if request.customer_id or not _held_now(engine, request.task_id, principal.worker_id):
        return "name the customer by the task_id of a task you hold"
    if getattr(request, "worker_id", "") not in ("", principal.worker_id):
        return "filter by your own worker_id only"
    return None


def _task_list(principal: Principal, request: Any, engine: Engine) -> str | None:
    if principal.role is SUPERVISOR and request.queue_id not in principal.queues:
        return "list the tasks of one of your queues (queue_id)"
    if principal.role is AGENT and request.worker_id != principal.worker_id:
        return "list your own tasks (worker_id)"
    return None


def _own_worker(principal: Principal, request: Any, engine: Engine) -> str | None:
    if principal.role is AGENT and request.worker_id != principal.worker_id:
        return f"worker {request.worker_id!r} is not yours"
    return None


def _activity(principal: Principal, request: Any, engine: Engine) -> str | None:
    if principal.role is not SUPERVISOR:
        return _own_worker(principal, request, engine)
    worker = engine.workers.get(request.worker_id)
    queues = engine.queues
    membership = engine.catalog.membership
    if worker is not None and any(
        queue_id in queues and bool(membership.members(queue_id)[worker.row])
        for queue_id in principal.queues
    ):
        return None
    return f"worker {request.worker_id!r} serves none of your queues"


def _hello(principal: Principal, request: Any, engine: Engine) -> str | None:
    if request is None:  # a stream closed at once: the servicer answers it (no hello)
        return None
    if request.hello.worker_id != principal.worker_id:
        return f"connect as your own worker, not {request.hello.worker_id!r}"
    return None


def _own_offer(principal: Principal, request: Any, engine: Engine) -> str | None:
    refused = _own_worker(principal, request, engine)
    if refused is not None:
        return refused
    reservation = engine.reservations.get(request.reservation_id)
    if reservation is not None and reservation.worker_id != principal.worker_id:
        return f"offer {request.reservation_id!r} was made to another worker"
    return None


def _queue(principal: Principal, request: Any, engine: Engine) -> str | None:
    if request.queue_id not in principal.queues:
        return f"queue {request.queue_id!r} is not one of yours"
    return None


def _named_queues(queue_ids: Any, principal: Principal) -> str | None:
    if not queue_ids or not set(queue_ids) <= principal.queues:
        return "name only queues of yours (queue_ids)"
    return None


def _events_of_own_queues(principal: Principal, request: Any, engine: Engine) -> str | None:
    return _named_queues(request.queue_ids, principal)


def _stats_query(principal: Principal, request: Any, engine: Engine) -> str | None:
    return _named_queues(request.query.queue_ids, principal)


def _without_cross_queue_figures(principal: Principal, response: Any) -> Any:
    """A scoped supervisor's statistics: its queues' (the query named them) and the workers',
    not the channels' or the workspace's, which count other queues' tasks."""
    if principal.role is not SUPERVISOR:
        return response
    narrowed = type(response)()
    narrowed.CopyFrom(response)  # wallboards share one report: never change it in place
    narrowed.stats.ClearField("channels")
    narrowed.stats.ClearField("workspace")
    return narrowed


def _stats_of_own_queues(principal: Principal, response: Any) -> Any:
    if principal.role is not SUPERVISOR:
        return response
    kept = [q for q in response.queues if q.queue_id in principal.queues]
    return spb.GetRealtimeStatsResponse(
        now_ms=response.now_ms, queues=kept, workers_by_activity=response.workers_by_activity
    )


# -- the table -------------------------------------------------------------------------------------

_TASKS = "/switchboard.v1.TaskService/"
_WORKERS = "/switchboard.v1.WorkerService/"
_ADMIN = "/switchboard.v1.AdminService/"
_TIMELINE = "/switchboard.v1.TimelineService/"
_NOBODY: frozenset[Role] = frozenset()
_CHANGE = Rule(_NOBODY, audited=True)
_READ = Rule(frozenset({SUPERVISOR}))

ACCESS: dict[str, Rule] = {
    _TASKS + "CreateTask": Rule(frozenset({FRONTEND})),
    _TASKS + "GetTask": Rule(frozenset({FRONTEND, SUPERVISOR, AGENT}), _task_read),
    _TASKS + "ListTasks": Rule(frozenset({FRONTEND, SUPERVISOR, AGENT}), _task_list),
    _TASKS + "UpdateTask": Rule(frozenset({FRONTEND})),
    _TASKS + "CancelTask": Rule(frozenset({FRONTEND})),
    _TASKS + "CompleteTask": Rule(frozenset({AGENT}), _task_held),
    _TASKS + "WrapUpTask": Rule(frozenset({AGENT}), _task_held),
    _TASKS + "TransferTask": Rule(frozenset({FRONTEND, AGENT}), _task_held),
    _TASKS + "CancelTransfer": Rule(frozenset({FRONTEND, AGENT}), _task_held),
    _TASKS + "PauseTask": Rule(frozenset({FRONTEND, AGENT}), _task_held),
    _TASKS + "ResumeTask": Rule(frozenset({FRONTEND, AGENT}), _task_paused_by),
    _TASKS + "AddParticipant": Rule(frozenset({FRONTEND, AGENT}), _task_held),
    _TASKS + "RemoveParticipant": Rule(frozenset({FRONTEND, AGENT}), _participant_removal),
    _TASKS + "HandOverTask": Rule(frozenset({AGENT}), _task_held),
    _WORKERS + "UpsertWorker": _CHANGE,
    _WORKERS + "GetWorker": Rule(frozenset({SUPERVISOR, AGENT}), _own_worker),
    _WORKERS + "ListWorkers": _READ,
    _WORKERS + "RemoveWorker": _CHANGE,
    _WORKERS + "SetActivity": Rule(frozenset({SUPERVISOR, AGENT}), _activity),
    _WORKERS + "Connect": Rule(frozenset({AGENT}), _hello),
    _WORKERS + "AcceptOffer": Rule(frozenset({AGENT}), _own_offer),
    _WORKERS + "RejectOffer": Rule(frozenset({AGENT}), _own_offer),
    _WORKERS + "SetDraining": Rule(frozenset({SUPERVISOR, AGENT}), _activity),
    _ADMIN + "UpsertChannel": _CHANGE,
    _ADMIN + "ListChannels": _READ,
    _ADMIN + "UpsertActivity": _CHANGE,
    _ADMIN + "ListActivities": _READ,
    _ADMIN + "UpsertQueue": _CHANGE,
    _ADMIN + "GetQueue": Rule(frozenset({SUPERVISOR}), _queue),
    _ADMIN + "ListQueues": _READ,
    _ADMIN + "DeleteQueue": _CHANGE,
    _ADMIN + "UpsertRoutingPolicy": _CHANGE,
    _ADMIN + "GetRoutingPolicy": _READ,
    _ADMIN + "ListRoutingPolicies": _READ,
    _ADMIN + "DeleteRoutingPolicy": _CHANGE,
    _ADMIN + "GetStateDigest": Rule(_NOBODY),
    _ADMIN + "UpsertPresenceSettings": _CHANGE,
    _ADMIN + "GetPresenceSettings": _READ,
    _TIMELINE + "RecordOutcome": Rule(frozenset({SUPERVISOR, AGENT}), _recorded_by_holder),
    _TIMELINE + "RecordAgentAction": Rule(frozenset({SUPERVISOR, AGENT}), _recorded_by_holder),
    _TIMELINE + "AppendTimelineEntry": Rule(frozenset({FRONTEND, SUPERVISOR})),
    _TIMELINE + "GetTimeline": Rule(
        frozenset({FRONTEND, SUPERVISOR, AGENT}), _customer_of_held_task
    ),
    _TIMELINE + "UpsertCustomerProfile": Rule(frozenset({FRONTEND, SUPERVISOR})),
    _TIMELINE + "GetCustomerProfile": Rule(
        frozenset({FRONTEND, SUPERVISOR, AGENT}), _customer_of_held_task
    ),
    _TIMELINE + "GetCustomerContext": Rule(
        frozenset({FRONTEND, SUPERVISOR, AGENT}), _customer_of_held_task
    ),
    _TIMELINE + "EraseCustomer": _CHANGE,
    _TIMELINE + "UpsertTimelineSettings": _CHANGE,
    _TIMELINE + "GetTimelineSettings": _READ,
    "/switchboard.v1.StatsService/GetRealtimeStats": Rule(
        frozenset({SUPERVISOR}), narrow=_stats_of_own_queues
    ),
    "/switchboard.v1.StatsService/GetStats": Rule(
        frozenset({SUPERVISOR}), _stats_query, narrow=_without_cross_queue_figures
    ),
    "/switchboard.v1.StatsService/WatchStats": Rule(
        frozenset({SUPERVISOR}), _stats_query, narrow=_without_cross_queue_figures
    ),
    "/switchboard.v1.EventService/Subscribe": Rule(frozenset({SUPERVISOR}), _events_of_own_queues),
    "/switchboard.v1.ClockService/GetTime": Rule(_NOBODY),
    "/switchboard.v1.ClockService/AdvanceTime": Rule(_NOBODY),
}


def refusal(rule: Rule, principal: Principal, request: Any, engine: Engine) -> str | None:
    """None when `principal` may make this call, else why not (for PERMISSION_DENIED)."""
    if principal.role is ADMIN:
        return None
    if principal.role not in rule.roles:
        return f"role {principal.role.value} may not call this method"
    if rule.scope is None:
        return None
    return rule.scope(principal, request, engine)


def role_table() -> list[tuple[str, list[str]]]:
    """(method, roles allowed) for every RPC, as the README's role table shows it."""
    return [
        (method, [ADMIN.value, *(r.value for r in Role if r in rule.roles)])
        for method, rule in ACCESS.items()
    ]
