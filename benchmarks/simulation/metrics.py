"""The figures a contact-center manager reads, from one run's outcomes, and their means with
95% confidence intervals over independent seeds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
from scipy import stats

from benchmarks.simulation.des import Outcomes

SERVICE_LEVEL_S: Final = 20.0
"""The usual target: the share of contacts answered within 20 seconds (80/20)."""
WARM_UP_SHARE: Final = 0.1
"""The first contacts meet an empty center; they are left out of every figure."""


def summarise(outcomes: Outcomes) -> dict[str, float]:
    """service_level: answered within SERVICE_LEVEL_S / all contacts (a hang-up is a miss);
    asa_s: mean wait of the answered; abandon_rate; p_wait: the share of contacts that did not
    get an agent at once; resolution_rate and csat (mean 1-5 rating): over the answered."""
    start = int(len(outcomes.wait_ms) * WARM_UP_SHARE)
    wait_ms = outcomes.wait_ms[start:]
    answered = wait_ms >= 0
    answered_count = int(answered.sum())
    return {
        "contacts": float(len(wait_ms)),
        "service_level": float(np.mean(answered & (wait_ms <= SERVICE_LEVEL_S * 1000))),
        "asa_s": float(wait_ms[answered].mean() / 1000) if answered_count else math.nan,
        "abandon_rate": float(1 - answered.mean()),
        "p_wait": float(np.mean(wait_ms != 0)),
        "resolution_rate": float(outcomes.resolved[start:][answered].mean())
        if answered_count
        else math.nan,
        "csat": float(np.nanmean(outcomes.satisfaction[start:])) if answered_count else math.nan,
    }


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the half-width of its 95% confidence interval (Student's t)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    half_width = (
        stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    )
    return mean, float(half_width)


def over_seeds(runs: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    """Each figure's mean and CI half-width over the runs of one policy."""
    return {key: mean_ci95([run[key] for run in runs]) for key in runs[0]}
