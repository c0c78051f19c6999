"""`switchboard demo` as a user runs it: a subprocess that routes a small simulated center and
prints its summary."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(20)
def test_demo_routes_tasks_and_prints_a_summary() -> None:
    command = [
        sys.executable,
        "-m",
        "router.cli",
        "demo",
        "--duration",
        "4",
        "--no-live",
        "--agents",
        "10",
        "--rate",
        "5",
        "--seed",
        "2",
    ]
    result = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=15, check=False
    )

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    throughput = re.search(r"throughput: (\d+) assigned, (\d+) completed", result.stdout)
    assert throughput is not None, result.stdout
    assigned, completed = map(int, throughput.groups())
    assert assigned > 0 and completed > 0, result.stdout
    for queue_id in ("billing", "tech", "sales", "vip", "all"):
        assert re.search(rf"^│ {queue_id}\s", result.stdout, re.MULTILINE), result.stdout
    assert "empathy routing:" in result.stdout
