"""The load benchmark runs end to end in its smallest form (two short steps and a half-saturation
step per router, a durable router and the null router started on 127.0.0.1; the router's
half-saturation step again with a snapshot in it), reports every field of its JSON with sane
values, and draws its figure. No performance figure is asserted."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from benchmarks.load import can_read_cpu, main

TINY = ["--steps", "2", "--step-s", "0.5", "--start-rate", "40", "--agents", "4"]
TOP_FIELDS = {
    "durable": bool,
    "router_tasks_per_s": float,
    "null_router_tasks_per_s": float,
    "ratio_to_null": float,
    "create_to_offer_p50_ms": float,
    "create_to_offer_p99_ms": float,
    "steps": list,
}
STEP_FIELDS = {
    "router": str,
    "offered_per_s": float,
    "lifecycles_per_s": float,
    "create_to_offer_p50_ms": float,
    "create_to_offer_p99_ms": float,
    "accept_to_assigned_p50_ms": float,
    "accept_to_assigned_p99_ms": float,
    "tasks": int,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    folder = tmp_path_factory.mktemp("load")
    report, figure = folder / "load.json", folder / "load.png"
    assert main([*TINY, "--json", str(report), "--plot", str(figure)]) == 0
    return json.loads(report.read_text()), figure


def _positive(value: Any) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


@pytest.mark.timeout(60)
def test_the_report_has_every_field(run: tuple[dict[str, Any], Path]) -> None:
    result, _ = run
    assert result["benchmark"] == "load"
    for name, kind in TOP_FIELDS.items():
        assert isinstance(result[name], kind), (name, result[name])
    assert result["durable"] is True
    for name in ("router_tasks_per_s", "null_router_tasks_per_s", "ratio_to_null",
                 "create_to_offer_p50_ms", "create_to_offer_p99_ms"):  # fmt: skip
        assert _positive(result[name]), (name, result[name])
    assert result["create_to_offer_p50_ms"] <= result["create_to_offer_p99_ms"]


def test_each_router_ramps_then_runs_at_half_saturation(run: tuple[dict[str, Any], Path]) -> None:
    result, _ = run
    for router, halves in (("switchboard", ["half", "half_snapshot"]), ("null", ["half"])):
        steps = [s for s in result["steps"] if s["router"] == router]
        assert [s["phase"] for s in steps][-len(halves) :] == halves
        # at most --steps 2 of the ramp, then the half steps
        assert 1 + len(halves) <= len(steps) <= 2 + len(halves)
        for step in steps:
            for name, kind in STEP_FIELDS.items():
                assert isinstance(step[name], kind), (router, name, step[name])
            assert step["tasks"] > 0 and step["errors"] == 0
            for name in STEP_FIELDS:
                if name.endswith(("_per_s", "_ms")):
                    assert _positive(step[name]), (router, name, step[name])
            assert _positive(step["client_cpu_ms_per_task"])
            if can_read_cpu():  # /proc: the server's own CPU time is known
                assert _positive(step["server_cpu_ms_per_task"]), (router, step)
        ramp = [s for s in steps if s["phase"] == "ramp"]
        for half in steps[len(ramp) :]:
            assert half["offered_per_s"] < max(s["lifecycles_per_s"] for s in ramp)
    first_router_half = next(
        s for s in result["steps"] if s["router"] == "switchboard" and s["phase"] == "half"
    )
    assert result["create_to_offer_p99_ms"] == first_router_half["create_to_offer_p99_ms"]


def test_the_second_half_step_had_a_snapshot_and_the_first_none(
    run: tuple[dict[str, Any], Path],
) -> None:
    result, _ = run
    router = {s["phase"]: s for s in result["steps"] if s["router"] == "switchboard"}
    assert router["half"]["snapshots"] == 0
    assert router["half_snapshot"]["snapshots"] >= 1
    assert all(s["snapshots"] is None for s in result["steps"] if s["router"] == "null")
    assert result["snapshot_step"] == "ran"
    assert result["snapshots_in_step"] == router["half_snapshot"]["snapshots"]
    assert result["snapshots_in_step_without"] == 0
    assert (
        result["create_to_offer_p99_ms_with_snapshot"]
        == (router["half_snapshot"]["create_to_offer_p99_ms"])
    )
    for name in ("snapshot_p99_ratio", "snapshot_writer_pause_ms", "snapshot_background_s",
                 "create_to_offer_p50_ms_with_snapshot"):  # fmt: skip
        assert _positive(result[name]), (name, result[name])
    assert isinstance(result["snapshot_bytes"], int) and result["snapshot_bytes"] > 0


def test_the_figure_is_drawn(run: tuple[dict[str, Any], Path]) -> None:
    _, figure = run
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(90)
def test_secure_measures_a_router_with_tls_and_tokens_beside_the_plaintext_one(
    tmp_path: Path,
) -> None:
    report = tmp_path / "secure.json"
    argv = [*TINY, "--in-memory", "--secure", "--json", str(report),
            "--plot", str(tmp_path / "secure.png")]  # fmt: skip
    assert main(argv) == 0
    result = json.loads(report.read_text())
    secure = [s for s in result["steps"] if s["router"] == "switchboard_secure"]
    assert secure and all(s["errors"] == 0 and s["tasks"] > 0 for s in secure)
    assert _positive(result["secure_router_tasks_per_s"])
    cpu_ratio = result["secure_cpu_ratio_to_plaintext"]
    assert cpu_ratio is None or _positive(cpu_ratio)  # None: no unsaturated step in common
    ratio = result["secure_router_tasks_per_s"] / result["router_tasks_per_s"]
    assert result["secure_ratio_to_plaintext"] == pytest.approx(ratio, abs=0.01)


def test_subscribers_and_wallboards_are_measured_beside_the_router_without_them(
    tmp_path: Path,
) -> None:
    report = tmp_path / "watched.json"
    argv = [*TINY, "--in-memory", "--subscribers", "3", "--wallboards", "2", "--json",
            str(report), "--plot", str(tmp_path / "watched.png")]  # fmt: skip
    assert main(argv) == 0  # and the router cut no watcher's stream off (it would raise)
    result = json.loads(report.read_text())
    watched = [s for s in result["steps"] if s["router"] == "switchboard_watched"]
    assert watched and all(s["errors"] == 0 and s["tasks"] > 0 for s in watched)
    ratio = result["watched_router_tasks_per_s"] / result["router_tasks_per_s"]
    assert result["watched_ratio_to_plain"] == pytest.approx(ratio, abs=0.01)


@pytest.mark.timeout(90)
def test_a_secured_target_is_measured_with_its_ca_and_a_token(tmp_path: Path) -> None:
    from benchmarks.credentials import write_local_credentials
    from benchmarks.servers import switchboard_router
    from router.api.authn import Role

    credentials = write_local_credentials(tmp_path / "tls")
    report = tmp_path / "target.json"
    with switchboard_router(tmp_path / "data", durable=False, credentials=credentials) as server:
        argv = [*TINY, "--target", server.address, "--tls-ca", str(credentials.ca_cert),
                "--token", credentials.token(Role.ADMIN), "--json", str(report),
                "--plot", str(tmp_path / "target.png")]  # fmt: skip
        assert main(argv) == 0
    steps = [s for s in json.loads(report.read_text())["steps"] if s["router"] == "switchboard"]
    assert steps and all(s["errors"] == 0 and s["tasks"] > 0 for s in steps)
