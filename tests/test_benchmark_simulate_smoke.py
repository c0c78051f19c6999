"""The routing-quality simulation: the baselines follow their documented rules, the Erlang C
formulas give known values, the real core agrees with ciw customer by customer on the same
sample path, and the command runs end to end in its tiny mode (no figure of merit asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.simulate import main
from benchmarks.simulation.baselines import BASELINES
from benchmarks.simulation.center import Agent, Contact, make_agents, make_trace
from benchmarks.simulation.dead_agents import START_MS, Variant, make_dead_agent_trace, variants
from benchmarks.simulation.dead_agents import run as run_dead_agents
from benchmarks.simulation.des import replay
from benchmarks.simulation.erlang import ciw_waits_for_trace, erlang_c
from benchmarks.simulation.routers import EngineRouter
from benchmarks.simulation.specialist import DISPUTES, make_specialist_trace, make_staff, run
from benchmarks.simulation.specialist import Policy as SpecialistPolicy
from router.core.model import ScoringWeights

BILLING = "billing"


def _contact(index: int, sentiment: float = 0.0) -> Contact:
    return Contact(index, index * 1000, BILLING, sentiment, None, 60.0, 0.5)


def _staff(*levels: int) -> list[Agent]:
    return [Agent(i, {BILLING: level}, empathy=0.5) for i, level in enumerate(levels)]


def _chosen(policy: str, agents: list[Agent], contacts: int, *, release: bool = True) -> list[int]:
    """The agent each of `contacts` successive contacts goes to; with `release`, each agent is
    free again before the next contact arrives."""
    router = BASELINES[policy](agents, 0)
    chosen = []
    for i in range(contacts):
        contact = _contact(i)
        [(_, agent_index)] = router.arrive(contact, i * 1000)
        chosen.append(agent_index)
        if release:
            router.release(agents[agent_index], contact, i * 1000 + 500)
    return chosen


def test_round_robin_remembers_where_it_left_off() -> None:
    assert _chosen("round_robin", _staff(1, 1, 1), 5) == [0, 1, 2, 0, 1]


def test_top_down_tiers_always_start_from_the_experts() -> None:
    assert _chosen("top_down_tiers", _staff(2, 5, 3), 3) == [1, 1, 1]
    assert _chosen("top_down_tiers", _staff(2, 5, 3), 3, release=False) == [1, 2, 0]


def test_acs_best_worker_takes_the_highest_level_and_longest_idle_breaks_ties() -> None:
    assert _chosen("acs_best_worker", _staff(2, 4, 4), 3) == [1, 2, 1]


def test_fewest_calls_and_longest_idle_spread_the_calls() -> None:
    assert _chosen("fewest_calls", _staff(5, 1, 1), 3) == [0, 1, 2]
    assert _chosen("longest_idle", _staff(5, 1, 1), 3) == [0, 1, 2]


def test_a_freed_agent_takes_the_oldest_waiting_contact_and_hang_ups_are_skipped() -> None:
    agents = _staff(3)
    router = BASELINES["longest_idle"](agents, 0)
    first, second, third = _contact(0), _contact(1), _contact(2)
    assert router.arrive(first, 0) == [(0, 0)]
    assert router.arrive(second, 1000) == []
    assert router.arrive(third, 2000) == []
    router.abandon(second, 3000)
    assert router.release(agents[0], first, 4000) == [(2, 0)]


def test_erlang_c_known_values() -> None:
    two_agents = erlang_c(2, 1.0, handle_s=1.0, threshold_s=0.0)
    assert two_agents.p_wait == pytest.approx(1 / 3)
    assert two_agents.asa_s == pytest.approx(1 / 3)
    # A textbook case: 10 agents, 8 Erlangs -> P(wait) 0.409.
    assert erlang_c(10, 8.0, 180.0, 20.0).p_wait == pytest.approx(0.4092, abs=1e-4)
    with pytest.raises(ValueError, match="offered load"):
        erlang_c(3, 3.0, 180.0, 20.0)


def test_the_real_core_and_ciw_give_every_customer_the_same_wait() -> None:
    staff = [Agent(i, {"support": 3}, empathy=0.5) for i in range(4)]
    trace = make_trace(
        3_000, 3.4 / 60, seed=5, mean_work_s=60.0, mean_patience_s=None,
        need_share={"support": 1.0}, exponential_work=True,
    )  # fmt: skip
    waits_ms = replay(trace, staff, EngineRouter(staff, ScoringWeights(), 0)).wait_ms
    theirs = ciw_waits_for_trace(trace, staff, start_ms=0)
    assert sum(w > 0 for w in theirs) > 1_000
    assert max(abs(ours / 1000 - t) for ours, t in zip(waits_ms, theirs, strict=True)) < 1e-6


def test_the_same_trace_meets_every_policy_and_every_contact_ends() -> None:
    agents = make_agents(30, seed=1)
    trace = make_trace(2_000, 30 / 240, seed=2, mean_work_s=240.0, mean_patience_s=120.0)
    for make in BASELINES.values():
        result = replay(trace, agents, make(agents, 0))
        answered = result.wait_ms >= 0
        assert 0 < answered.sum() < len(trace)  # some hang up at this load
        assert result.resolved[~answered].sum() == 0


def test_the_command_writes_its_json_and_figures(tmp_path: Path) -> None:
    out = tmp_path / "simulate.json"
    assert main(["--tiny", "--json", str(out), "--plot", str(tmp_path)]) == 0
    document = json.loads(out.read_text())
    assert document["benchmark"] == "simulate"
    assert document["simulated_tasks_per_s"] > 0
    assert [r["policy"] for r in document["policies"]] == [
        "switchboard", "switchboard_no_empathy", *BASELINES,
    ]  # fmt: skip
    for row in document["policies"]:
        assert {"service_level", "asa_s", "abandon_rate", "resolution_rate", "csat",
                "csat_ci95"} <= row.keys()  # fmt: skip
    for case in document["erlang_c"]:
        assert case["ciw_same_path_max_difference_s"] < 1e-6
        assert {
            "agents",
            "offered_load_erlangs",
            "service_level_sim",
            "service_level_theory",
            "asa_sim_s",
            "asa_theory_s",
            "p_wait_sim",
            "p_wait_theory",
        } <= case.keys()
    assert [r["policy"] for r in document["specialist"]] == [p.value for p in SpecialistPolicy]
    assert [r["variant"] for r in document["dead_agents"]] == [v.name for v in variants()]
    for row in document["dead_agents"]:
        assert {"mean_wait_s", "mean_wait_s_ci95", "p90_wait_s", "worst_wait_s",
                "worst_wait_max_s", "timed_out_share"} <= row.keys()  # fmt: skip
    assert {"presence_5_dead_close_to_5_fewer_agents",
            "presence_5_dead_far_below_no_presence"} <= document["targets"].keys()  # fmt: skip
    assert (tmp_path / "simulate_policies.png").stat().st_size > 10_000
    assert (tmp_path / "simulate_erlang.png").stat().st_size > 10_000


def test_the_specialist_case_transfers_only_when_routed_anywhere_and_keeps_every_contact() -> None:
    staff = make_staff(20, seed=1)
    trace = make_specialist_trace(1_500, 20, seed=3)
    disputes = np.array([c.need == DISPUTES for c in trace])
    results = {policy: run(trace, staff, policy) for policy in SpecialistPolicy}
    for result in results.values():
        assert (result.first_wait_ms >= 0).all()  # nobody hangs up in this case: all served
        assert (result.total_ms >= result.first_wait_ms).all()
        assert not result.transferred[~disputes].any()  # only disputes need a specialist
        assert (result.first_contact_resolved <= result.resolved).all()
    right_first = results[SpecialistPolicy.RIGHT_AGENT_FIRST]
    assert not right_first.transferred.any()
    transferred = results[SpecialistPolicy.ANYWHERE_THEN_TRANSFER].transferred
    # Disputes that met a generalist and were not resolved by the workaround moved on.
    assert 0 < transferred.sum() < disputes.sum()
    assert (results[SpecialistPolicy.ANYWHERE_THEN_TRANSFER].specialist_wait_ms[transferred] >= 0
            ).all()  # fmt: skip


def test_a_cold_transfer_keeps_the_contacts_place_where_a_new_task_loses_it() -> None:
    """At a load where specialists are busy, a transferred dispute waits less for one than a
    re-created task, which starts again behind every dispute that arrived since."""
    staff = make_staff(20, seed=1)
    trace = make_specialist_trace(3_000, 20, seed=4)
    transfer = run(trace, staff, SpecialistPolicy.ANYWHERE_THEN_TRANSFER)
    recreate = run(trace, staff, SpecialistPolicy.ANYWHERE_THEN_RECREATE)
    kept_age = transfer.specialist_wait_ms[transfer.transferred].mean()
    lost_age = recreate.specialist_wait_ms[recreate.transferred].mean()
    assert kept_age < lost_age


def test_offers_to_dead_agents_time_out_without_presence_and_stop_after_the_grace_with_it() -> None:
    """Two desktops die at the start. Without presence, every offer to them waits out its
    timeout (live agents accept at once, so those are the only offers that time out) and they
    stay available to the end; with presence, nothing reaches them after the grace (nor during
    it: a lost worker receives no new offers) and they end offline. Every contact is served."""
    trace = make_dead_agent_trace(seed=1)
    grace_s = 10.0
    without = run_dead_agents(trace, Variant("2_dead", 2), grace_s=grace_s)
    assert without.dead_offer_ms
    assert without.timed_out.sum() == len(without.dead_offer_ms)
    assert without.dead_activities == ["available", "available"]
    assert without.wait_ms.max() >= 30_000  # at least one reservation timeout waited out
    with_presence = run_dead_agents(trace, Variant("2_dead_presence", 2, presence=True),
                                    grace_s=grace_s)  # fmt: skip
    assert not [t for t in with_presence.dead_offer_ms if t >= START_MS + grace_s * 1000]
    assert with_presence.timed_out.sum() == 0
    assert with_presence.dead_activities == ["offline", "offline"]
    fewer = run_dead_agents(trace, Variant("2_fewer", 2, fewer=True))
    assert fewer.dead_activities == []
    for result in (without, with_presence, fewer):
        assert (result.wait_ms >= 0).all()
    assert with_presence.wait_ms.mean() < without.wait_ms.mean()
