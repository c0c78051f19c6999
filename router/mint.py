"""`switchboard token`: mints a bearer token for development and tests.

    switchboard token --role agent --worker alice --hs256-secret-file secret.txt
    switchboard token --role supervisor --queues billing,support --private-key key.pem --kid k1

Production tokens come from your identity provider; this signs the same claims the router reads
(`sub`, `role`, `worker_id`, `queues`, `iat`, `nbf`, `exp`, and `iss`/`aud` when given) with an
HS256 secret or an RSA (RS256) or EC P-256 (ES256) private key, named by its `kid`."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from router.api.authn import Role, read_secret

TTL_S_DEFAULT = 3600


def mint_token(
    *,
    role: Role,
    subject: str = "",
    worker_id: str = "",
    queues: Sequence[str] = (),
    ttl_s: float = TTL_S_DEFAULT,
    key: Any,
    algorithm: str,
    kid: str = "",
    issuer: str = "",
    audience: str = "",
    now_s: float | None = None,
) -> str:
    """A signed JWT with the claims the router reads. `key`: the HS256 secret (bytes) or a
    private key (PEM bytes or a cryptography key)."""
    if role is Role.AGENT and not worker_id:
        raise ValueError("an agent token needs a worker id (--worker)")
    now = int(time.time() if now_s is None else now_s)
    claims: dict[str, Any] = {
        "sub": subject or (worker_id if role is Role.AGENT else role.value),
        "role": role.value,
        "iat": now,
        "nbf": now,
        "exp": now + int(ttl_s),
    }
    if worker_id:
        claims["worker_id"] = worker_id
    if queues:
        claims["queues"] = list(queues)
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    headers = {"kid": kid} if kid else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def private_key_algorithm(pem: bytes) -> tuple[Any, str]:
    """The key in `pem` and the algorithm it signs with (RS256 or ES256)."""
    key = load_pem_private_key(pem, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key, "ES256"
    raise ValueError("the private key must be RSA or EC P-256")


def build_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", required=True, choices=[r.value for r in Role])
    parser.add_argument("--worker", default="", help="an agent's worker id (claim worker_id)")
    parser.add_argument("--queues", default="", help="a supervisor's queues, comma-separated")
    parser.add_argument("--subject", default="", help="sub claim (default: the worker or role)")
    parser.add_argument("--ttl", type=float, default=TTL_S_DEFAULT, metavar="SECONDS")
    parser.add_argument("--issuer", default="", help="iss claim")
    parser.add_argument("--audience", default="", help="aud claim")
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--hs256-secret-file", type=Path, metavar="FILE")
    key.add_argument("--private-key", type=Path, metavar="PEM", help="RSA or EC P-256 key")
    parser.add_argument("--kid", default="", help="key id of --private-key in the JWKS")


def run(args: argparse.Namespace) -> int:
    try:
        if args.hs256_secret_file is not None:
            key, algorithm = read_secret(args.hs256_secret_file), "HS256"
        else:
            if not args.kid:
                raise ValueError("--private-key needs --kid (the key's id in the JWKS)")
            key, algorithm = private_key_algorithm(args.private_key.read_bytes())
        token = mint_token(
            role=Role(args.role), subject=args.subject, worker_id=args.worker,
            queues=[q for q in args.queues.split(",") if q], ttl_s=args.ttl, key=key,
            algorithm=algorithm, kid=args.kid, issuer=args.issuer, audience=args.audience,
        )  # fmt: skip
    except (OSError, ValueError) as error:
        print(f"switchboard token: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0
