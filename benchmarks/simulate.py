"""Does smarter routing serve customers better? A discrete-event simulation in virtual time that
drives Switchboard's real core (no sockets, no sleeping) against documented baselines.

    python -m benchmarks.simulate [--quick | --tiny] [--json PATH] [--plot DIR]
                                  [--seeds N] [--agents N]

1. Validation: single-skill M/M/c queues without abandonment, run through the real core,
   compared with the Erlang C formulas and with ciw (an independent simulator) on the same case.
2. Policies on identical traces: a seeded multi-skill center (benchmarks/simulation/center.py),
   customers who hang up when kept waiting, and an outcome model in which resolution and handle
   time depend on the agent's skill level and an upset customer fares worse with a low-empathy
   agent (benchmarks/simulation/outcomes.py). Each policy replays the same traces, one per seed;
   every figure is a mean over seeds with its 95% confidence interval.
3. The specialist case (benchmarks/simulation/specialist.py): a share of contacts needs a skill
   that first-contact agents lack; routing them to the right agent at once against routing
   anywhere and transferring (`TransferTask`, keeping the contact's age) or completing and
   re-creating the task (TaskRouter's documented pattern): transfer rate, first-contact
   resolution and the customer's total time.
4. Dead agents (benchmarks/simulation/dead_agents.py): 20 agents at 70% occupancy for one hour,
   k of whose desktops die at the start without a goodbye: without presence each offer to them
   waits out its timeout; with presence (`PresenceLost` as the stream drops) they go offline after
   the grace; against no dead agents and simply k fewer agents.
5. Speed: simulated contacts per second through the real core, on one core.

See benchmarks/README.md for the model, the baselines' sources and how to read the results."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from benchmarks.simulation.baselines import BASELINES
from benchmarks.simulation.center import NEED_SHARE, Agent, make_agents, make_trace
from benchmarks.simulation.dead_agents import compare as compare_dead_agents
from benchmarks.simulation.dead_agents import verdict as dead_agents_verdict
from benchmarks.simulation.des import replay
from benchmarks.simulation.erlang import ciw_waits_for_trace, erlang_c
from benchmarks.simulation.metrics import SERVICE_LEVEL_S, over_seeds, summarise
from benchmarks.simulation.routers import EngineRouter, Router, experts_first_policy
from benchmarks.simulation.specialist import Policy as SpecialistPolicy
from benchmarks.simulation.specialist import compare as compare_specialist
from router.core.model import ScoringWeights

START_MS = 1_800_000_000_000
CENTER_SEED = 2026
MEAN_WORK_S = 240.0
MEAN_PATIENCE_S = 180.0
OFFERED_LOAD_PER_AGENT = 1.03
"""Erlangs per agent at an average (level 3) agent's speed. Routing to skilled agents shortens
calls, so the center runs near the usual 80/20 service level rather than overloaded."""
EXPERT_LEVEL = 3
EXPERT_WAIT_S = 10.0
SL_TOLERANCE = 0.02
"""`switchboard` may trade at most 2 points of service level for its quality."""


@dataclass(frozen=True)
class Scale:
    agents: int
    contacts: int
    """Per seed and policy."""
    seeds: int
    erlang_contacts: int
    """Per M/M/c run."""
    replications: int
    """Independent M/M/c runs per case."""
    dead_agent_seeds: int
    """One-hour traces of the dead-agent case (20 agents whatever `agents` says)."""
    specialist_agents: int
    """The specialist case's center: a smaller one than `agents`, where specialists are few
    enough that their queue forms (in a large pool every contact is answered at once)."""
    specialist_contacts: int
    """Per seed and policy of the specialist case (its seeds are `seeds`)."""


SCALES = {
    "tiny": Scale(
        agents=20,
        contacts=600,
        seeds=2,
        erlang_contacts=2_000,
        replications=2,
        dead_agent_seeds=3,
        specialist_agents=20,
        specialist_contacts=600,
    ),
    "quick": Scale(
        agents=200,
        contacts=12_000,
        seeds=6,
        erlang_contacts=20_000,
        replications=3,
        dead_agent_seeds=20,
        specialist_agents=40,
        specialist_contacts=4_000,
    ),
    "full": Scale(
        agents=200,
        contacts=40_000,
        seeds=10,
        erlang_contacts=100_000,
        replications=5,
        dead_agent_seeds=40,
        specialist_agents=40,
        specialist_contacts=10_000,
    ),
}
ERLANG_CASES = ((5, 3.5), (10, 8.0), (25, 22.0))
"""(agents, offered load in Erlangs): occupancy 0.70, 0.80 and 0.88."""
ERLANG_HANDLE_S = 180.0
ERLANG_FIGURES = (("p_wait", ""), ("service_level", ""), ("asa", "_s"))
"""The figures compared with theory, and their unit suffix."""
ERLANG_TOLERANCE_PCT = 2.0

RouterFactory = Callable[[Sequence[Agent]], Router]


def policies() -> dict[str, RouterFactory]:
    """The policies compared, by name: ours first, then the baselines (baselines.py)."""
    workflow = experts_first_policy(list(NEED_SHARE), EXPERT_LEVEL, EXPERT_WAIT_S)
    ours: dict[str, RouterFactory] = {
        "switchboard": lambda agents: EngineRouter(agents, ScoringWeights(), START_MS, workflow),
        "switchboard_no_empathy": lambda agents: EngineRouter(
            agents, ScoringWeights(empathy=0.0), START_MS, workflow
        ),
    }
    return ours | {name: _starting(make) for name, make in BASELINES.items()}


def _starting(make: Callable[[Sequence[Agent], int], Router]) -> RouterFactory:
    return lambda agents: make(agents, START_MS)


# == validation against theory =====================================================================


def erlang_case(agents: int, load_erlangs: float, contacts: int, replications: int
                ) -> dict[str, Any]:  # fmt: skip
    """One M/M/c case: `replications` independent runs through the real core against the
    Erlang C formulas, and the first run's sample path through ciw, customer by customer."""
    staff = [Agent(i, {"support": 3}, empathy=0.5) for i in range(agents)]  # level 3: x 1.0
    runs = []
    for seed in range(1, replications + 1):
        trace = make_trace(
            contacts,
            load_erlangs / ERLANG_HANDLE_S,
            seed,
            mean_work_s=ERLANG_HANDLE_S,
            mean_patience_s=None,
            need_share={"support": 1.0},
            exponential_work=True,
            start_ms=START_MS,
        )
        outcomes = replay(trace, staff, EngineRouter(staff, ScoringWeights(), START_MS))
        runs.append(summarise(outcomes))
        if seed == 1:
            waits_s = outcomes.wait_ms / 1000
            ciw_waits = ciw_waits_for_trace(trace, staff, START_MS)
            ciw_max_difference_s = max(abs(a - b) for a, b in zip(waits_s, ciw_waits, strict=True))
    theory = erlang_c(agents, load_erlangs, ERLANG_HANDLE_S, SERVICE_LEVEL_S)
    sim = over_seeds(runs)
    row: dict[str, Any] = {
        "agents": agents,
        "offered_load_erlangs": load_erlangs,
        "contacts": contacts,
        "replications": replications,
    }
    for key, theory_value, unit in (
        ("service_level", theory.service_level, ""),
        ("asa", theory.asa_s, "_s"),
        ("p_wait", theory.p_wait, ""),
    ):
        mean, half_width = sim["asa_s" if key == "asa" else key]
        row[f"{key}_sim{unit}"] = mean
        row[f"{key}_sim_ci95{unit}"] = half_width
        row[f"{key}_theory{unit}"] = theory_value
    for key, unit in ERLANG_FIGURES:
        deviation = abs(row[f"{key}_sim{unit}"] - row[f"{key}_theory{unit}"])
        row[f"{key}_deviation_pct"] = 100 * deviation / row[f"{key}_theory{unit}"]
    row["theory_inside_ci95"] = all(
        abs(row[f"{key}_sim{unit}"] - row[f"{key}_theory{unit}"]) <= row[f"{key}_sim_ci95{unit}"]
        for key, unit in ERLANG_FIGURES
    )
    row["ciw_same_path_max_difference_s"] = ciw_max_difference_s
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}


