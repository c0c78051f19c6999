"""The engine benchmark's targets and its table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

TARGET_WORKERS = 10_000
TARGET_WAITING = 100_000
TARGET_P99_MS = 1.0
TARGET_DECISIONS_PER_S = 20_000
TARGET_SPEEDUP = 10.0
TARGET_RSS_MB = 4096
"""100k workers with 1M waiting tasks must fit in 4 GB."""
TARGET_POLICY_SHARE = 0.5
"""The policy case's decisions per second, as a share of the plain case's (same size, event)."""
TARGET_POLICY_P99_MS = 2.0


def plain_counterpart(cases: Sequence[dict[str, Any]], case: dict[str, Any]) -> dict[str, Any]:
    """The plain case of the same size and event as a policy case, if the run has it."""
    for other in cases:
        if not other.get("policy") and all(
            other[key] == case[key] for key in ("workers", "waiting_tasks", "event")
        ):
            return other
    return {}


def vs_plain(cases: Sequence[dict[str, Any]], case: dict[str, Any]) -> float | None:
    """A policy case's decisions per second over its plain counterpart's (None: not a policy
    case, or no counterpart in the run)."""
    plain = plain_counterpart(cases, case) if case.get("policy") else {}
    if not plain:
        return None
    return round(case["decisions_per_s"] / plain["decisions_per_s"], 3)


def targets(cases: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target against its case: PASS or MISS (the run never fails on a miss)."""
    checks = []
    for case in cases:
        label = f"{case['workers']:,} x {case['waiting_tasks']:,} {case['event']}"
        at_target_size = (
            case["workers"] == TARGET_WORKERS and case["waiting_tasks"] == TARGET_WAITING
        )
        if case.get("policy"):
            if at_target_size:
                label += " policy"
                checks.append(
                    _check(label, "p99_ms", case["p99_ms"], TARGET_POLICY_P99_MS, at_most=True)
                )
                share = vs_plain(cases, case)
                if share is not None:
                    checks.append(
                        _check(label, "decisions_per_s / plain", share, TARGET_POLICY_SHARE)
                    )
            continue
        if at_target_size:
            checks += [
                _check(label, "p99_ms", case["p99_ms"], TARGET_P99_MS, at_most=True),
                _check(label, "decisions_per_s", case["decisions_per_s"], TARGET_DECISIONS_PER_S),
                _check(label, "speedup_vs_baseline", case["speedup_vs_baseline"], TARGET_SPEEDUP),
            ]
        if case["waiting_tasks"] >= 1_000_000 and case["event"] == "task_arrives":
            checks.append(_check(label, "rss_mb", case["rss_mb"], TARGET_RSS_MB, at_most=True))
    return checks


def _check(
    case: str, metric: str, value: float, target: float, *, at_most: bool = False
) -> dict[str, Any]:
    passed = value <= target if at_most else value >= target
    return {
        "case": case,
        "metric": metric,
        "value": value,
        "target": f"{'<=' if at_most else '>='} {target:g}",
        "result": "PASS" if passed else "MISS",
    }


def print_table(cases: Sequence[dict[str, Any]], checks: Sequence[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Switchboard engine: one routing decision at a time")
    columns = [
        ("workers", "workers", "{:,}"),
        ("waiting", "waiting_tasks", "{:,}"),
        ("event", "event", "{}"),
        ("policy", "policy", "{}"),
        ("decisions/s", "decisions_per_s", "{:,.0f}"),
        ("vs plain", "vs_plain", "{:.0%}"),
        ("p50 ms", "p50_ms", "{:.3f}"),
        ("p99 ms", "p99_ms", "{:.3f}"),
        ("naive/s", "baseline_decisions_per_s", "{:,.0f}"),
        ("naive p50 ms", "baseline_p50_ms", "{:.3f}"),
        ("speedup", "speedup_vs_baseline", "{:.1f}x"),
        ("agree", "agreement", "{:.1%}"),
        ("offered", "offered_share", "{:.0%}"),
        ("RSS MB", "rss_mb", "{:,.0f}"),
        ("full GC ms", "gc_full_ms", "{:,.0f}"),
        ("setup s", "setup_s", "{:.1f}"),
    ]
    for header, _, _ in columns:
        table.add_column(header, justify="left" if header in ("event", "policy") else "right")
    for case in cases:
        row = {
            **case,
            "policy": "yes" if case.get("policy") else "no",
            "vs_plain": vs_plain(cases, case),
        }
        table.add_row(
            *("-" if row.get(key) is None else fmt.format(row[key]) for _, key, fmt in columns)
        )
    console = Console(width=200)
    console.print(table)
    if checks:
        targets_table = Table(title="Targets")
        for header in ("case", "metric", "value", "target", "result"):
            targets_table.add_column(header)
        for check in checks:
            style = "green" if check["result"] == "PASS" else "red"
            targets_table.add_row(
                check["case"],
                check["metric"],
                f"{check['value']:,}",
                check["target"],
                f"[{style}]{check['result']}[/{style}]",
            )
        console.print(targets_table)
