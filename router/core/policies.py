"""Routing policies (workflows), the pure parts: which route a task takes, and which of a
route's steps applies after a given wait.

A policy's filters are tried in order and the first whose expression matches the task's
document routes it (else the default route). A route names a queue and a list of steps; each
step lasts `timeout_s` (the last may last for ever) and then the next applies, so the step a task
is on is a function of the time since it was routed (`step_at`): re-evaluating a task under a
changed policy puts it where the new policy would have had it all along."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from router.core.expressions import Expression, parse
from router.core.model import DEFAULT_ROUTE, Route, RoutingPolicy, RoutingStep, TaskSpec

OPEN_STEP: Final = RoutingStep()
"""The one step of a route without steps: no constraint beyond the queue's."""

_ROUTE_CACHE_MAX: Final = 4096


def task_document(spec: TaskSpec, customer: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a policy filter sees of a task: its attributes and the reserved keys (channel,
    priority, sentiment, customer_id, language, and `customer` for a task whose customer has a
    routing context: `Customers.document`), which win over attributes of the same name."""
    document = {
        **spec.attributes,
        "channel": spec.channel,
        "priority": spec.priority,
        "sentiment": spec.sentiment,
        "customer_id": spec.customer_id,
        "language": spec.language,
    }
    if customer is not None:
        # An attribute object of the same name keeps its other keys (a front end's own
        # `customer.segment`, say): the context's keys win where both say something.
        given = spec.attributes.get("customer")
        document["customer"] = {**given, **customer} if isinstance(given, Mapping) else customer
    return document


def route_steps(route: Route) -> tuple[RoutingStep, ...]:
    return route.steps or (OPEN_STEP,)


@dataclass(frozen=True, slots=True)
class StepAt:
    index: int
    started_ms: int
    """When the step began (route start plus the timeouts of the steps before it)."""
    due_ms: int
    """When it times out (0: never)."""


def step_at(steps: tuple[RoutingStep, ...], route_started_ms: int, now_ms: int) -> StepAt:
    """The step that applies at `now_ms` to a task routed at `route_started_ms`, ignoring
    skips: each step lasts its timeout, and the last stays once reached."""
    started_ms = route_started_ms
    for index, step in enumerate(steps):
        timeout_ms = round(step.timeout_s * 1000)
        last = index == len(steps) - 1
        if timeout_ms <= 0:
            return StepAt(index, started_ms, 0)
        if now_ms < started_ms + timeout_ms or last:
            return StepAt(index, started_ms, started_ms + timeout_ms)
        started_ms += timeout_ms
    raise AssertionError("a route has at least one step")


class CompiledPolicy:
    """A policy with its filters parsed, and a cache of routing decisions: a filter reads only
    a few keys, so tasks with the same values there take the same route."""

    __slots__ = ("_cache", "_filters", "_paths", "policy")

    def __init__(self, policy: RoutingPolicy) -> None:
        self.policy = policy
        self._filters: tuple[Expression, ...] = tuple(parse(f.expression) for f in policy.filters)
        paths: set[str] = set()
        for expression in self._filters:
            paths |= expression.keys
        self._paths = tuple(sorted(paths))
        self._cache: dict[tuple[object, ...], int | None] = {}

    def route_index(self, spec: TaskSpec, customer: Mapping[str, Any] | None = None) -> int | None:
        """The index of the first matching filter, DEFAULT_ROUTE, or None when nothing matches
        and the policy has no default route. The cache key holds the values of every key the
        filters read, `customer.*` ones included (a list, such as `customer.last_tags`, turns
        caching off for the call), so a customer's changed context is never answered from an
        older one."""
        document = task_document(spec, customer)
        key = _cache_key(document, self._paths)
        if key is not None:
            cached = self._cache.get(key, _MISS)
            if cached is not _MISS:
                return cached  # type: ignore[return-value]
        index: int | None = DEFAULT_ROUTE if self.policy.default_route is not None else None
        for i, expression in enumerate(self._filters):
            if expression.evaluate(document):
                index = i
                break
        if key is not None:
            if len(self._cache) >= _ROUTE_CACHE_MAX:
                self._cache.clear()
            self._cache[key] = index
        return index

    def route(self, index: int) -> Route:
        if index == DEFAULT_ROUTE:
            assert self.policy.default_route is not None
            return self.policy.default_route
        return self.policy.filters[index].route

    def worker_expressions(self) -> set[str]:
        """The source of every step's worker expression."""
        return {
            step.worker_expression
            for route in policy_routes(self.policy)
            for step in route.steps
            if step.worker_expression
        }


def policy_routes(policy: RoutingPolicy) -> list[Route]:
    """Every route of a policy: its filters' in order, then the default route."""
    routes = [f.route for f in policy.filters]
    if policy.default_route is not None:
        routes.append(policy.default_route)
    return routes


_MISS: Final = object()


def _cache_key(document: Mapping[str, Any], paths: tuple[str, ...]) -> tuple[object, ...] | None:
    """The values a policy's filters read, when all are plain scalars (else None: no caching,
    because lists and objects are not hashable and rarely repeat). The type is part of the key:
    1 and True and 1.0 compare differently in the language."""
    key: list[object] = []
    for path in paths:
        value: object = document
        for segment in path.split("."):
            value = value.get(segment, _MISS) if isinstance(value, Mapping) else _MISS
        if value is not _MISS and value is not None and type(value) not in _SCALARS:
            return None
        key.append((type(value).__name__, value) if value is not _MISS else _MISS)
    return tuple(key)


_SCALARS: Final = (str, int, float, bool)
