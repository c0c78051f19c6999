"""The engine benchmark runs end to end on a tiny state, reports every field of its JSON, and the
engine agrees with the naive baseline on what it decides. No timing is asserted."""

from __future__ import annotations

import json
import math

import pytest

from benchmarks.engine import SKILL_COUNT, CaseSize, print_table, run_case, targets

TINY = CaseSize(workers=200, waiting_tasks=1_000, decisions=50, baseline_decisions=50)
REQUIRED_FIELDS = {
    "workers": int,
    "skills": int,
    "waiting_tasks": int,
    "event": str,
    "decisions_per_s": float,
    "p50_ms": float,
    "p99_ms": float,
    "baseline_decisions_per_s": float,
    "speedup_vs_baseline": float,
    "rss_mb": float,
    "agreement": float,
}


@pytest.fixture(scope="module")
def results() -> list[dict[str, object]]:
    return run_case(TINY, seed=11)


def test_each_event_reports_every_field(results: list[dict[str, object]]) -> None:
    assert [r["event"] for r in results] == ["task_arrives", "worker_frees"]
    for result in results:
        for name, kind in REQUIRED_FIELDS.items():
            assert isinstance(result[name], kind), (name, result[name])
        assert result["workers"] == TINY.workers
        assert result["skills"] == SKILL_COUNT == 64
        assert result["waiting_tasks"] == TINY.waiting_tasks
    report = {"benchmark": "engine", "cases": results}
    assert json.loads(json.dumps(report)) == report


def test_decisions_happened_and_made_offers(results: list[dict[str, object]]) -> None:
    for result in results:
        assert result["decisions"] == TINY.decisions
        assert result["baseline_decisions"] == TINY.baseline_decisions
        for name in ("decisions_per_s", "baseline_decisions_per_s", "p50_ms", "p99_ms"):
            value = result[name]
            assert isinstance(value, float) and math.isfinite(value) and value > 0, name
        assert isinstance(result["offered_share"], float) and result["offered_share"] > 0.5


def test_arriving_tasks_have_many_eligible_workers(results: list[dict[str, object]]) -> None:
    arrivals = results[0]
    assert isinstance(arrivals["eligible_workers_mean"], float)
    assert arrivals["eligible_workers_mean"] >= 5


def test_engine_agrees_with_the_naive_baseline(results: list[dict[str, object]]) -> None:
    for result in results:
        assert isinstance(result["agreement"], float) and result["agreement"] >= 0.95, result


def test_the_report_prints(
    results: list[dict[str, object]], capsys: pytest.CaptureFixture[str]
) -> None:
    print_table(results, targets(results))
    assert "task_arrives" in capsys.readouterr().out
