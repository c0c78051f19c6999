"""The engine benchmark runs end to end on a tiny state, reports every field of its JSON, and the
engine agrees with the naive baseline on what it decides; the policy case runs too, through a
policy of 10 filters with 3 steps each, with its backlog spread over the steps and every route
in use. No timing is asserted."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from benchmarks.engine import (
    BASELINE_FIELDS,
    POLICY_RULES,
    SKILL_COUNT,
    CaseSize,
    PolicySteadyState,
    measure_task_arrives,
    measure_worker_frees,
    policy_route_names,
    print_table,
    routing_policy,
    run_case,
    targets,
    vs_plain,
)
from router.core.expressions import parse

TINY = CaseSize(workers=200, waiting_tasks=1_000, decisions=50, baseline_decisions=50)
TINY_POLICY = CaseSize(
    workers=200, waiting_tasks=1_000, decisions=50, baseline_decisions=0, policy=True
)
REQUIRED_FIELDS = {
    "workers": int,
    "skills": int,
    "waiting_tasks": int,
    "event": str,
    "policy": bool,
    "decisions_per_s": float,
    "p50_ms": float,
    "p99_ms": float,
    "baseline_decisions_per_s": float,
    "speedup_vs_baseline": float,
    "rss_mb": float,
    "agreement": float,
}
POLICY_FIELDS = {
    "policy_filters": int,
    "policy_steps": int,
    "backlog_by_step": list,
    "backlog_by_route": dict,
    "backlog_flow_per_s": float,
}


@pytest.fixture(scope="module")
def results() -> list[dict[str, Any]]:
    return run_case(TINY, seed=11)


@pytest.fixture(scope="module")
def policy_results() -> list[dict[str, Any]]:
    return run_case(TINY_POLICY, seed=11)


def test_each_event_reports_every_field(results: list[dict[str, Any]]) -> None:
    assert [r["event"] for r in results] == ["task_arrives", "worker_frees"]
    for result in results:
        for name, kind in REQUIRED_FIELDS.items():
            assert isinstance(result[name], kind), (name, result[name])
        assert result["policy"] is False
        assert result["workers"] == TINY.workers
        assert result["skills"] == SKILL_COUNT == 64
        assert result["waiting_tasks"] == TINY.waiting_tasks
    report = {"benchmark": "engine", "cases": results}
    assert json.loads(json.dumps(report)) == report


def test_decisions_happened_and_made_offers(results: list[dict[str, Any]]) -> None:
    for result in results:
        assert result["decisions"] == TINY.decisions
        assert result["baseline_decisions"] == TINY.baseline_decisions
        for name in ("decisions_per_s", "baseline_decisions_per_s", "p50_ms", "p99_ms"):
            value = result[name]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, name
        assert isinstance(result["offered_share"], float) and result["offered_share"] > 0.5


def test_arriving_tasks_have_many_eligible_workers(results: list[dict[str, Any]]) -> None:
    arrivals = results[0]
    assert isinstance(arrivals["eligible_workers_mean"], float)
    assert arrivals["eligible_workers_mean"] >= 5


def test_engine_agrees_with_the_naive_baseline(results: list[dict[str, Any]]) -> None:
    for result in results:
        assert isinstance(result["agreement"], float) and result["agreement"] >= 0.95, result


# -- the policy case -------------------------------------------------------------------------------


def test_the_policy_case_reports_its_fields(
    results: list[dict[str, Any]], policy_results: list[dict[str, Any]]
) -> None:
    assert [r["event"] for r in policy_results] == ["task_arrives", "worker_frees"]
    for result in policy_results:
        assert result.keys() >= results[0].keys()
        assert result["policy"] is True
        assert result["workers"] == TINY_POLICY.workers
        assert result["waiting_tasks"] == TINY_POLICY.waiting_tasks
        for name, kind in POLICY_FIELDS.items():
            assert isinstance(result[name], kind), (name, result[name])
        assert result["policy_filters"] == 10
        assert result["policy_steps"] == 3
        assert result["decisions"] == TINY_POLICY.decisions
        for name in ("decisions_per_s", "p50_ms", "p99_ms", "mean_ms"):
            value = result[name]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, name
        assert result["offered_share"] > 0
        # No baseline on the policy case: its fields are all null.
        assert all(result[name] is None for name in BASELINE_FIELDS), result
    assert policy_results[1]["offered_share"] > 0.5  # a freed worker finds work in the backlog
    report = {"benchmark": "engine", "cases": policy_results}
    assert json.loads(json.dumps(report)) == report


def test_the_policy_backlog_is_spread_over_the_steps_and_routes(
    policy_results: list[dict[str, Any]],
) -> None:
    for result in policy_results:
        by_step = result["backlog_by_step"]
        assert len(by_step) == 3 and all(count > 0 for count in by_step), by_step
        by_route = result["backlog_by_route"]
        assert list(by_route) == policy_route_names()
        assert len(by_route) == 11 and all(count > 0 for count in by_route.values()), by_route
        assert sum(by_step) == sum(by_route.values()) == TINY_POLICY.waiting_tasks


def test_the_policy_is_realistic() -> None:
    policy = routing_policy()
    assert len(policy.filters) == len(POLICY_RULES) == 10
    task_keys = set().union(*(parse(f.expression).keys for f in policy.filters))
    assert task_keys == {"department", "customer.tier", "intent", "region"}
    routes = [f.route for f in policy.filters]
    assert policy.default_route is not None
    for route in [*routes, policy.default_route]:
        first, second, third = route.steps
        assert (first.timeout_s, second.timeout_s, third.timeout_s) == (20.0, 40.0, 0.0)
        assert first.worker_expression and not second.worker_expression
        assert not third.worker_expression and not third.required_skills
    for route in routes:
        first, second, _ = route.steps
        worker_keys = parse(first.worker_expression).keys
        assert worker_keys == {"team", "tier", "site", "senior"}
        assert first.required_skills.keys() == second.required_skills.keys()
        for skill, level in first.required_skills.items():
            assert level > second.required_skills[skill]


def test_the_policy_state_keeps_its_invariants_and_backlog() -> None:
    state = PolicySteadyState(workers=150, waiting_tasks=600, seed=3)
    state.build()
    state.engine.check_invariants()
    measure_task_arrives(state, 30, warmup=0)
    measure_worker_frees(state, 30, warmup=0)
    state.engine.check_invariants()
    assert state.waiting_count() == 600  # arrivals and abandons keep the backlog's size
    assert state.abandoned > 0
    assert all(count > 0 for count in state.backlog_by_step())


# -- the report ------------------------------------------------------------------------------------


def _case(event: str, *, policy: bool, rate: float, p99_ms: float) -> dict[str, Any]:
    return {
        "workers": 10_000,
        "waiting_tasks": 100_000,
        "event": event,
        "policy": policy,
        "decisions_per_s": rate,
        "p99_ms": p99_ms,
        "speedup_vs_baseline": None if policy else 50.0,
        "rss_mb": 300.0,
    }


def test_the_policy_targets_are_relative_to_the_plain_case() -> None:
    cases = [
        _case("task_arrives", policy=False, rate=10_000.0, p99_ms=0.2),
        _case("worker_frees", policy=False, rate=12_000.0, p99_ms=0.2),
        _case("task_arrives", policy=True, rate=6_000.0, p99_ms=1.5),
        _case("worker_frees", policy=True, rate=5_000.0, p99_ms=2.5),
    ]
    assert vs_plain(cases, cases[2]) == 0.6
    assert vs_plain(cases, cases[0]) is None
    checks = {(c["case"], c["metric"]): c["result"] for c in targets(cases)}
    assert checks[("10,000 x 100,000 task_arrives policy", "p99_ms")] == "PASS"
    assert checks[("10,000 x 100,000 task_arrives policy", "decisions_per_s / plain")] == "PASS"
    assert checks[("10,000 x 100,000 worker_frees policy", "p99_ms")] == "MISS"
    assert checks[("10,000 x 100,000 worker_frees policy", "decisions_per_s / plain")] == "MISS"
    assert ("10,000 x 100,000 task_arrives policy", "speedup_vs_baseline") not in checks
    assert checks[("10,000 x 100,000 task_arrives", "speedup_vs_baseline")] == "PASS"


def test_the_report_prints(
    results: list[dict[str, Any]],
    policy_results: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    cases = [*results, *policy_results]
    print_table(cases, targets(cases))
    out = capsys.readouterr().out
    assert "task_arrives" in out and "vs plain" in out