# == policies on identical traces ==================================================================


@dataclass
class PolicyRuns:
    runs: dict[str, list[dict[str, float]]]
    engine_contacts: int
    engine_s: float


def compare_policies(scale: Scale, progress: Progress) -> PolicyRuns:
    agents = make_agents(scale.agents, CENTER_SEED)
    arrival_rate_per_s = OFFERED_LOAD_PER_AGENT * scale.agents / MEAN_WORK_S
    named = policies()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in named}
    engine_contacts, engine_s = 0, 0.0
    job = progress.add_task("policies", total=scale.seeds * len(named))
    for seed in range(1, scale.seeds + 1):
        trace = make_trace(
            scale.contacts,
            arrival_rate_per_s,
            seed,
            mean_work_s=MEAN_WORK_S,
            mean_patience_s=MEAN_PATIENCE_S,
            start_ms=START_MS,
        )
        for name, make_router in named.items():
            started_s = time.process_time()
            outcomes = replay(trace, agents, make_router(agents))
            if name.startswith("switchboard"):
                engine_contacts += len(trace)
                engine_s += time.process_time() - started_s
            runs[name].append(summarise(outcomes))
            progress.advance(job)
    return PolicyRuns(runs, engine_contacts, engine_s)


def policy_rows(runs: dict[str, list[dict[str, float]]]) -> list[dict[str, Any]]:
    rows = []
    for name, policy_runs in runs.items():
        figures = over_seeds(policy_runs)
        row: dict[str, Any] = {"policy": name, "seeds": len(policy_runs)}
        for key in ("service_level", "asa_s", "abandon_rate", "resolution_rate", "csat"):
            mean, half_width = figures[key]
            row[key] = round(mean, 4)
            row[f"{key}_ci95"] = round(half_width, 4)
        rows.append(row)
    return rows


