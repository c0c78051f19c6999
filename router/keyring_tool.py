"""`switchboard keyring`: makes and rotates the keyring that protects customers' personal data.

    switchboard keyring new --out keyring.json          # a new keyring, readable by you only
    switchboard keyring new --out - | kubectl create secret generic switchboard-keyring \\
        --from-file=keyring.json=/dev/stdin             # straight into a secret, never on disk
    switchboard keyring rotate keyring.json             # a new active key; the old ones stay

After a rotation, restart the routers with the rotated keyring (new data keys are then wrapped
with the new key), then rewrap the existing ones with AdminService.RewrapCustomerKeys: its reply
counts the data keys per key id, and a key no data key names any more may leave the keyring.
The hash key never rotates (customers would no longer be recognised). Losing the keyring loses
every customer's personal data: keep a copy where you keep your other secrets."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from router.privacy.keyring import Keyring, KeyringError, load_keyring


def build_parser(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="keyring_action", required=True)
    new = actions.add_parser(
        "new", help="write a new keyring (one key-encryption key and a hash key)"
    )
    new.add_argument(
        "--out", required=True, metavar="PATH",
        help="the file to create, mode 0600 (refused if it exists); - writes to stdout",
    )  # fmt: skip
    rotate = actions.add_parser(
        "rotate", help="add a new active key-encryption key to a keyring file (in place)"
    )
    rotate.add_argument("path", type=Path, metavar="PATH", help="the keyring file")


def run(args: argparse.Namespace) -> int:
    try:
        if args.keyring_action == "new":
            return _new(args.out)
        return _rotate(args.path)
    except (OSError, KeyringError) as error:
        print(f"switchboard keyring: {error}", file=sys.stderr)
        return 2


def _new(out: str) -> int:
    keyring = Keyring.generate()
    if out == "-":  # one line: for a variable (SWITCHBOARD_KEYRING) or a secret
        print(json.dumps(json.loads(keyring.to_json()), separators=(",", ":")))
        return 0
    path = Path(out)
    try:
        keyring.create(path)
    except FileExistsError:
        raise KeyringError(f"{path} exists: a keyring is never overwritten (rotate it)") from None
    print(f"wrote {path} (active key {keyring.active})", file=sys.stderr)
    return 0


def _rotate(path: Path) -> int:
    keyring = load_keyring(path)
    assert keyring is not None  # a path was given
    rotated = keyring.rotated()
    _replace(path, rotated.to_json() + "\n")
    print(
        f"rotated {path}: active key {rotated.active} (was {keyring.active}); restart the "
        "routers with it, then call AdminService.RewrapCustomerKeys",
        file=sys.stderr,
    )
    return 0


def _replace(path: Path, text: str) -> None:
    """Writes `text` over `path` atomically (a crash leaves the old keyring or the new one,
    never half of one), readable by its owner only."""
    descriptor, temporary = tempfile.mkstemp(prefix=".keyring-", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w") as file:  # mkstemp creates it 0600
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
