"""deploy/compose.yaml, Prometheus and Grafana: parsed and checked for what matters (Redis'
persistence and its volume, two routers on it configured by valid variables, Prometheus scraping
both with alert rules promtool accepts and whose unit tests pass, a dashboard of every metric)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from router.envconfig import VARIABLES_WITHOUT_FLAG, env_actions, env_name
from tests.deploy.metric_names import exported_series, referenced_series
from tests.deploy.test_env_config import _serve

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def _routers(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: s for name, s in compose["services"].items() if name.startswith("router")}


def test_redis_persists_every_write_on_a_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] in {"always", "everysec"}
    assert "--requirepass" in command
    volume, path = redis["volumes"][0].split(":")[:2]
    assert path == "/data" and volume in compose["volumes"]  # a named volume, not the container's
    assert "healthcheck" in redis


def test_a_leader_and_a_standby_share_the_redis(compose: dict[str, Any]) -> None:
    routers = _routers(compose)
    assert len(routers) == 2
    known = {env_name(action) for action in env_actions(_serve())} | set(VARIABLES_WITHOUT_FLAG)
    advertised = set()
    for router in routers.values():
        assert router["build"]["dockerfile"] == "Dockerfile"
        assert (DEPLOY / router["build"]["context"] / "Dockerfile").is_file()
        environment = router["environment"]
        unknown = {key for key in environment if key.startswith("SWITCHBOARD_")} - known
        assert not unknown, f"variables no flag reads: {unknown}"
        assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD[^}]*\}@redis:6379/0",
                            environment["SWITCHBOARD_REDIS_URL"])  # fmt: skip
        assert router["depends_on"]["redis"]["condition"] == "service_healthy"
        advertised.add(environment["SWITCHBOARD_ADVERTISE_ADDRESS"])
        # Plaintext without tokens, asked for, on ports this machine alone reaches.
        assert environment["SWITCHBOARD_INSECURE"] == "1"
        assert all(port.startswith("127.0.0.1:") for port in router["ports"])
        published = {port.rsplit(":", 2)[-2] for port in router["ports"]}
        assert environment["SWITCHBOARD_ADVERTISE_ADDRESS"].rsplit(":", 1)[1] in published
    assert len(advertised) == 2


def test_prometheus_scrapes_both_routers(compose: dict[str, Any]) -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (job,) = [job for job in config["scrape_configs"] if job["job_name"] == "switchboard"]
    targets = {t for c in job["static_configs"] for t in c["targets"]}
    assert targets == {f"{name}:9464" for name in _routers(compose)}
    assert config["rule_files"] == ["alerts.yml"]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus:/etc/prometheus:ro" in mounts


def test_alert_rules_name_only_exported_metrics() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    exported = exported_series()
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {"SwitchboardNoLeader", "SwitchboardLeaseLost", "SwitchboardStoreBehind"} <= {
        rule["alert"] for rule in alerts
    }
    for rule in alerts:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert referenced_series(rule["expr"]) <= exported, rule["alert"]


def _promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus; .ci/run does)")
    return found


def test_promtool_accepts_the_config_and_the_rules_pass_their_tests() -> None:
    promtool = _promtool()
    for args in (["check", "config", "prometheus.yml"], ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run(
            [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr


def test_grafana_provisions_a_dashboard_of_every_metric(compose: dict[str, Any]) -> None:
    mounts = compose["services"]["grafana"]["volumes"]
    assert "./grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/switchboard.yaml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    (datasource,) = source["datasources"]
    dashboard = json.loads((GRAFANA / "dashboards/switchboard.json").read_text())
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    used = set().union(*(referenced_series(e) for e in expressions))
    assert used <= exported_series()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == datasource["uid"]
    # Every metric the README lists is on the dashboard.
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme[readme.index("## Metrics") : readme.index("## Limits")]
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.MULTILINE))
    assert listed, "no metric found in the README's Metrics table"
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in used}
    missing = {
        name for name in listed
        if f"switchboard_{name.removesuffix('_total')}" not in families
    }  # fmt: skip
    assert not missing, f"metrics the README lists that the dashboard does not show: {missing}"
