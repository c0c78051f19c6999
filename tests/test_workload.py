"""The one simulated center (`benchmarks.workload`): seeded, and the same values for the demo, its
fleet and the engine benchmark."""

from __future__ import annotations

import random

import numpy as np

from benchmarks import workload
from benchmarks.engine import workload as engine_workload


def test_one_seed_gives_the_same_agents_and_tasks() -> None:
    def draw(seed: int) -> tuple[list[bytes], list[dict[str, object]]]:
        agents = workload.AgentProfileFactory(seed).profiles(20)
        traffic = workload.Traffic(np.random.default_rng(seed), workload.QUEUES)
        return [a.SerializeToString(deterministic=True) for a in agents], [
            traffic.next_task() for _ in range(50)
        ]

    assert draw(3) == draw(3)
    assert draw(3) != draw(4)


def test_agents_can_serve_the_tasks_they_are_drawn_with() -> None:
    agents = workload.AgentProfileFactory(5).profiles(200)
    skills = {skill for agent in agents for skill in agent.skills}
    channels = {channel for agent in agents for channel in agent.capacity_by_channel}
    traffic = workload.Traffic(np.random.default_rng(5), workload.QUEUES)
    for _ in range(200):
        task = traffic.next_task()
        assert set(task["required_skills"]) <= skills
        assert task["channel"] in channels
    assert any(agent.attributes["senior"] for agent in agents)  # the VIP queue's target


def test_the_engine_benchmark_draws_from_the_same_center() -> None:
    assert engine_workload.DOMAIN_SKILLS is workload.DOMAIN_SKILLS
    assert engine_workload.SITES is workload.SITES
    for channel, capacity in engine_workload.WORKER_CAPACITY_BY_CHANNEL.items():
        assert capacity == workload.CHANNEL_CAPACITY_MAX[channel]
        assert engine_workload.WORKER_COST_BY_CHANNEL[channel] == workload.CHANNEL_COST[channel]
    # The customers' mood: the same draws from the same seed, whichever generator drives it.
    moods = [workload.draw_sentiment(random.Random(9)) for _ in range(3)]
    assert len(set(moods)) == 1
    many = [workload.draw_sentiment(np.random.default_rng(seed)) for seed in range(2000)]
    neutral = many.count(0.0) / len(many)
    assert abs(neutral - workload.NEUTRAL_SENTIMENT_SHARE) < 0.05
    assert min(many) >= workload.SENTIMENT_RANGE[0] and max(many) <= workload.SENTIMENT_RANGE[1]
