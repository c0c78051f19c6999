"""Configuration of `switchboard serve` by environment variables, one per flag.

Every long flag `--some-flag` of a command also reads `SWITCHBOARD_SOME_FLAG`; a flag given on
the command line wins over its variable, which wins over the built-in default. Containers and
Kubernetes configure the router this way (a ConfigMap for settings, a Secret for the Redis URL
with its password). The variables are read through the flag's own parser (`type`, `choices`),
so a bad value is refused the same way, and the error names the variable."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from router.privacy.keyring import KEYRING_ENV

ENV_PREFIX = "SWITCHBOARD_"
VARIABLES_WITHOUT_FLAG: dict[str, str] = {
    KEYRING_ENV: "the keyring's JSON itself, for a secret given as a variable (the "
    "file's is `--keyring-file`, SWITCHBOARD_KEYRING_FILE); read by `router.privacy.keyring`",
}
"""The `SWITCHBOARD_*` variables that `switchboard serve` reads though no flag does (a value that
must not appear in a process list): variable -> what it holds."""

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_KINDS: dict[object, str] = {int: "an integer", float: "a number"}


class EnvConfigError(ValueError):
    """An environment variable holds a value its flag would refuse."""


def env_name(action: argparse.Action) -> str:
    """`--metrics-port` -> `SWITCHBOARD_METRICS_PORT`."""
    return ENV_PREFIX + action.dest.upper()


def env_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The flags of `parser` that an environment variable may set (not --help)."""
    return [
        action
        for action in parser._actions
        if action.option_strings
        and not isinstance(action, argparse._HelpAction)
        and any(option.startswith("--") for option in action.option_strings)
    ]


def apply_env_defaults(parser: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Turns the `SWITCHBOARD_*` variables set in `environ` into `parser`'s defaults, so that
    flags still win. Raises EnvConfigError, naming the variable, for a value the flag refuses."""
    defaults = {}
    for action in env_actions(parser):
        name = env_name(action)
        if name not in environ:
            continue
        raw = environ[name]
        defaults[action.dest] = _convert(action, name, raw)
    parser.set_defaults(**defaults)


def _convert(action: argparse.Action, name: str, raw: str) -> object:
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        word = raw.strip().lower()
        if word not in _TRUE | _FALSE:
            raise EnvConfigError(
                f"{name}={raw!r}: expected one of 1, true, yes, on (or 0, false, no, off)"
            )
        on = word in _TRUE
        return on if isinstance(action, argparse._StoreTrueAction) else not on
    convert = action.type if callable(action.type) else str
    try:
        value = convert(raw)
    except argparse.ArgumentTypeError as error:  # the flag's own message
        raise EnvConfigError(f"{name}={raw!r}: {error}") from error
    except (TypeError, ValueError) as error:
        kind = _KINDS.get(convert, getattr(convert, "__name__", "value"))
        raise EnvConfigError(f"{name}={raw!r}: not {kind}") from error
    if action.choices is not None and value not in action.choices:
        choices = ", ".join(map(str, action.choices))
        raise EnvConfigError(f"{name}={raw!r}: must be one of {choices}")
    return value
