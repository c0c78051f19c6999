"""Where a router's keyring comes from: given, from the environment, kept with the private
Redis's data, new for the in-memory router; an external Redis without one is refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from router.privacy.keyring import KEYRING_ENV, KEYRING_FILE_ENV, KEYRING_FILE_NAME, Keyring
from router.server import ServerConfig
from router.store.embedded import EmbeddedRedis
from tests.conftest import ServerThread


@pytest.fixture
def no_keyring_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEYRING_ENV, raising=False)
    monkeypatch.delenv(KEYRING_FILE_ENV, raising=False)


def _config(**overrides: object) -> ServerConfig:
    return ServerConfig(port=0, metrics_port=None, **overrides)  # type: ignore[arg-type]


@pytest.mark.usefixtures("no_keyring_env")
def test_an_external_redis_without_a_keyring_is_refused_naming_the_flag(tmp_path: Path) -> None:
    redis = EmbeddedRedis(tmp_path / "redis")
    redis.start()
    try:
        with pytest.raises(ValueError, match=r"needs a keyring.*--keyring-file"):
            ServerThread(_config(redis_url=redis.url)).start()
    finally:
        redis.stop()


@pytest.mark.usefixtures("no_keyring_env")
def test_the_private_redis_keeps_its_keyring_with_its_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = ServerThread(_config(data_dir=data_dir)).start()
    try:
        made = first.server.service.customer_keys.keyring  # type: ignore[union-attr]
    finally:
        first.stop()
    path = data_dir / KEYRING_FILE_NAME
    assert path.stat().st_mode & 0o777 == 0o600
    again = ServerThread(_config(data_dir=data_dir)).start()
    try:
        assert again.server.service.customer_keys.keyring == made  # type: ignore[union-attr]
    finally:
        again.stop()


def test_a_given_keyring_wins(tmp_path: Path) -> None:
    keyring = Keyring.generate()
    thread = ServerThread(_config(durable=False, keyring=keyring)).start()
    try:
        assert thread.server.service.customer_keys.keyring == keyring  # type: ignore[union-attr]
    finally:
        thread.stop()


def test_the_cli_names_a_keyring_file_it_cannot_read(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "router.cli", "serve", "--port", "0", "--metrics-port", "-1",
         "--in-memory", "--keyring-file", str(tmp_path / "missing.json")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert f"keyring {tmp_path / 'missing.json'}: No such file" in done.stderr
