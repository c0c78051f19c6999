"""Shared fixtures: a real router serving gRPC on loopback, in a thread with its own event loop,
so tests talk to it over real gRPC with ordinary clients."""

from __future__ import annotations

# First: importing router turns gRPC's fork handlers off, which must happen before gRPC loads.
import router  # noqa: F401

# isort: split
import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from router.privacy.keyring import KEYRING_ENV, KEYRING_FILE_ENV, Keyring
from router.server import RunningServer, ServerConfig, start_server

# Routers on an external Redis need a keyring: every router of this test process (in-process
# ones and the processes it starts, which inherit the variable) shares one, so that a standby
# opens what its leader sealed.
if not os.environ.get(KEYRING_ENV) and not os.environ.get(KEYRING_FILE_ENV):
    os.environ[KEYRING_ENV] = Keyring.generate().to_json()


class ServerThread:
    """Runs `start_server` on a private event loop; `stop()` shuts it down."""

    def __init__(self, config: ServerConfig, *, wait_for_lead: bool = True) -> None:
        self._config = config
        self._wait_for_lead = wait_for_lead
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="router-server", daemon=True)
        self.server: RunningServer | None = None
        self._error: BaseException | None = None

    def start(self) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(timeout=30):
            raise TimeoutError("the router did not start within 30 s")
        if self._error is not None:
            raise self._error
        deadline_s = time.monotonic() + 30
        while self._wait_for_lead and (not self.server or not self.server.service.is_leader):
            if time.monotonic() > deadline_s:
                raise TimeoutError("the router did not take the lead within 30 s")
            time.sleep(0.01)
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self.server = self._loop.run_until_complete(start_server(self._config))
        except BaseException as error:  # reported to the test thread
            self._error = error
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    @property
    def address(self) -> str:
        assert self.server is not None
        return self.server.address

    def stop(self) -> None:
        if self.server is not None:
            asyncio.run_coroutine_threadsafe(self.server.stop(0.2), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()


@pytest.fixture
def router_server(tmp_path: Path) -> Iterator[ServerThread]:
    """A fresh durable router with the test clock, listening on a free loopback port, with its
    own Redis server (the embedded one) in a temporary folder."""
    config = ServerConfig(port=0, metrics_port=0, test_clock=True, data_dir=tmp_path / "data")
    server = ServerThread(config).start()
    yield server
    server.stop()


@pytest.fixture
def channel(router_server: ServerThread) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(router_server.address) as channel:
        grpc.channel_ready_future(channel).result(timeout=10)
        yield channel
