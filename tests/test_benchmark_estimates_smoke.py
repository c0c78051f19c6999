"""The estimated-wait benchmark runs on a small case, reports every field, and its estimates
beat answering "no wait" (deterministic: seeded virtual time, no timing asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.estimates import Case, main, simulate


def test_estimates_are_closer_to_the_waits_than_no_estimate() -> None:
    result = simulate(Case(agents=5, load=0.9, handle_s=60.0, tasks=1_500), seed=3)
    assert result["waited"] > 300
    assert result["estimate_known_share"] == 1.0
    # Saying 0 for every waiting task errs by the mean wait: a relative MAE of 1.
    assert 0 < result["relative_mae"] < 0.8
    assert abs(result["bias_s"]) < 0.5 * result["mean_wait_s"]
    assert result["baseline_mae_s"] > 0


def test_the_command_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "estimates.json"
    assert main(["--quick", "--json", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["benchmark"] == "estimates"
    assert [case["load"] for case in document["cases"]] == [0.8, 0.9, 0.95]
