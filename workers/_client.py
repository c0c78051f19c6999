"""What the SDK's unary clients (`TaskClient`, `AdminClient`) share: the routers' addresses, one
channel opened on first use, following a standby's leader hint, and retries on UNAVAILABLE."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Self, TypeVar

import grpc

from workers._backoff import backoff_delays, check_backoff
from workers._channel import open_channel, unary
from workers._credentials import TlsSettings, TokenSource, for_stubs
from workers._errors import Unavailable

T = TypeVar("T")
StubT = TypeVar("StubT")

DEFAULT_RETRY_BACKOFF_S: tuple[float, float] = (0.05, 2.0)
DEFAULT_ATTEMPTS_MAX = 10
"""Attempts of a retried call in all (the first one included): with the default back-off, about
9 s of retrying, longer than a leader takeover (the router's lease TTL, 2 s by default)."""
DEFAULT_CALL_TIMEOUT_S = 10.0


class RouterClient(Generic[StubT]):
    """A client of one gRPC service of the router, over one channel to the router it calls now.

    On UNAVAILABLE (a standby, a router that died, a store outage) it moves on: to the leader a
    standby named, or to the next of its addresses. `_retrying` calls are retried with
    exponential back-off (only calls that are safe to repeat after a lost reply); `_once` calls
    are made once. With `token`, every call carries it (`authorization: Bearer`); with `tls`,
    the channel is TLS (mutual when it holds a client certificate)."""

    def __init__(
        self,
        address: str | Sequence[str],
        make_stub: Callable[[grpc.aio.Channel], StubT],
        *,
        retry_backoff_s: tuple[float, float],
        attempts_max: int,
        call_timeout_s: float,
        interceptors: Sequence[grpc.aio.ClientInterceptor],
        token: TokenSource | None,
        tls: TlsSettings | None,
    ) -> None:
        if attempts_max < 1:
            raise ValueError(f"attempts_max must be 1 or more, got {attempts_max}")
        check_backoff(retry_backoff_s)
        self.addresses = [address] if isinstance(address, str) else list(address)
        if not self.addresses:
            raise ValueError("give at least one address")
        self._make_stub = make_stub
        self._current = 0
        self._retry_backoff_s = retry_backoff_s
        self._attempts_max = attempts_max
        self._call_timeout_s = call_timeout_s
        self._interceptors = tuple(interceptors)
        self._token = token
        self._tls = tls
        self._channel: grpc.aio.Channel | None = None
        self._stub_cache: StubT | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def address(self) -> str:
        """The router this client calls now."""
        return self.addresses[self._current]

    async def close(self) -> None:
        """Closes the channel; calls in flight are canceled."""
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub_cache = None

    async def _follow(self, error: Unavailable) -> bool:
        """Moves on after UNAVAILABLE: to the leader the answer named (True: retry at once), or
        to the next address."""
        leader = error.leader_address
        if leader and leader != self.address:
            if leader not in self.addresses:
                self.addresses.append(leader)
            await self.close()
            self._current = self.addresses.index(leader)
            return True
        if len(self.addresses) > 1:
            await self.close()
            self._current = (self._current + 1) % len(self.addresses)
        return False

    def _stub(self) -> StubT:
        # The channel is opened on first use, inside the event loop that will drive it.
        if self._stub_cache is None:
            self._channel = open_channel(
                self.address,
                reconnect_backoff_s=self._retry_backoff_s,
                interceptors=self._interceptors,
                tls=self._tls,
            )
            self._stub_cache = self._make_stub(for_stubs(self._channel, self._token))
        return self._stub_cache

    async def _retrying(self, attempt: Callable[[], Awaitable[T]]) -> T:
        delays = backoff_delays(self._retry_backoff_s)
        for _ in range(self._attempts_max - 1):
            try:
                return await unary(attempt())
            except Unavailable as error:
                if not await self._follow(error):
                    await asyncio.sleep(next(delays))
        return await unary(attempt())

    async def _once(self, call: Awaitable[T]) -> T:
        return await unary(call)
