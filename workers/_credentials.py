"""What a client shows the router: a bearer token on every call and, over TLS, the certificates
to trust (and its own, for mutual TLS).

The token travels as `authorization: Bearer <token>` metadata passed with every call by the
stubs (`AuthorizedChannel`), on plaintext (loopback) and TLS channels alike: grpc's call
credentials are refused on plaintext channels, and its Python metadata plugins start a thread
per call. A token given as a callable is asked again for every call, so that it can refresh a
token before it expires."""

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


class _WithToken:
    """A stub's method that sends the token with every call."""

    __slots__ = ("_call", "_metadata")

    def __init__(self, call: Any, metadata: Callable[[], tuple[tuple[str, str], ...]]) -> None:
        self._call = call
        self._metadata = metadata

    def __call__(self, *args: Any, metadata: Any = None, **kwargs: Any) -> Any:
        return self._call(*args, metadata=(*(metadata or ()), *self._metadata()), **kwargs)


class AuthorizedChannel:
    """The face of a channel that generated stubs use, whose calls all carry the token. The
    metadata is passed with each call: cheaper than grpc.aio's client interceptors, which
    wrap every call in a task of its own."""

    def __init__(self, channel: grpc.aio.Channel, token: TokenSource) -> None:
        self._channel = channel
        if isinstance(token, str):
            fixed = ((AUTHORIZATION_KEY, f"Bearer {token}"),)
            self._metadata: Callable[[], tuple[tuple[str, str], ...]] = lambda: fixed
        else:
            self._metadata = lambda: ((AUTHORIZATION_KEY, f"Bearer {token()}"),)

    def unary_unary(self, *args: Any, **kwargs: Any) -> _WithToken:
        return _WithToken(self._channel.unary_unary(*args, **kwargs), self._metadata)

    def unary_stream(self, *args: Any, **kwargs: Any) -> _WithToken:
        return _WithToken(self._channel.unary_stream(*args, **kwargs), self._metadata)

    def stream_unary(self, *args: Any, **kwargs: Any) -> _WithToken:
        return _WithToken(self._channel.stream_unary(*args, **kwargs), self._metadata)

    def stream_stream(self, *args: Any, **kwargs: Any) -> _WithToken:
        return _WithToken(self._channel.stream_stream(*args, **kwargs), self._metadata)


def for_stubs(channel: grpc.aio.Channel, token: TokenSource | None) -> Any:
    """What to build stubs on: `channel`, or with a token, its face that sends it."""
    return channel if token is None else AuthorizedChannel(channel, token)
