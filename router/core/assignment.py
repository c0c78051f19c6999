"""Batch assignment: several waiting tasks and several free workers matched at once, as an
assignment problem that maximises the total score, instead of greedily task by task.

Greedy takes, for each task in order, its best worker, which can leave a later task with a
poor one when swapping the two would score more in total. The rounds here keep the queue's order
where it matters (who gets served: higher priority first, then the longest-waiting) and optimise
only who serves whom within that."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

INELIGIBLE: Final = -1e9
"""The score of a pair that may not be matched: below any sum of real scores, so the solver
first maximises how many pairs are matched, then their total score."""


def best_pairs(scores: npt.NDArray[np.float64]) -> list[tuple[int, int]]:
    """The (task, worker) pairs, at most one per row and per column, of the largest total
    score, leaving out the ineligible pairs. `scores[t, w]` is INELIGIBLE where task t may not
    go to worker w. Deterministic (the solver is)."""
    if scores.size == 0:
        return []
    rows, cols = linear_sum_assignment(scores, maximize=True)
    return [
        (int(t), int(w))
        for t, w in zip(rows.tolist(), cols.tolist(), strict=True)
        if scores[t, w] > INELIGIBLE / 2
    ]
