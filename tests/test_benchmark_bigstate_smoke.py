"""The large-state benchmark runs end to end at a tiny size (2,000 waiting tasks, 100 workers,
two snapshots, half-second quiet periods): the state built and stored, a router started on it,
reads with snapshots, a SIGKILL and a restart, the recovery timed step by step; it reports every
field of its JSON with sane values and leaves no process behind. No performance figure is
asserted."""

from __future__ import annotations

import json
import math
import subprocess
from typing import Any

import pytest

from benchmarks.bigstate import main

TINY = ["--tasks", "2000", "--workers", "100", "--snapshots", "2", "--quiet-s", "0.5",
        "--get-rate", "100"]  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("bigstate")
    report = folder / "bigstate.json"
    assert main([*TINY, "--data-dir", str(folder / "run"), "--json", str(report)]) == 0
    loaded: dict[str, Any] = json.loads(report.read_text())
    loaded["_folder"] = str(folder / "run")
    return loaded


def _positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


@pytest.mark.timeout(90)
def test_the_state_is_built_and_the_router_leads_on_it_twice(result: dict[str, Any]) -> None:
    assert result["benchmark"] == "bigstate"
    assert result["tasks"] == 2000
    assert result["build"]["tasks"] == 2000 and _positive(result["build"]["snapshot_bytes"])
    for start in ("start", "restart_after_kill"):
        assert _positive(result[start]["to_lead_s"]), result[start]
        assert result[start]["to_first_line_s"] <= result[start]["to_lead_s"]
    breakdown = result["recovery_breakdown"]
    assert breakdown["tasks"] >= 2000  # with the tasks created during the traffic
    for step in ("read_s", "read_journal_s", "decode_s", "restore_s", "replay_s", "freeze_s"):
        assert breakdown[step] >= 0, (step, breakdown)


def test_reads_were_served_around_and_during_the_snapshots(result: dict[str, Any]) -> None:
    assert result["get_errors"] == 0 and result["create_errors"] == 0
    assert result["get_calls"] > 0 and result["creates"] > 0
    assert result["get_calls"] == (
        result["get_calls_during_snapshots"] + result["get_calls_outside_snapshots"]
    )
    for name in ("get_p50_ms", "get_p99_ms", "get_p99_ms_outside_snapshots"):
        assert _positive(result[name]), (name, result[name])
    assert result["snapshot_count"] == 2 and result["snapshots_failed"] == 0
    for snapshot in result["snapshots"]:
        assert _positive(snapshot["bytes"]) and _positive(snapshot["background_s"])
        assert _positive(snapshot["writer_pause_ms"])
    assert len(result["snapshots_logged"]) == 2
    assert result["lease_losses"] == 0
    assert _positive(result["router_rss_mb_at_lead"])
    assert _positive(result["router_rss_mb_peak"])


def test_no_process_is_left_behind(result: dict[str, Any]) -> None:
    listed = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert result["_folder"] not in listed.stdout  # neither the router nor its Redis
