"""Fixtures of the deployment tests: free ports, and a router started as a container would."""

from __future__ import annotations

import socket

import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def unused_tcp_port() -> int:
    return free_port()
