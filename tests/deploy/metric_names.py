"""The names of the series the router exports, from a fresh registry (no Prometheus needed)."""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry

from router.obs.loop_monitor import LoopMonitor
from router.obs.metrics import RouterMetrics

_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
}


def exported_series() -> set[str]:
    registry = CollectorRegistry()
    RouterMetrics(registry)
    LoopMonitor(registry)
    names = set()
    for family in registry.collect():
        for suffix in _SUFFIXES[family.type]:
            names.add(family.name + suffix)
    return names


def referenced_series(expression: str) -> set[str]:
    """The switchboard_* series a PromQL expression names."""
    return set(re.findall(r"\bswitchboard_[a-z_]+", expression))
