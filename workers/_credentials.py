"""What a client shows the router: a bearer token on every call and, over TLS, the certificates
to trust (and its own, for mutual TLS).

The token travels as `authorization: Bearer <token>` metadata added by a client interceptor, on
plaintext (loopback) and TLS channels alike: grpc's call credentials are refused on plaintext
channels, and its Python metadata plugins start a thread per call. A token given as a callable
is asked again for every call, so that it can refresh a token before it expires."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

TokenSource = str | Callable[[], str]
"""A bearer token, or a function returning the current one (called for every call: cache)."""
AUTHORIZATION_KEY = "authorization"


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """TLS to the router; every field is PEM bytes."""

    root_certificates: bytes | None = None
    """The CA certificates to trust for the router's certificate (None: the system's)."""
    private_key: bytes | None = None
    """This client's key, for a router that requires client certificates (mTLS)."""
    certificate_chain: bytes | None = None
    """This client's certificate, with `private_key`."""
    server_name: str = ""
    """The name to check in the router's certificate, when not the address's host (a router
    reached by IP, or through a tunnel)."""

    def channel_credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            self.root_certificates, self.private_key, self.certificate_chain
        )


class _Bearer:
    """Adds the `authorization` metadata to a call's details."""

    def __init__(self, token: TokenSource) -> None:
        self._token = token

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        token = self._token if isinstance(self._token, str) else self._token()
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(AUTHORIZATION_KEY, f"Bearer {token}")
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials,
            details.wait_for_ready,
        )  # fmt: skip


# grpc.aio files an interceptor under the first kind of call it handles only: one class a kind.
class _UnaryUnaryBearer(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)


class _UnaryStreamBearer(_Bearer, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(details), request)


class _StreamStreamBearer(_Bearer, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, requests: Any
    ) -> Any:
        return await continuation(self._details(details), requests)


def bearer_interceptors(token: TokenSource) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors that send `token` on every unary and streaming call."""
    return [kind(token) for kind in (_UnaryUnaryBearer, _UnaryStreamBearer, _StreamStreamBearer)]