def verdict(
    rows: Sequence[dict[str, Any]],
    erlang: Sequence[dict[str, Any]],
    specialist: Sequence[dict[str, Any]],
    dead_agents: Sequence[dict[str, Any]],
) -> dict[str, bool]:
    """Whether the M/M/c runs are within ERLANG_TOLERANCE_PCT of theory on every figure;
    whether `switchboard` beats every baseline on resolution and satisfaction with
    non-overlapping 95% intervals, at a service level within SL_TOLERANCE of the best
    baseline's; and, in the specialist case, whether routing to the right agent at once beats
    routing anywhere then transferring on first-contact resolution and the customer's total
    time (non-overlapping intervals), and whether a transfer that keeps the contact's age gets
    it to a specialist sooner than re-creating the task; and, with k dead agents, whether
    presence brings the mean wait close to that of k fewer agents and far below the wait
    without presence (dead_agents.verdict)."""
    ours = next(r for r in rows if r["policy"] == "switchboard")
    baselines = [r for r in rows if r["policy"] in BASELINES]

    def clear_win(key: str) -> bool:
        low = ours[key] - ours[f"{key}_ci95"]
        return all(low > r[key] + r[f"{key}_ci95"] for r in baselines)

    best_service_level = max(r["service_level"] for r in baselines)
    by_policy = {r["policy"]: r for r in specialist}
    right_first = by_policy[SpecialistPolicy.RIGHT_AGENT_FIRST.value]
    transfer = by_policy[SpecialistPolicy.ANYWHERE_THEN_TRANSFER.value]
    recreate = by_policy[SpecialistPolicy.ANYWHERE_THEN_RECREATE.value]

    def apart(high: dict[str, Any], low: dict[str, Any], key: str) -> bool:
        return bool(high[key] - high[f"{key}_ci95"] > low[key] + low[f"{key}_ci95"])

    return {
        "erlang_c_within_2pct": all(
            case[f"{key}_deviation_pct"] <= ERLANG_TOLERANCE_PCT
            for case in erlang
            for key, _ in ERLANG_FIGURES
        ),
        "resolution_beats_every_baseline": clear_win("resolution_rate"),
        "csat_beats_every_baseline": clear_win("csat"),
        "service_level_within_2_points": ours["service_level"] >= best_service_level - SL_TOLERANCE,
        "right_agent_first_resolves_more_at_first_contact": apart(
            right_first, transfer, "first_contact_resolution"
        ),
        "right_agent_first_shorter_total_time": apart(transfer, right_first, "total_s"),
        "transfer_keeps_age_reaches_specialist_sooner": (
            transfer["specialist_wait_s"] < recreate["specialist_wait_s"]
        ),
    } | dead_agents_verdict(dead_agents)


