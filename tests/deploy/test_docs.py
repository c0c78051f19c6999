"""The deployment documentation: the sizing figures name the command that measured them (and
it exists), and the README's Deploy section links what exists."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _section(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_sizing_figures_name_their_commands() -> None:
    sizing = _section((REPO_ROOT / "docs" / "operations.md").read_text(), "Sizing")
    commands = re.findall(r"`python (?:-m )?([\w./]+)", sizing)
    assert "scripts/measure_sizing.py" in commands
    for command in commands:
        path = command if command.endswith(".py") else command.replace(".", "/") + ".py"
        assert (REPO_ROOT / path).is_file(), command
    assert re.search(r"\| [\d.]+ KiB \|", sizing)


def test_the_deploy_section_links_what_exists() -> None:
    deploy = _section((REPO_ROOT / "README.md").read_text(), "Deploy")
    for link in re.findall(r"\]\(([^)#]+)", deploy):
        assert (REPO_ROOT / link).exists(), link
    for needed in ("appendfsync always", "SWITCHBOARD_REDIS_URL", "router.probe"):
        assert needed in deploy
