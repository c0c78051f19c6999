"""The container image, without a Docker engine: the Dockerfile is what it should be (multi-stage,
slim, non-root, the wheel installed from the build stage only), and the wheel it builds, run
with the image's ENTRYPOINT, CMD and ENV (environment variables, not flags), serves: its
HEALTHCHECK passes, the readiness probe says SERVING, a standby is alive but not ready, and
SIGTERM stops it cleanly."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from router.privacy.keyring import KEYRING_ENV
from tests.deploy.conftest import free_port
from tests.deploy.dockerfile import Stage, parse

REPO_ROOT = Path(__file__).resolve().parents[2]
WHEEL_PACKAGES = tuple(
    pattern.rstrip("*")
    for pattern in tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]["find"]["include"]
)
"""The top-level packages of the project's wheel (pyproject's packages.find): the image's build
stage must copy each."""
DOCKERFILE = REPO_ROOT / "Dockerfile"
START_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE)


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


def test_the_dockerfile_builds_a_wheel_and_runs_it_as_a_user(
    stages: list[Stage], runtime: Stage
) -> None:
    build = stages[0]
    assert len(stages) == 2 and build.name == "build" and runtime.name == "runtime"
    assert re.fullmatch(r"python:3\.1[1-9]-slim(-\w+)?", runtime.base), runtime.base
    assert any("pip wheel" in run for run in build.runs)
    (install,) = [run for run in runtime.runs if "pip install" in run]
    assert "--no-index" in install and "from=build" in install  # the build stage's wheels only
    assert not any(re.search(r"apt-get|gcc|build-essential", run) for run in runtime.runs)
    user = runtime.user.split(":")[0]
    assert user not in {"", "0", "root"}
    assert runtime.entrypoint == ["switchboard"] and runtime.cmd == ["serve"]
    assert runtime.env["SWITCHBOARD_HOST"] == "0.0.0.0"
    assert runtime.healthcheck[:3] == ["python", "-m", "router.probe"]


def test_dockerignore_lets_through_what_the_build_copies() -> None:
    kept = {
        line[1:].rstrip("/")
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = {"pyproject.toml", *WHEEL_PACKAGES}
    assert kept == copied
    text = DOCKERFILE.read_text()
    for name in copied:
        assert f"COPY {name} " in text or f"COPY {name}" in text


@dataclass
class Image:
    """The runtime stage, emulated: the wheel unpacked as site-packages, the console script."""

    root: Path
    site: Path
    bin: Path

    def environ(self, runtime: Stage, **overrides: str) -> dict[str, str]:
        # The image's ENV, then what `docker run -e` would override: ports free on this machine
        # and a data folder of the test's own.
        env = {
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(self.site),
            "HOME": str(self.root),
            **runtime.env,
            **overrides,
        }
        return env


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    root = tmp_path_factory.mktemp("image")
    context = root / "context"  # what the Dockerfile copies into the build stage
    context.mkdir()
    shutil.copy(REPO_ROOT / "pyproject.toml", context)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in WHEEL_PACKAGES:
        shutil.copytree(REPO_ROOT / package, context / package, ignore=ignore)
    wheels = root / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--quiet", "--wheel-dir", str(wheels), str(context)],
        check=True, timeout=300,
    )  # fmt: skip
    (wheel,) = wheels.glob("switchboard-*.whl")
    site = root / "site-packages"
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "router/_proto/switchboard/v1/task_service_pb2.py" in names
        assert "router/probe.py" in names and "workers/__init__.py" in names
        assert "benchmarks/workload.py" in names  # the demo's simulated center
        assert not any(name.startswith("tests/") for name in names)
        archive.extractall(site)
    (entry_points,) = site.glob("switchboard-*.dist-info/entry_points.txt")
    match = re.search(r"^switchboard = (\S+):(\S+)$", entry_points.read_text(), re.MULTILINE)
    assert match, entry_points.read_text()
    module, function = match.groups()
    bin_dir = root / "bin"
    bin_dir.mkdir()
    script = bin_dir / "switchboard"  # as pip writes a console script
    script.write_text(
        f"#!{sys.executable}\nimport sys\nfrom {module} import {function}\nsys.exit({function}())\n"
    )
    script.chmod(0o755)
    python = bin_dir / "python"  # the image's python (a symlink would lose the venv's packages)
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    return Image(root, site, bin_dir)


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=30, check=False
    )


@dataclass
class Container:
    process: subprocess.Popen[str]
    env: dict[str, str]
    workdir: Path
    metrics_port: int


@pytest.fixture
def start(image: Image, runtime: Stage, tmp_path: Path) -> Iterator[object]:
    started: list[Container] = []

    def run(name: str, **overrides: str) -> Container:
        workdir = tmp_path / name
        workdir.mkdir()
        metrics_port = free_port()
        env = image.environ(
            runtime,
            SWITCHBOARD_PORT=str(free_port()),
            SWITCHBOARD_METRICS_PORT=str(metrics_port),
            SWITCHBOARD_DATA_DIR=str(workdir / "data"),
            # The image listens on 0.0.0.0: plaintext without tokens must be asked for, as
            # deploy/compose.yaml does (test_the_image_refuses_an_open_port_by_default).
            SWITCHBOARD_INSECURE="1",
            # One keyring for every container of a test, as a Secret would give them: a standby
            # on the leader's Redis must open what the leader sealed.
            SWITCHBOARD_KEYRING=os.environ[KEYRING_ENV],
            **overrides,
        )
        # ENTRYPOINT + CMD, looked up on PATH as the container's init would.
        command = [*runtime.entrypoint, *runtime.cmd]
        command[0] = shutil.which(command[0], path=env["PATH"]) or command[0]
        process = subprocess.Popen(
            command, env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        container = Container(process, env, workdir, metrics_port)
        started.append(container)
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "switchboard serving on 0.0.0.0:" in line, line
        return container

    yield run
    for container in reversed(started):  # standbys first: the leader owns the embedded Redis
        if container.process.poll() is None:
            container.process.send_signal(signal.SIGTERM)
            try:
                container.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                container.process.kill()
                container.process.wait()


def _probe_until(command: list[str], container: Container, expected_rc: int) -> str:
    deadline_s = time.monotonic() + START_TIMEOUT_S
    while True:
        result = _run(command, container.env, container.workdir)
        if result.returncode == expected_rc or time.monotonic() > deadline_s:
            assert result.returncode == expected_rc, result.stdout + result.stderr
            return result.stdout
        time.sleep(0.2)


def test_the_wheel_runs_as_the_image_and_its_probes_answer(
    image: Image, runtime: Stage, start: object
) -> None:
    assert callable(start)
    leader: Container = start("leader")
    # Every package of the project comes from the wheel, not the working tree (the test's own
    # interpreter can import them all from there): `serve` loads the demo's parser, and with it
    # benchmarks.workload, so a package the build does not copy breaks the image.
    where = _run(
        ["python", "-c", "import router.cli, router.demo, benchmarks.workload, sys; print("
         "'\\n'.join(m.__file__ for n, m in sys.modules.items() if n.split('.')[0] in "
         f"{WHEEL_PACKAGES!r} and getattr(m, '__file__', None)))"],
        leader.env, leader.workdir,
    )  # fmt: skip
    loaded = where.stdout.split()
    assert loaded and all(path.startswith(str(image.site)) for path in loaded), where

    healthcheck = _probe_until(runtime.healthcheck, leader, 0)
    assert "SERVING" in healthcheck
    ready = _probe_until(["python", "-m", "router.probe"], leader, 0)
    assert ready.strip().endswith(": SERVING"), ready
    cli = _run(["switchboard", "health"], leader.env, leader.workdir)
    assert cli.returncode == 0 and cli.stdout.strip().endswith(": SERVING")
    url = f"http://127.0.0.1:{leader.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert b"switchboard_loop_stall_seconds" in reply.read()

    # A standby on the leader's store: alive (the HEALTHCHECK passes), never ready.
    store = f"unix://{leader.workdir / 'data' / 'redis.sock'}"
    standby: Container = start("standby", SWITCHBOARD_REDIS_URL=store)
    live = _probe_until(runtime.healthcheck, standby, 0)
    assert live.strip().endswith(": NOT_SERVING"), live
    not_ready = _run(["python", "-m", "router.probe"], standby.env, standby.workdir)
    assert not_ready.returncode == 1 and "NOT_SERVING" in not_ready.stdout

    standby.process.send_signal(signal.SIGTERM)
    assert standby.process.wait(timeout=20) == 0
    leader.process.send_signal(signal.SIGTERM)  # the image's STOPSIGNAL
    assert leader.process.wait(timeout=20) == 0


def test_the_image_refuses_an_open_port_by_default(
    image: Image, runtime: Stage, tmp_path: Path
) -> None:
    """With neither TLS, tokens nor SWITCHBOARD_INSECURE, the image's command stops at once and
    says why, before it touches a store."""
    env = image.environ(runtime, SWITCHBOARD_PORT=str(free_port()), SWITCHBOARD_METRICS_PORT="-1",
                        SWITCHBOARD_DATA_DIR=str(tmp_path / "data"))  # fmt: skip
    command = [*runtime.entrypoint, *runtime.cmd]
    command[0] = shutil.which(command[0], path=env["PATH"]) or command[0]
    result = _run(command, env, tmp_path)
    assert result.returncode == 1
    assert "refusing to listen on 0.0.0.0 without TLS and without authentication" in result.stderr
    assert not (tmp_path / "data").exists()