# == the command ===================================================================================


def print_tables(
    console: Console,
    erlang: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
    specialist: Sequence[dict[str, Any]],
    dead_agents: Sequence[dict[str, Any]],
) -> None:
    table = Table(title="M/M/c through the real core (mean ± 95% CI) vs Erlang C")
    for column in ("agents", "load E", "P(wait) sim", "theory", "SL 20 s sim", "theory",
                   "ASA s sim", "theory", "vs ciw, same path"):  # fmt: skip
        table.add_column(column, justify="right")
    for r in erlang:
        table.add_row(
            str(r["agents"]),
            f"{r['offered_load_erlangs']:g}",
            f"{r['p_wait_sim']:.3f} ± {r['p_wait_sim_ci95']:.3f}",
            f"{r['p_wait_theory']:.3f}",
            f"{r['service_level_sim']:.3f} ± {r['service_level_sim_ci95']:.3f}",
            f"{r['service_level_theory']:.3f}",
            f"{r['asa_sim_s']:.1f} ± {r['asa_sim_ci95_s']:.1f}",
            f"{r['asa_theory_s']:.1f}",
            f"max {r['ciw_same_path_max_difference_s'] * 1000:.0f} ms apart",
        )
    console.print(table)
    table = Table(title="Policies on identical traces (mean ± 95% CI over seeds)")
    for column in ("policy", "service level", "ASA s", "abandoned", "resolved", "CSAT (1-5)"):
        table.add_column(column, justify="right" if column != "policy" else "left")
    for r in rows:
        table.add_row(
            r["policy"],
            f"{r['service_level']:.1%} ± {r['service_level_ci95']:.1%}",
            f"{r['asa_s']:.1f} ± {r['asa_s_ci95']:.1f}",
            f"{r['abandon_rate']:.1%} ± {r['abandon_rate_ci95']:.1%}",
            f"{r['resolution_rate']:.1%} ± {r['resolution_rate_ci95']:.1%}",
            f"{r['csat']:.3f} ± {r['csat_ci95']:.3f}",
        )
    console.print(table)
    table = Table(title="The specialist case: right agent first, or transfer (mean ± 95% CI)")
    for column in ("policy", "transferred", "first-contact resolved", "resolved",
                   "first wait s", "wait for specialist s", "total time s", "p90 s",
                   "disputes' total s"):  # fmt: skip
        table.add_column(column, justify="right" if column != "policy" else "left")
    for r in specialist:
        table.add_row(
            str(r["policy"]),
            f"{r['transfer_rate']:.1%} ± {r['transfer_rate_ci95']:.1%}",
            f"{r['first_contact_resolution']:.1%} ± {r['first_contact_resolution_ci95']:.1%}",
            f"{r['resolution_rate']:.1%} ± {r['resolution_rate_ci95']:.1%}",
            f"{r['first_wait_s']:.1f} ± {r['first_wait_s_ci95']:.1f}",
            f"{r['specialist_wait_s']:.1f} ± {r['specialist_wait_s_ci95']:.1f}",
            f"{r['total_s']:.1f} ± {r['total_s_ci95']:.1f}",
            f"{r['total_p90_s']:.0f} ± {r['total_p90_s_ci95']:.0f}",
            f"{r['dispute_total_s']:.1f} ± {r['dispute_total_s_ci95']:.1f}",
        )
    console.print(table)
    table = Table(title="Dead agents: 20 agents at 70% occupancy, one hour (mean ± 95% CI)")
    for column in ("variant", "agents", "dead", "presence", "mean wait s", "p90 wait s",
                   "worst wait s", "worst of all s", "offers timed out"):  # fmt: skip
        table.add_column(column, justify="right" if column != "variant" else "left")
    for r in dead_agents:
        table.add_row(
            str(r["variant"]),
            f"{r['agents']:.0f}",
            f"{r['dead']:.0f}",
            "yes" if r["presence"] else "no",
            f"{r['mean_wait_s']:.1f} ± {r['mean_wait_s_ci95']:.1f}",
            f"{r['p90_wait_s']:.1f} ± {r['p90_wait_s_ci95']:.1f}",
            f"{r['worst_wait_s']:.0f} ± {r['worst_wait_s_ci95']:.0f}",
            f"{r['worst_wait_max_s']:.0f}",
            f"{r['timed_out_share']:.1%} ± {r['timed_out_share_ci95']:.1%}",
        )
    console.print(table)


