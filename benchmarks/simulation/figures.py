"""The simulation's figures (PNG, matplotlib's Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

OURS_COLOR = "#1f6feb"
BASELINE_COLOR = "#8b949e"
THEORY_COLOR = "#2da44e"


def plot_policies(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """One panel per figure of merit: each policy's mean with its 95% interval."""
    panels = (
        ("resolution_rate", "resolved (share of answered)", 100),
        ("csat", "satisfaction (1-5)", 1),
        ("service_level", "answered within 20 s (share)", 100),
        ("abandon_rate", "abandoned (share)", 100),
    )
    names = [r["policy"] for r in rows]
    figure, axes = plt.subplots(2, 2, figsize=(11, 7), constrained_layout=True)
    for axis, (key, label, scale) in zip(axes.flat, panels, strict=True):
        # Points with error bars, not bars: the axis does not start at zero.
        for position, row in enumerate(rows):
            color = OURS_COLOR if row["policy"].startswith("switchboard") else BASELINE_COLOR
            axis.errorbar(row[key] * scale, position, xerr=row[f"{key}_ci95"] * scale,
                          fmt="o", color=color, capsize=4)  # fmt: skip
        axis.set_yticks(range(len(rows)), names)
        axis.invert_yaxis()
        axis.grid(axis="x", alpha=0.3)
        axis.set_title(label + (" %" if scale == 100 else ""))
    figure.suptitle("Policies on identical traces (mean, 95% CI over seeds)")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_erlang(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Per M/M/c case: P(wait), service level and ASA through the real core (mean and 95%
    interval over replications) next to the Erlang C value."""
    panels = (("P(wait)", "p_wait_sim", "p_wait_sim_ci95", "p_wait_theory"),
              ("service level (20 s)", "service_level_sim", "service_level_sim_ci95",
               "service_level_theory"),
              ("ASA (s)", "asa_sim_s", "asa_sim_ci95_s", "asa_theory_s"))  # fmt: skip
    cases = [f"{r['agents']} agents\n{r['offered_load_erlangs']:g} E" for r in rows]
    positions = list(range(len(rows)))
    width = 0.38
    figure, axes = plt.subplots(1, 3, figsize=(12, 4), constrained_layout=True)
    for axis, (label, sim, ci95, theory) in zip(axes, panels, strict=True):
        axis.bar([x - width / 2 for x in positions], [r[sim] for r in rows], width,
                 yerr=[r[ci95] for r in rows], capsize=3, color=OURS_COLOR,
                 label="Switchboard core")  # fmt: skip
        axis.bar([x + width / 2 for x in positions], [r[theory] for r in rows], width,
                 color=THEORY_COLOR, label="Erlang C")  # fmt: skip
        axis.set_xticks(positions, cases)
        axis.set_title(label)
    axes[0].legend()
    figure.suptitle("M/M/c without abandonment: the real core against Erlang C")
    figure.savefig(path, dpi=110)
    plt.close(figure)
