"""Throwaway credentials for a secured router on this machine: a CA, a server certificate for
127.0.0.1 and localhost, a client certificate (mTLS), and an HS256 secret, written as files.

`python -m benchmarks.load --secure` and the security tests use them; nothing here is fit for
production (the README's secure set-up makes real ones with openssl)."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from router.api.authn import Role
from router.mint import mint_token
from workers import TlsSettings

VALID_DAYS = 2
TOKEN_TTL_S = 3600


@dataclass(frozen=True, slots=True)
class LocalCredentials:
    """Files in one folder, and tokens signed with its secret."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    hs256_secret: Path

    def token(self, role: Role, *, worker_id: str = "", queues: tuple[str, ...] = (),
              ttl_s: float = TOKEN_TTL_S) -> str:  # fmt: skip
        return mint_token(
            role=role, worker_id=worker_id, queues=queues, ttl_s=ttl_s,
            key=self.hs256_secret.read_bytes().strip(), algorithm="HS256",
        )  # fmt: skip

    def server_flags(self) -> list[str]:
        """`switchboard serve`'s flags for TLS and HS256 tokens with these files."""
        return ["--tls-cert", str(self.server_cert), "--tls-key", str(self.server_key),
                "--auth-hs256-secret-file", str(self.hs256_secret)]  # fmt: skip

    def client_access(self) -> ClientAccess:
        """What the load generator's clients show a router started with `server_flags`."""
        return ClientAccess(TlsSettings(root_certificates=self.ca_cert.read_bytes()), self.token)


@dataclass(frozen=True, slots=True)
class ClientAccess:
    """A load generator's credentials: TLS settings, and a token per role (and worker)."""

    tls: TlsSettings | None
    """None: plaintext."""
    token: Callable[..., str] | None
    """(role, worker_id=...) -> a token; None: no token."""

    def channel(self, address: str) -> grpc.aio.Channel:
        if self.tls is None:
            return grpc.aio.insecure_channel(address)
        return grpc.aio.secure_channel(address, self.tls.channel_credentials())

    def metadata(self, role: Role) -> tuple[tuple[str, str], ...]:
        """Call metadata bearing a token of `role`, passed on each call (no interceptor)."""
        if self.token is None:
            return ()
        return (("authorization", f"Bearer {self.token(role)}"),)

    def token_of(self, role: Role, worker_id: str = "") -> str | None:
        return None if self.token is None else self.token(role, worker_id=worker_id)


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(
    name: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: x509.Name | None,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool = False,
    usage: x509.ObjectIdentifier | None = None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if usage is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if usage == ExtendedKeyUsageOID.SERVER_AUTH:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def write_local_credentials(folder: Path) -> LocalCredentials:
    """A CA, a server and a client certificate it signed, and an HS256 secret, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca = _certificate("switchboard-test-ca", ca_key, None, ca_key, ca=True)
    files = LocalCredentials(
        ca_cert=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server-key.pem",
        client_cert=folder / "client.pem",
        client_key=folder / "client-key.pem",
        hs256_secret=folder / "hs256.secret",
    )
    pem = serialization.Encoding.PEM
    files.ca_cert.write_bytes(ca.public_bytes(pem))
    for cert_path, key_path, name, usage in (
        (files.server_cert, files.server_key, "localhost", ExtendedKeyUsageOID.SERVER_AUTH),
        (files.client_cert, files.client_key, "client", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = _key()
        cert = _certificate(name, key, ca.subject, ca_key, usage=usage)
        cert_path.write_bytes(cert.public_bytes(pem))
        key_path.write_bytes(_pem_key(key))
        key_path.chmod(0o600)
    files.hs256_secret.write_text(secrets.token_urlsafe(48) + "\n")
    files.hs256_secret.chmod(0o600)
    return files
