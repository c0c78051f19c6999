"""TLS on the router's ports, and the rule that keeps an open port from being served bare.

The gRPC port's certificate and key are read again, without a restart, when either file (or the
client CA) changes on disk: grpc asks `_Reloader` before each new handshake, which costs one
`stat` per file, and a renewed certificate (cert-manager, a cron'd `certbot`) is served to the
next connection while established ones go on."""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


@dataclass(frozen=True, slots=True)
class TlsConfig:
    cert_file: Path
    """PEM certificate chain the router presents (the leaf first)."""
    key_file: Path
    """PEM private key of that certificate."""
    client_ca_file: Path | None = None
    """PEM CA certificates; when set, clients must present a certificate one of them signed
    (mutual TLS)."""


class _Reloader:
    """grpc's certificate configuration fetcher: a new configuration when a file changed."""

    def __init__(self, config: TlsConfig) -> None:
        self._config = config
        self._files = [config.cert_file, config.key_file]
        if config.client_ca_file is not None:
            self._files.append(config.client_ca_file)
        self._stamps = self._read_stamps()

    def _read_stamps(self) -> list[tuple[int, int]]:
        stamps = []
        for path in self._files:
            status = os.stat(path)
            stamps.append((status.st_mtime_ns, status.st_size))
        return stamps

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        config = self._config
        pair = (config.key_file.read_bytes(), config.cert_file.read_bytes())
        client_ca = config.client_ca_file.read_bytes() if config.client_ca_file else None
        return grpc.ssl_server_certificate_configuration([pair], root_certificates=client_ca)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            stamps = self._read_stamps()
            if stamps == self._stamps:
                return None
            configuration = self.configuration()
        except OSError as error:  # mid-rotation: keep serving the certificate we have
            log.warning("TLS files not reloaded: %s", error)
            return None
        self._stamps = stamps
        log.info("TLS certificate reloaded from %s", self._config.cert_file)
        return configuration


def server_credentials(config: TlsConfig) -> grpc.ServerCredentials:
    """Credentials for the gRPC port that follow the files' changes (see the module's doc)."""
    reloader = _Reloader(config)
    return grpc.dynamic_ssl_server_credentials(
        reloader.configuration(),
        reloader,
        require_client_authentication=config.client_ca_file is not None,
    )


def is_loopback(host: str) -> bool:
    """Whether `host` names this machine only: 127.0.0.0/8, ::1 or localhost."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def refuse_bare_exposure(host: str, *, tls: bool, authenticated: bool, insecure: bool) -> None:
    """Raises ValueError when the router would listen beyond this machine with neither TLS nor
    authentication, unless the operator said so (`--insecure`)."""
    if tls or authenticated or insecure or is_loopback(host):
        return
    raise ValueError(
        f"refusing to listen on {host} without TLS and without authentication: anyone who "
        "reaches the port could read every task and change every queue. Give --tls-cert and "
        "--tls-key, and/or --auth-hs256-secret-file or --auth-jwks-file; or --insecure "
        "(SWITCHBOARD_INSECURE=1) on a network you trust; or listen on 127.0.0.1"
    )
