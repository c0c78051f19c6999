"""Eligibility and score of workers for one task, over the numpy columns.

    score = w_skill * skill_fit + w_empathy * empathy_fit + w_idle * idle_fit
            + w_affinity * affinity + w_load * (1 - load)

- skill_fit in [0, 1]: weighted mean of min(level / 5, 1) over the task's required skills (weight
  1 each) and preferred skills (their given weights); a skill the worker lacks counts 0.
- empathy_fit = need * empathy, need = max(0, -sentiment) + REPEAT_NEED_STEP per earlier contact
  of the same customer within REPEAT_CONTACT_WINDOW_MS (at most two), capped at 1.
- idle_fit = idle time / the longest idle time among the candidates (the longest idle scores 1).
- affinity = 1 for the task's preferred worker and for the customer's last agent.
- load = the share of the worker's capacity in use.
Ties go to the lowest row, so the result is deterministic."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from router.core.columns import BoolArray, IntArray, WorkerColumns
from router.core.limits import SKILL_LEVEL_MAX
from router.core.model import ScoringWeights

REPEAT_NEED_STEP = 0.25
"""How much each recent earlier contact adds to a customer's need for empathy."""
REPEAT_CONTACTS_COUNTED_MAX = 2
REPEAT_CONTACT_WINDOW_MS = 24 * 3600 * 1000


def empathy_need(sentiment: float, repeat_contacts: int) -> float:
    """How much this customer needs an empathetic agent, 0 to 1."""
    repeats = min(repeat_contacts, REPEAT_CONTACTS_COUNTED_MAX)
    return min(1.0, max(0.0, -sentiment) + REPEAT_NEED_STEP * repeats)


@dataclass(frozen=True, slots=True, eq=False)
class Requirement:
    """A task's routing requirement resolved to column numbers, computed once per task."""

    channel_col: int
    required_cols: IntArray
    required_min: npt.NDArray[np.float32]
    fit_cols: IntArray
    """Required then preferred skill columns, for skill_fit."""
    fit_weights: npt.NDArray[np.float32]
    """Weights of fit_cols, summing to 1 (empty when the task names no skill)."""
    language_col: int
    """-1 when any language will do."""
    need: float

    @property
    def group_key(self) -> tuple[int, tuple[tuple[int, float], ...], int]:
        """Tasks with the same key have the same eligible workers within a queue (exclusions
        aside), so they wait together in one group."""
        required = tuple(zip(self.required_cols.tolist(), self.required_min.tolist(), strict=False))
        return (self.channel_col, required, self.language_col)


def make_requirement(
    *,
    channel_col: int,
    required: Iterable[tuple[int, float]],
    preferred: Iterable[tuple[int, float]],
    language_col: int,
    need: float,
) -> Requirement:
    required_sorted = sorted(required)
    preferred_list = list(preferred)
    fit_cols = [col for col, _ in required_sorted] + [col for col, _ in preferred_list]
    fit_weights = [1.0] * len(required_sorted) + [weight for _, weight in preferred_list]
    weight_sum = sum(fit_weights)
    return Requirement(
        channel_col=channel_col,
        required_cols=np.array([col for col, _ in required_sorted], dtype=np.intp),
        required_min=np.array([level for _, level in required_sorted], dtype=np.float32),
        fit_cols=np.array(fit_cols, dtype=np.intp),
        fit_weights=np.array(
            [w / weight_sum for w in fit_weights] if weight_sum > 0 else [], dtype=np.float32
        ),
        language_col=language_col,
        need=need,
    )


def eligible_rows(
    columns: WorkerColumns,
    requirement: Requirement,
    queue_members: BoolArray,
    excluded_rows: Iterable[int] = (),
) -> IntArray:
    """Rows of the workers who may be offered the task now (the hard constraints)."""
    n = columns.row_count
    mask = columns.ready[:n, requirement.channel_col] & queue_members[:n]
    rows: IntArray = np.flatnonzero(mask)
    if rows.size == 0:
        return rows
    if requirement.required_cols.size:
        levels = columns.skills[rows[:, None], requirement.required_cols]
        rows = rows[np.all(levels >= requirement.required_min, axis=1)]
    if requirement.language_col >= 0 and rows.size:
        rows = rows[columns.languages[rows, requirement.language_col]]
    excluded = [row for row in excluded_rows if row >= 0]
    if excluded and rows.size:
        rows = rows[~np.isin(rows, excluded)]
    return rows


def scores(
    columns: WorkerColumns,
    rows: IntArray,
    requirement: Requirement,
    weights: ScoringWeights,
    affinity_rows: Iterable[int],
    now_ms: int,
) -> npt.NDArray[np.float64]:
    """The score of each candidate row for the task."""
    total = np.zeros(rows.size, dtype=np.float64)
    if requirement.fit_cols.size and weights.skill:
        levels = columns.skills[rows[:, None], requirement.fit_cols]
        fit = np.clip(levels / SKILL_LEVEL_MAX, 0.0, 1.0) @ requirement.fit_weights
        total += weights.skill * fit
    if requirement.need > 0 and weights.empathy:
        total += weights.empathy * requirement.need * columns.empathy[rows]
    if weights.idle:
        idle_ms = np.maximum(now_ms - columns.idle_since_ms[rows], 0).astype(np.float64)
        longest = idle_ms.max()
        if longest > 0:
            total += weights.idle * (idle_ms / longest)
    if weights.affinity:
        for row in affinity_rows:
            total[rows == row] += weights.affinity
    if weights.load:
        total += weights.load * (1.0 - columns.load_share[rows])
    return total


def best_row(
    columns: WorkerColumns,
    requirement: Requirement,
    queue_members: BoolArray,
    weights: ScoringWeights,
    *,
    excluded_rows: Iterable[int],
    affinity_rows: Iterable[int],
    now_ms: int,
) -> int | None:
    """The row of the best eligible worker for the task, or None when nobody is eligible."""
    rows = eligible_rows(columns, requirement, queue_members, excluded_rows)
    if rows.size == 0:
        return None
    if rows.size == 1:
        return int(rows[0])
    candidate_scores = scores(columns, rows, requirement, weights, affinity_rows, now_ms)
    return int(rows[int(np.argmax(candidate_scores))])
