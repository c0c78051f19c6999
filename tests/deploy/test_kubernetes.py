"""deploy/kubernetes, rendered as `make lint` renders it (scripts/kustomize_lite.py), checked for
what matters: two routers whose readiness is leadership (health SERVING) and whose liveness is
any answer, so the Service reaches the leader only; non-root, read-only root, emptyDirs for what
is written; resources; the scrape annotation; settings from the ConfigMap and the Redis URL from
the Secret. (Schemas and checkov: `make lint`.)"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from router import probe as health_probe
from router.envconfig import VARIABLES_WITHOUT_FLAG, env_actions, env_name
from router.privacy.keyring import Keyring, KeyringError
from tests.deploy.test_env_config import _serve

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"


def _kustomize_lite() -> ModuleType:
    path = REPO_ROOT / "scripts" / "kustomize_lite.py"
    spec = importlib.util.spec_from_file_location("kustomize_lite", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["kustomize_lite"] = module
    spec.loader.exec_module(module)
    return module


Docs = dict[tuple[str, str], dict[str, Any]]


def _render(folder: Path) -> Docs:
    return {(d["kind"], d["metadata"]["name"]): d for d in _kustomize_lite().render(folder)}


@pytest.fixture(scope="module", params=["base", "overlays/example"])
def docs(request: pytest.FixtureRequest) -> Docs:
    return _render(KUBERNETES / request.param)


def _pod(docs: Docs) -> dict[str, Any]:
    spec: dict[str, Any] = docs[("Deployment", "switchboard")]["spec"]["template"]
    return spec


def _router(docs: Docs) -> dict[str, Any]:
    (container,) = _pod(docs)["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def test_readiness_is_leadership_and_liveness_any_answer(docs: Docs) -> None:
    deployment = docs[("Deployment", "switchboard")]
    assert deployment["spec"]["replicas"] == 2
    router = _router(docs)
    grpc_port = {p["name"]: p["containerPort"] for p in router["ports"]}["grpc"]
    assert grpc_port == 50051  # the probe's default port, as SWITCHBOARD_PORT says
    # The server's overall status: SERVING on the leader only (tests/deploy/test_image.py shows
    # a standby answering NOT_SERVING), asked over TLS by the Python probe (Kubernetes' own
    # gRPC probe speaks no TLS).
    assert router["readinessProbe"]["exec"]["command"] == ["python", "-m", "router.probe"]
    for probe in ("livenessProbe", "startupProbe"):
        command = router[probe]["exec"]["command"]
        assert command == ["python", "-m", "router.probe", "--live"], probe
    startup = router["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 120  # recovery time


def test_the_service_and_the_budget_select_the_routers(docs: Docs) -> None:
    labels = _pod(docs)["metadata"]["labels"]
    service = docs[("Service", "switchboard")]["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == "grpc"
    assert "publishNotReadyAddresses" not in service  # standbys stay out of the endpoints
    pdb = docs[("PodDisruptionBudget", "switchboard")]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"


def test_it_runs_as_a_user_on_a_read_only_root(docs: Docs) -> None:
    pod = _pod(docs)["spec"]
    router = _router(docs)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    context = router["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"]: m["name"] for m in router["volumeMounts"]}
    assert mounts["/tmp"] in empty_dirs
    data_dir = {e["name"]: e.get("value") for e in router["env"]}["SWITCHBOARD_DATA_DIR"]
    assert mounts[data_dir] in empty_dirs
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= router["resources"][kind].keys()


def test_prometheus_scrapes_the_metrics_port(docs: Docs) -> None:
    annotations = _pod(docs)["metadata"]["annotations"]
    ports = {p["name"]: p["containerPort"] for p in _router(docs)["ports"]}
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    env = {e["name"]: e for e in _router(docs)["env"]}
    assert int(env["SWITCHBOARD_METRICS_PORT"]["value"]) == ports["metrics"]
    assert env["SWITCHBOARD_HOST"]["value"] == "0.0.0.0"


def test_settings_come_from_the_configmap_and_the_redis_url_from_the_secret(docs: Docs) -> None:
    known = (
        {env_name(action) for action in env_actions(_serve())}
        | set(health_probe.ENV_VARIABLES)
        | set(VARIABLES_WITHOUT_FLAG)
    )
    router = _router(docs)
    (source,) = router["envFrom"]
    config = docs[("ConfigMap", source["configMapRef"]["name"])]["data"]
    env = {e["name"]: e for e in router["env"]}
    names = set(config) | {name for name in env if name.startswith("SWITCHBOARD_")}
    assert names <= known, f"variables no flag reads: {names - known}"
    secret_ref = env["SWITCHBOARD_REDIS_URL"]["valueFrom"]["secretKeyRef"]
    assert secret_ref == {"name": "switchboard-redis", "key": "url"}
    assert "SWITCHBOARD_REDIS_URL" not in config


def test_the_example_overlay_patches_what_it_says() -> None:
    base, overlay = _render(KUBERNETES / "base"), _render(KUBERNETES / "overlays/example")
    assert all(d["metadata"].get("namespace") == "contact-center"
               for key, d in overlay.items() if key[0] != "Namespace")  # fmt: skip
    assert _router(overlay)["image"] == "registry.example.com/switchboard:0.1.0"
    assert _router(overlay)["resources"]["requests"]["memory"] == "6Gi"
    assert _router(overlay)["readinessProbe"] == _router(base)["readinessProbe"]  # kept
    config = overlay[("ConfigMap", "switchboard-config")]["data"]
    assert config["SWITCHBOARD_WORKSPACE"] == "acme"
    assert config["SWITCHBOARD_LEASE_TTL"] == "2"  # merged, not replaced
    url = overlay[("Secret", "switchboard-redis")]["stringData"]["url"]
    assert url.startswith("redis://:") and "@" in url  # a password, by URL


def test_tls_and_tokens_come_from_mounted_secrets(docs: Docs) -> None:
    """The pods listen on 0.0.0.0: with TLS and bearer tokens, never --insecure; the files come
    from Secrets (the overlay provides them), so renewals reach the router without a restart."""
    router = _router(docs)
    env = {e["name"]: e.get("value") for e in router["env"]}
    assert "SWITCHBOARD_INSECURE" not in env
    mounts = {m["name"]: m for m in router["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in _pod(docs)["spec"]["volumes"]
               if "secret" in v}  # fmt: skip
    assert secrets == {
        "tls": "switchboard-tls", "auth": "switchboard-auth", "keyring": "switchboard-keyring"
    }  # fmt: skip
    for variable, volume in (("SWITCHBOARD_TLS_CERT", "tls"), ("SWITCHBOARD_TLS_KEY", "tls"),
                             ("SWITCHBOARD_AUTH_JWKS_FILE", "auth"),
                             ("SWITCHBOARD_PROBE_TLS_CA", "tls"),
                             ("SWITCHBOARD_KEYRING_FILE", "keyring")):  # fmt: skip
        assert mounts[volume]["readOnly"] is True
        assert env[variable].startswith(mounts[volume]["mountPath"] + "/"), variable
    assert env["SWITCHBOARD_METRICS_TLS"] == "1"
    assert _pod(docs)["metadata"]["annotations"]["prometheus.io/scheme"] == "https"


def test_the_example_overlay_provides_the_secrets() -> None:
    overlay = _render(KUBERNETES / "overlays/example")
    tls = overlay[("Secret", "switchboard-tls")]
    assert tls["type"] == "kubernetes.io/tls"
    assert set(tls["stringData"]) == {"tls.crt", "tls.key", "ca.crt"}
    jwks = overlay[("Secret", "switchboard-auth")]["stringData"]["jwks.json"]
    assert json.loads(jwks) == {"keys": []}
    # The keyring's placeholder is no keyring: a router refuses to start until it is replaced.
    placeholder = overlay[("Secret", "switchboard-keyring")]["stringData"]["keyring.json"]
    with pytest.raises(KeyringError, match="not JSON"):
        Keyring.from_json(placeholder)
