"""Who is calling: bearer tokens (JWT) verified into a `Principal`.

A token comes in the `authorization` metadata as `Bearer <jwt>`. It is signed either with a
shared HS256 secret, or with an RS256/ES256 private key whose public half is in a JWKS file (the
token's `kid` header picks the key, so keys can rotate: publish the new key, sign with it, drop
the old one; the file is read again when a token names a key it does not hold). `exp` is
required; `nbf`, `iss` and `aud` are checked when configured, each with `LEEWAY_S` of clock skew.

The claims the router reads: `sub` (who, for the audit log), `role` (`admin`, `supervisor`,
`frontend`, `agent`), `queues` (a supervisor's queues) and `worker_id` (an agent's worker).

Verified tokens are cached by their string until they expire (a bounded number of them), so
that the interceptor on every call's path costs a dictionary look-up, not a signature check."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import jwt
from jwt.types import Options

LEEWAY_S = 30
"""Clock skew allowed between the token's issuer and this router, for exp and nbf."""
CACHE_TOKENS_MAX = 10_000
"""Verified tokens remembered (about one per connected agent and per front end); past it the
oldest is forgotten, and verified again when it comes back."""
JWKS_RELOAD_INTERVAL_S = 5.0
"""A token naming an unknown key id reads the JWKS file again at most this often (rotation
without a restart, without letting unknown key ids make the router read a file per call)."""
AUTHORIZATION_KEY = "authorization"
BEARER_PREFIX = "Bearer "


class Role(Enum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    FRONTEND = "frontend"
    AGENT = "agent"


@dataclass(frozen=True, slots=True)
class Principal:
    """The verified caller."""

    subject: str
    role: Role
    worker_id: str = ""
    """An agent's own worker."""
    queues: frozenset[str] = frozenset()
    """A supervisor's queues."""
    expires_s: float = float("inf")
    """Unix time the token expires (the leeway included)."""


ANONYMOUS = Principal(subject="anonymous", role=Role.ADMIN)
"""The caller of a router with no authentication configured: allowed everything, as before."""


class AuthenticationError(Exception):
    """A token is missing or refused; the message says which check failed, never the token.
    `reason` is the refusal's label in `switchboard_auth_refusals_total`."""

    def __init__(self, message: str, reason: str = "invalid_token") -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """How tokens are verified: exactly one of the two key sources."""

    hs256_secret_file: Path | None = None
    """A file holding the shared HS256 secret (its bytes, surrounding white space removed)."""
    jwks_file: Path | None = None
    """A JWKS (RFC 7517) file of RS256/ES256 public keys, each with its `kid`."""
    issuer: str = ""
    """Required `iss`, when set."""
    audience: str = ""
    """Required `aud`, when set."""

    @property
    def enabled(self) -> bool:
        return self.hs256_secret_file is not None or self.jwks_file is not None


_REFUSALS: tuple[tuple[type[Exception], str], ...] = (
    (jwt.ExpiredSignatureError, "token expired"),
    (jwt.ImmatureSignatureError, "token not yet valid (nbf)"),
    (jwt.InvalidIssuerError, "token issuer not accepted"),
    (jwt.InvalidAudienceError, "token audience not accepted"),
    (jwt.InvalidSignatureError, "token signature invalid"),
    (jwt.InvalidAlgorithmError, "token algorithm not accepted"),
    (jwt.MissingRequiredClaimError, "token lacks a required claim"),
    (jwt.DecodeError, "token malformed"),
    (jwt.InvalidTokenError, "token invalid"),
)


def read_secret(path: Path) -> bytes:
    """The HS256 secret in `path`; refuses one too short to resist guessing."""
    secret = path.read_bytes().strip()
    if len(secret) < 32:
        raise ValueError(f"{path}: an HS256 secret needs at least 32 bytes, got {len(secret)}")
    return secret


class TokenVerifier:
    """Verifies bearer tokens into principals, caching the verified ones until they expire."""

    def __init__(self, config: AuthConfig, *, now_s: Callable[[], float] = time.time) -> None:
        if (config.hs256_secret_file is None) == (config.jwks_file is None):
            raise ValueError("give exactly one of an HS256 secret file and a JWKS file")
        self._config = config
        self._now_s = now_s
        self._cache: dict[str, Principal] = {}
        self._secret = b""
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_read_s = 0.0
        if config.hs256_secret_file is not None:
            self._secret = read_secret(config.hs256_secret_file)
        else:
            self._read_keys()
        # With no audience configured, a token's `aud` is not checked (PyJWT would refuse any).
        self._options: Options = {"require": ["exp"], "verify_aud": bool(config.audience)}

    def principal(self, metadata: Any) -> Principal:
        """The caller named by the `authorization` entry of `metadata` (a call's invocation
        metadata). Raises AuthenticationError."""
        token = _bearer(metadata)
        cached = self._cache.get(token)
        now_s = self._now_s()
        if cached is not None and cached.expires_s > now_s:
            return cached
        principal = self._verify(token)
        if len(self._cache) >= CACHE_TOKENS_MAX:
            del self._cache[next(iter(self._cache))]  # the oldest: dicts keep insertion order
        self._cache[token] = principal
        return principal

    def _verify(self, token: str) -> Principal:
        try:
            key, algorithms = self._key_for(token)
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=self._config.issuer or None,
                audience=self._config.audience or None,
                leeway=LEEWAY_S,
                options=self._options,
            )
        except AuthenticationError:
            raise
        except Exception as error:  # PyJWT's and a bad key's: each named, never the token
            expired = isinstance(error, jwt.ExpiredSignatureError)
            raise AuthenticationError(
                _refusal(error), "expired" if expired else "invalid_token"
            ) from None
        return principal_of(claims)

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        if self._secret:
            return self._secret, ["HS256"]
        kid = jwt.get_unverified_header(token).get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthenticationError("token has no key id (kid)")
        if kid not in self._keys and self._now_s() - self._keys_read_s > JWKS_RELOAD_INTERVAL_S:
            self._read_keys()
        found = self._keys.get(kid)
        if found is None:
            raise AuthenticationError("token key id (kid) unknown")
        return found.key, [_algorithm_of(found)]

    def _read_keys(self) -> None:
        assert self._config.jwks_file is not None
        document = json.loads(self._config.jwks_file.read_text())
        keys = {}
        for entry in document.get("keys", []):
            key = jwt.PyJWK.from_dict(entry)
            if not key.key_id:
                raise ValueError(f"{self._config.jwks_file}: every key needs a kid")
            keys[key.key_id] = key
        self._keys = keys
        self._keys_read_s = self._now_s()


