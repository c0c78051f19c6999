"""Reads what a Dockerfile's final stage gives a container: its environment, command and health
check, so that tests run them as the image would (there is no Docker engine to run the image)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Stage:
    base: str
    name: str
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    user: str = ""
    workdir: str = ""
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    healthcheck_options: dict[str, str] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    copies: list[str] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        lines.append(current + stripped)
        current = ""
    pairs = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"not the exec (JSON) form: {arguments}"
    return [str(item) for item in value]


def _assignments(arguments: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in shlex.split(arguments))


def parse(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    global_args: dict[str, str] = {}
    for keyword, arguments in instructions(path.read_text()):
        if keyword == "FROM":
            words = arguments.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), ""), words[0])
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else ""
            stages.append(Stage(base=base, name=name))
            continue
        if not stages:
            if keyword == "ARG":
                global_args.update(_assignments(arguments))
            continue
        stage = stages[-1]
        if keyword == "ENV":
            stage.env.update(_assignments(arguments))
        elif keyword == "ARG":
            stage.args.update(_assignments(arguments) if "=" in arguments else {})
        elif keyword == "USER":
            stage.user = arguments
        elif keyword == "WORKDIR":
            stage.workdir = arguments
        elif keyword == "ENTRYPOINT":
            stage.entrypoint = _exec_form(arguments)
        elif keyword == "CMD":
            stage.cmd = _exec_form(arguments)
        elif keyword == "RUN":
            stage.runs.append(arguments)
        elif keyword == "COPY":
            stage.copies.append(arguments)
        elif keyword == "HEALTHCHECK":
            options, _, command = arguments.partition("CMD ")
            stage.healthcheck = _exec_form(command)
            stage.healthcheck_options = _assignments(options.replace("--", ""))
    return stages
