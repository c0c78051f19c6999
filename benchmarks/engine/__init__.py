"""Engine benchmark: routing decisions per second and the latency of one decision.

    python -m benchmarks.engine --quick            # 10k workers x 100k waiting tasks, plain
                                                   # and through a routing policy, < 60 s
    python -m benchmarks.engine                    # 1k/10k/100k workers x 10k/100k waiting,
                                                   # 100k workers x 1M waiting (memory), and
                                                   # the policy case at 10k x 100k
    python -m benchmarks.engine --json bench.json  # also write the results as JSON
    python -m benchmarks.engine --profile          # cProfile of the decisions (10k x 100k)
    python -m benchmarks.engine --profile policy   # the same, for the policy case

Each case builds a realistic steady state in a fresh subprocess (so that `rss_mb` is that
state's memory) and measures two events, each decision timed alone with `perf_counter_ns`:

- `task_arrives`: a chat task arrives (a `CreateTask`): the engine checks every worker, scores
  the eligible ones and offers the task to the best. The state has a voice backlog (every
  available worker holds a voice call, so the voice tasks wait) while the workers' chat capacity
  is free, so the arriving chat task has many eligible workers. The offered task is canceled
  afterwards, outside the timed region.
- `worker_frees`: a worker completes its voice call (`CompleteTask`, no wrap-up): the engine
  picks the best waiting task this worker is eligible for among the whole backlog and offers it.
  Outside the timed region the offer is accepted (the worker is busy again) and a new voice task
  joins the backlog, so that the backlog keeps its size.

Tasks come from a catalog of a few hundred task types (queue x channel x 1 to 3 required skills
with minimum levels x optional language x priority), drawn with skewed popularity as IVR menus
produce them. The same decisions are made by a naive pure-Python router (`benchmarks.naive`) on
the same state; the two must agree on the chosen worker or task (ties aside).

The policy case (`"policy": true` in the JSON; the plain cases have `"policy": false`) builds
the same steady state, at the same size, with every task, backlog and arriving alike, created
with `TaskSpec(policy_id=...)` and no queue: a routing policy (`routing_policy()`) of 10 filters
over 4 task attributes (`department`, `customer.tier`, `intent`, `region`) and a default route,
each route with 3 steps: 20 s with high minimum levels of the queue's general skill and a worker
expression over 4 worker attributes (`team`, `tier`, `site`, `senior`), then 40 s with lower
levels, then anyone in the queue (at a priority one higher). The backlog is created over
`POLICY_BACKLOG_SPAN_MS` of router clock (each task keeps its creation time), so that its tasks
are spread over the 3 steps, and every filter and the default route have traffic
(`backlog_by_route`). It then keeps flowing as the clock advances, outside the timed calls: a
voice task arrives (and the longest waiting one abandons) every millisecond at 100k waiting
(`backlog_flow_per_s`), so that the spread over the steps holds through the measurement
(`backlog_by_step`, at the start of each event's) and the steps' timeouts keep firing between
decisions, as they would in a service. The two events are measured exactly as in the plain
case. The naive baseline is not run on it (it would have to mirror each task's
current step: its raised levels, the worker expression, the step's priority, and the steps'
timeouts as the clock advances): its fields (`baseline_*`, `speedup_vs_baseline`, `agreement*`,
`eligible_workers_mean`) are null. Its target is relative: at 10k x 100k, at least half the
decisions per second of the plain case for the same event (`decisions_per_s_vs_plain`), and a
p99 of at most 2 ms.

`decisions_per_s` is the number of decisions over the time spent inside the timed calls (the
engine's single writer doing nothing but these decisions); `p50_ms` and `p99_ms` are over the
individual decisions. The timers that fell due since the previous decision (step timeouts, the
expiry of answered offers, ...) are fired by a `Tick` just before each timed call, outside the
timed region, as the service ticks when the next timer falls due: a decision's time is the
decision's alone. Python's garbage collector stays on, as in the service.

The package: `workload` (the center, the policy, the steady states), `measurement` (timing the
engine's decisions), `baseline` (the naive router on the same state), `harness` (one case, in
this process or a fresh one), `report` (targets and the table) and `__main__` (the command).
"""

from benchmarks.engine.baseline import NaiveMirror, compare_task_arrives, compare_worker_frees
from benchmarks.engine.harness import (
    BASELINE_FIELDS,
    FULL_CASES,
    QUICK_CASES,
    CaseSize,
    baseline_fields,
    build_state,
    run_case,
    run_case_in_subprocess,
)
from benchmarks.engine.measurement import Run, measure_task_arrives, measure_worker_frees
from benchmarks.engine.report import plain_counterpart, print_table, targets, vs_plain
from benchmarks.engine.workload import (
    POLICY_RULES,
    PolicySteadyState,
    SteadyState,
    TaskSource,
    build_catalog,
    policy_route_names,
    queue_configs,
    routing_policy,
    worker_profiles,
)
from benchmarks.workload import SKILL_COUNT

__all__ = [
    "BASELINE_FIELDS",
    "FULL_CASES",
    "POLICY_RULES",
    "QUICK_CASES",
    "SKILL_COUNT",
    "CaseSize",
    "NaiveMirror",
    "PolicySteadyState",
    "Run",
    "SteadyState",
    "TaskSource",
    "baseline_fields",
    "build_catalog",
    "build_state",
    "compare_task_arrives",
    "compare_worker_frees",
    "measure_task_arrives",
    "measure_worker_frees",
    "plain_counterpart",
    "policy_route_names",
    "print_table",
    "queue_configs",
    "routing_policy",
    "run_case",
    "run_case_in_subprocess",
    "targets",
    "vs_plain",
    "worker_profiles",
]