def _algorithm_of(key: jwt.PyJWK) -> str:
    """The one algorithm a key verifies: its `alg` (PyJWK infers RS256 for RSA and ES256 for EC
    P-256 when the JWK names none), never HS256 with a public key's bytes as the secret."""
    algorithm = key.algorithm_name
    if algorithm not in ("RS256", "ES256"):
        raise AuthenticationError("token key is of an algorithm not accepted")
    return algorithm


def principal_of(claims: Mapping[str, Any]) -> Principal:
    """The principal a verified token's claims describe. Raises AuthenticationError when its
    role, worker or queues claim is missing or malformed."""
    try:
        role = Role(claims.get("role"))
    except ValueError:
        raise AuthenticationError("token has no valid role claim") from None
    worker_id = claims.get("worker_id", "")
    if not isinstance(worker_id, str) or (role is Role.AGENT and not worker_id):
        raise AuthenticationError("an agent token needs a worker_id claim")
    queues = claims.get("queues", [])
    if not isinstance(queues, list) or not all(isinstance(q, str) for q in queues):
        raise AuthenticationError("token queues claim must be a list of queue ids")
    return Principal(
        subject=str(claims.get("sub", "")),
        role=role,
        worker_id=worker_id if role is Role.AGENT else "",
        queues=frozenset(queues) if role is Role.SUPERVISOR else frozenset(),
        expires_s=float(claims["exp"]) + LEEWAY_S,
    )


def _bearer(metadata: Any) -> str:
    for key, value in metadata or ():
        if key == AUTHORIZATION_KEY:
            if isinstance(value, str) and value.startswith(BEARER_PREFIX):
                return value[len(BEARER_PREFIX) :].strip()
            raise AuthenticationError("authorization metadata is not 'Bearer <token>'")
    raise AuthenticationError("missing bearer token in the authorization metadata", "missing_token")


def _refusal(error: Exception) -> str:
    for kind, message in _REFUSALS:
        if isinstance(error, kind):
            return message
    return "token could not be verified"