@contextmanager
def _progress(console: Console) -> Iterator[Progress]:
    with Progress(console=console, transient=True, disable=not console.is_terminal) as progress:
        yield progress


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.simulate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = parser.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", action="store_true", help="6 seeds of 12,000 contacts, shorter M/M/c runs"
    )
    size.add_argument("--tiny", action="store_true", help="a few seconds: proves it runs")
    parser.add_argument("--seeds", type=int, help="independent traces per policy")
    parser.add_argument("--agents", type=int, help="agents in the simulated center")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument("--plot", type=Path, metavar="DIR", help="write the figures (PNG) here")
    args = parser.parse_args(argv)
    scale = SCALES["tiny" if args.tiny else "quick" if args.quick else "full"]
    if args.seeds is not None:
        if args.seeds < 2:
            parser.error("--seeds must be 2 or more (a confidence interval needs two)")
        scale = dataclasses.replace(scale, seeds=args.seeds, dead_agent_seeds=args.seeds)
    if args.agents is not None:
        if args.agents < 1:
            parser.error("--agents must be 1 or more")
        scale = dataclasses.replace(scale, agents=args.agents)
    # Off a terminal (a log, CI), rich would wrap the tables at 80 columns.
    console = Console(width=None if sys.stdout.isatty() else 130)
    started_s = time.monotonic()
    with _progress(console) as progress:
        job = progress.add_task("M/M/c vs Erlang C", total=len(ERLANG_CASES))
        erlang = []
        for agents, load in ERLANG_CASES:
            erlang.append(erlang_case(agents, load, scale.erlang_contacts, scale.replications))
            progress.advance(job)
        compared = compare_policies(scale, progress)
        job = progress.add_task("specialist case", total=1)
        specialist = compare_specialist(
            scale.specialist_agents, scale.specialist_contacts, scale.seeds
        )
        progress.advance(job)
        job = progress.add_task("dead agents", total=1)
        dead_agents = compare_dead_agents(scale.dead_agent_seeds)
        progress.advance(job)
    rows = policy_rows(compared.runs)
    print_tables(console, erlang, rows, specialist, dead_agents)
    tasks_per_s = compared.engine_contacts / compared.engine_s
    checks = verdict(rows, erlang, specialist, dead_agents)
    console.print(
        f"real core: {tasks_per_s:,.0f} simulated contacts/s on one core "
        f"({tasks_per_s * 60:,.0f} a minute); whole run {time.monotonic() - started_s:.0f} s"
    )
    console.print("targets: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in checks.items()))
    if args.plot:
        from benchmarks.simulation.figures import plot_erlang, plot_policies

        args.plot.mkdir(parents=True, exist_ok=True)
        plot_policies(rows, args.plot / "simulate_policies.png")
        plot_erlang(erlang, args.plot / "simulate_erlang.png")
    if args.json:
        document = {
            "benchmark": "simulate",
            "scale": scale.__dict__,
            "simulated_tasks_per_s": round(tasks_per_s),
            "erlang_c": erlang,
            "policies": rows,
            "specialist": specialist,
            "dead_agents": dead_agents,
            "targets": checks,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
