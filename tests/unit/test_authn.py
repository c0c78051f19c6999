"""Bearer tokens: HS256 and JWKS (RS256, ES256) keys, rotation by kid, the claims each role
needs, the cache, and `switchboard token`; the rule against serving an open port bare."""

from __future__ import annotations

import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from router.api.authn import (
    CACHE_TOKENS_MAX,
    LEEWAY_S,
    AuthConfig,
    AuthenticationError,
    Role,
    TokenVerifier,
)
from router.cli import main
from router.mint import mint_token
from router.tls import is_loopback, refuse_bare_exposure

SECRET = b"0123456789abcdef0123456789abcdef-secret"


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_bytes(SECRET + b"\n")
    return path


def _jwks(path: Path, keys: dict[str, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]) -> None:
    entries = []
    for kid, key in keys.items():
        algorithm = (
            jwt.algorithms.RSAAlgorithm
            if isinstance(key, rsa.RSAPrivateKey)
            else (jwt.algorithms.ECAlgorithm)
        )
        entry = json.loads(algorithm.to_jwk(key.public_key()))
        entries.append({**entry, "kid": kid})
    path.write_text(json.dumps({"keys": entries}))


def test_an_hs256_token_names_its_caller_until_it_expires(secret_file: Path) -> None:
    now_s = time.time()
    verifier = TokenVerifier(AuthConfig(hs256_secret_file=secret_file))
    token = mint_token(role=Role.AGENT, worker_id="ana", key=SECRET, algorithm="HS256", ttl_s=60)
    principal = verifier.principal(_bearer(token))
    assert (principal.role, principal.worker_id, principal.subject) == (Role.AGENT, "ana", "ana")
    assert principal.expires_s == pytest.approx(now_s + 60 + LEEWAY_S, abs=5)
    assert verifier.principal(_bearer(token)) is principal  # cached
    stale = mint_token(role=Role.ADMIN, key=SECRET, algorithm="HS256", ttl_s=60,
                       now_s=now_s - 60 - LEEWAY_S - 5)  # fmt: skip
    with pytest.raises(AuthenticationError, match="token expired") as raised:
        verifier.principal(_bearer(stale))
    assert raised.value.reason == "expired"


def test_rs256_and_es256_keys_are_chosen_by_kid_and_rotate(tmp_path: Path) -> None:
    now_s = time.time()
    old, new = rsa.generate_private_key(65537, 2048), ec.generate_private_key(ec.SECP256R1())
    jwks = tmp_path / "jwks.json"
    _jwks(jwks, {"old": old})
    clock = [now_s]
    verifier = TokenVerifier(AuthConfig(jwks_file=jwks, issuer="idp", audience="switchboard"),
                             now_s=lambda: clock[0])  # fmt: skip

    def token(key: object, algorithm: str, kid: str) -> str:
        return mint_token(role=Role.FRONTEND, key=key, algorithm=algorithm, kid=kid,
                          issuer="idp", audience="switchboard", now_s=now_s)  # fmt: skip

    assert verifier.principal(_bearer(token(old, "RS256", "old"))).role is Role.FRONTEND
    with pytest.raises(AuthenticationError, match="kid"):
        verifier.principal(_bearer(token(new, "ES256", "new")))
    _jwks(jwks, {"old": old, "new": new})  # published; read again past the reload interval
    clock[0] += 10
    assert verifier.principal(_bearer(token(new, "ES256", "new"))).role is Role.FRONTEND
    # a key verifies its own algorithm only: the RSA public key is no HS256 secret
    pem = old.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = jwt.encode({"role": "admin", "exp": now_s + 60}, pem.decode()[:64] * 2,
                        algorithm="HS256", headers={"kid": "old"})  # fmt: skip
    with pytest.raises(AuthenticationError, match="algorithm not accepted"):
        verifier.principal(_bearer(forged))


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"role": "root"}, "no valid role claim"),
        ({"role": "agent"}, "needs a worker_id claim"),
        ({"role": "supervisor", "queues": "billing"}, "must be a list"),
        ({"role": "admin", "exp": None}, "lacks a required claim"),
    ],
)
def test_claims_each_role_needs(secret_file: Path, claims: dict[str, object], message: str) -> None:
    now_s = time.time()
    verifier = TokenVerifier(AuthConfig(hs256_secret_file=secret_file), now_s=lambda: now_s)
    payload = {"exp": now_s + 60, **claims}
    if payload["exp"] is None:
        del payload["exp"]
    with pytest.raises(AuthenticationError, match=message):
        verifier.principal(_bearer(jwt.encode(payload, SECRET, algorithm="HS256")))


def test_missing_or_malformed_authorization(secret_file: Path) -> None:
    verifier = TokenVerifier(AuthConfig(hs256_secret_file=secret_file))
    with pytest.raises(AuthenticationError, match="missing bearer token") as raised:
        verifier.principal((("x-other", "1"),))
    assert raised.value.reason == "missing_token"
    with pytest.raises(AuthenticationError, match="not 'Bearer <token>'"):
        verifier.principal((("authorization", "Basic abc"),))


def test_the_cache_is_bounded(secret_file: Path) -> None:
    now_s = time.time()
    verifier = TokenVerifier(AuthConfig(hs256_secret_file=secret_file), now_s=lambda: now_s)
    for n in range(CACHE_TOKENS_MAX + 5):
        token = mint_token(role=Role.FRONTEND, subject=f"s{n}", key=SECRET, algorithm="HS256",
                           now_s=now_s)  # fmt: skip
        verifier.principal(_bearer(token))
    assert len(verifier._cache) == CACHE_TOKENS_MAX


def test_a_short_secret_is_refused(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_bytes(b"password")
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenVerifier(AuthConfig(hs256_secret_file=short))


def test_switchboard_token_mints_what_the_router_accepts(
    secret_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["token", "--role", "supervisor", "--queues", "billing,support",
            "--hs256-secret-file", str(secret_file), "--ttl", "120"]  # fmt: skip
    assert main(argv) == 0
    token = capsys.readouterr().out.strip()
    principal = TokenVerifier(AuthConfig(hs256_secret_file=secret_file)).principal(_bearer(token))
    assert principal.role is Role.SUPERVISOR and principal.queues == {"billing", "support"}
    assert main(["token", "--role", "agent", "--hs256-secret-file", str(secret_file)]) == 2
    assert "needs a worker id" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False),
     ("router.example.com", False)],
)  # fmt: skip
def test_only_loopback_may_be_served_bare(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    if loopback:
        refuse_bare_exposure(host, tls=False, authenticated=False, insecure=False)
    else:
        with pytest.raises(ValueError, match="--insecure"):
            refuse_bare_exposure(host, tls=False, authenticated=False, insecure=False)
    for allowed in ({"tls": True}, {"authenticated": True}, {"insecure": True}):
        refuse_bare_exposure(host, **{"tls": False, "authenticated": False, "insecure": False,
                                      **allowed})  # fmt: skip
