"""`switchboard serve` configured by SWITCHBOARD_* environment variables (one per flag, flags
win), and the health probe (`switchboard health`, `python -m router.probe`)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from router.cli import _serve_parser
from router.envconfig import (
    VARIABLES_WITHOUT_FLAG,
    EnvConfigError,
    apply_env_defaults,
    env_actions,
    env_name,
)

README = Path(__file__).resolve().parents[2] / "README.md"


def _serve() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    return _serve_parser(parser.add_subparsers())


def _parse(environ: dict[str, str], argv: list[str] | None = None) -> argparse.Namespace:
    serve = _serve()
    apply_env_defaults(serve, environ)
    return serve.parse_args(argv or [])


def test_every_flag_has_a_variable_and_flags_win() -> None:
    args = _parse(
        {
            "SWITCHBOARD_HOST": "0.0.0.0",
            "SWITCHBOARD_PORT": "6000",
            "SWITCHBOARD_LEASE_TTL": "3.5",
            "SWITCHBOARD_DATA_DIR": "/var/lib/switchboard",
            "SWITCHBOARD_IN_MEMORY": "true",
            "SWITCHBOARD_LOG_LEVEL": "debug",
            "SWITCHBOARD_REDIS_URL": "redis://:secret@redis:6379/0",
        },
        ["--port", "7000"],
    )
    assert (args.host, args.port, args.lease_ttl) == ("0.0.0.0", 7000, 3.5)
    assert args.data_dir == Path("/var/lib/switchboard")
    assert args.in_memory is True
    assert args.log_level == "DEBUG"
    assert args.redis_url == "redis://:secret@redis:6379/0"
    assert _parse({"SWITCHBOARD_IN_MEMORY": "0"}).in_memory is False
    assert _parse({}).port == 50051  # no variable: the built-in default


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("SWITCHBOARD_PORT", "http", "SWITCHBOARD_PORT='http': not an integer"),
        ("SWITCHBOARD_LEASE_TTL", "2s", "SWITCHBOARD_LEASE_TTL='2s': not a number"),
        ("SWITCHBOARD_TEST_CLOCK", "maybe", "SWITCHBOARD_TEST_CLOCK='maybe': expected one of"),
        ("SWITCHBOARD_LOG_LEVEL", "loud", "SWITCHBOARD_LOG_LEVEL='loud': unknown logging level"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str, said: str) -> None:
    with pytest.raises(EnvConfigError, match=re.escape(said)):
        _parse({variable: value})


def test_serve_refuses_a_bad_variable_with_a_clear_error() -> None:
    environ = {**os.environ, "SWITCHBOARD_METRICS_PORT": "nine"}
    result = subprocess.run(
        [sys.executable, "-m", "router.cli", "serve"],
        env=environ, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "SWITCHBOARD_METRICS_PORT='nine': not an integer" in result.stderr


def test_the_readme_table_lists_every_flag_with_its_variable() -> None:
    text = README.read_text()
    for action in env_actions(_serve()):
        flag = max(action.option_strings, key=len)
        row = f"| `{flag}` | `{env_name(action)}` |"
        assert row in text, f"README's configuration table has no row {row!r}"
    for variable in VARIABLES_WITHOUT_FLAG:
        row = f"| (none) | `{variable}` |"
        assert row in text, f"README's configuration table has no row {row!r}"


def test_the_probe_fails_when_nothing_answers(unused_tcp_port: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "router.probe", "--timeout", "1"],
        env={**os.environ, "SWITCHBOARD_PORT": str(unused_tcp_port)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert f"127.0.0.1:{unused_tcp_port}: no answer" in result.stderr
