"""Fixtures of the store contract suite: the real Redis server of the integration tests."""

from tests.integration.conftest import embedded_redis

__all__ = ["embedded_redis"]
