"""The SDK (`workers`) depends on the generated API code only, never on the server's modules, so
that an agent desktop or a front end can install and import it without the router."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
ALLOWED = ("router", "router._proto")
"""The `router` package's init (which turns gRPC's fork handlers off) and the generated code."""


def _modules_after_import(module: str) -> list[str]:
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return list(json.loads(result.stdout))


def _server_modules(modules: list[str]) -> list[str]:
    return [
        name
        for name in modules
        if (name == "router" or name.startswith("router."))
        and name not in ALLOWED
        and not name.startswith("router._proto.")
    ]


def test_importing_the_sdk_imports_no_server_module() -> None:
    modules = _modules_after_import("workers")
    assert "workers._session" in modules  # the import did happen
    assert _server_modules(modules) == []


def test_the_fleet_imports_no_server_module_either() -> None:
    assert _server_modules(_modules_after_import("workers.fleet")) == []


def test_the_check_sees_a_server_module() -> None:
    # The check above cannot pass by accident: importing the demo pulls in the server.
    assert "router.server" in _server_modules(_modules_after_import("router.demo"))


def test_the_sdk_and_the_router_name_the_leader_alike() -> None:
    from router.api.status import LEADER_METADATA_KEY as ROUTER_KEY
    from workers._errors import LEADER_METADATA_KEY as SDK_KEY

    assert SDK_KEY == ROUTER_KEY
