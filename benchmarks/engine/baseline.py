"""The naive pure-Python router (`benchmarks.naive`) making the same decisions on a mirror of the
same state: its speed, and whether it agrees with the engine."""

from __future__ import annotations

import math
import time

from benchmarks import naive
from benchmarks.engine.measurement import DECISION_STEP_MS, Run, _timed
from benchmarks.engine.workload import CHAT, VOICE, SteadyState
from router.core import commands as cmd
from router.core.model import (
    TaskRecord,
)

# -- the baseline on the same state ----------------------------------------------------------------

BASELINE_TIME_BUDGET_S = 20.0
"""The baseline stops early (after at least `BASELINE_DECISIONS_MIN`) past this much time."""
BASELINE_DECISIONS_MIN = 20
TIE_SCORE_TOLERANCE = 1e-5
"""Two scores closer than this are a tie (the engine scores in float32, the baseline in float64)."""


class NaiveMirror:
    """The baseline's plain-Python copy of the engine's state, kept in step after each
    decision (outside the timed region) by re-reading what the decision changed."""

    def __init__(self, state: SteadyState) -> None:
        self.state = state
        engine = state.engine
        profiles = state.profile_by_id
        self.workers: list[naive.NaiveWorker] = []
        for record in sorted(engine.workers.values(), key=lambda w: w.row):
            profile = profiles[record.worker_id]
            teams = frozenset(profile.attributes["teams"])
            self.workers.append(
                naive.NaiveWorker(
                    worker_id=record.worker_id,
                    row=record.row,
                    available=engine.activities[record.activity],
                    skills=dict(profile.skills),
                    languages=frozenset(profile.languages),
                    empathy=profile.empathy,
                    capacity_by_channel=dict(profile.capacity_by_channel),
                    cost_by_channel=dict(profile.cost_by_channel),
                    total_capacity=profile.total_capacity,
                    queue_ids=frozenset(q for q in engine.queues if q in teams),
                    idle_since_ms=record.idle_since_ms,
                    load_by_channel=dict(record.load_by_channel),
                )
            )
        self.worker_by_id = {w.worker_id: w for w in self.workers}
        self.waiting = naive.WaitingList(
            self.naive_task(engine.tasks[task_id])
            for queue_id in engine.queues
            for task_id in engine.waiting.task_ids(queue_id)
        )

    @staticmethod
    def naive_task(record: TaskRecord, task_id: str = "") -> naive.NaiveTask:
        spec = record.spec
        return naive.NaiveTask(
            task_id=task_id or record.task_id,
            seq=record.seq,
            queue_id=spec.queue_id,
            channel=spec.channel,
            required_skills=spec.required_skills,
            preferred_skills=spec.preferred_skills,
            language=spec.language,
            priority=spec.priority,
            created_ms=record.created_ms,
            sentiment=spec.sentiment,
            repeat_contacts=record.repeat_contacts,
            excluded_worker_ids=record.excluded_worker_ids,
        )

    def sync_worker(self, worker_id: str) -> None:
        record = self.state.engine.workers[worker_id]
        mirrored = self.worker_by_id[worker_id]
        mirrored.load_by_channel = dict(record.load_by_channel)
        mirrored.idle_since_ms = record.idle_since_ms

    def sync_new_tasks(self, created_before: int) -> None:
        """Mirrors the tasks created through the state since it had created `created_before`:
        adds those that wait, and syncs the workers of those that were offered."""
        engine = self.state.engine
        for task_id in self.state.created_task_ids[created_before:]:
            record = engine.tasks.get(task_id)
            if record is None:
                continue
            if task_id in engine.waiting:
                self.waiting.add(self.naive_task(record))
            elif record.worker_id:
                self.sync_worker(record.worker_id)


def compare_task_arrives(state: SteadyState, decisions: int) -> Run:
    """The baseline routing arriving chat tasks on the same state, checked against the engine."""
    mirror = NaiveMirror(state)
    run = Run()
    weights_by_queue = {q: c.weights for q, c in state.engine.queues.items()}
    started = time.perf_counter()
    while run.decisions < decisions and not _over_budget(run, started):
        spec = state.source.next_spec(CHAT)
        state.advance(DECISION_STEP_MS)
        arriving = naive.NaiveTask(
            task_id="arriving",
            seq=0,
            queue_id=spec.queue_id,
            channel=spec.channel,
            required_skills=spec.required_skills,
            preferred_skills=spec.preferred_skills,
            language=spec.language,
            priority=spec.priority,
            created_ms=state.now_ms,
            sentiment=spec.sentiment,
        )
        weights, now_ms = weights_by_queue[spec.queue_id], state.now_ms
        choice, elapsed_ns = _timed(
            None,
            lambda: naive.best_worker_for(mirror.workers, arriving, weights, now_ms),  # noqa: B023
        )
        run.record(elapsed_ns)
        run.candidates_total += len(choice.score_by_worker_id)
        created = state.apply(cmd.CreateTask(spec))
        engine_worker_id = state.restore_after_arrival(created)
        naive_worker_id = choice.worker.worker_id if choice.worker else None
        run.offered += naive_worker_id is not None
        run.compared += 1
        if engine_worker_id == naive_worker_id:
            run.agreed += 1
            run.agreed_exactly += 1
        elif engine_worker_id is not None and naive_worker_id is not None:
            best = choice.score_by_worker_id[naive_worker_id]
            engine_score = choice.score_by_worker_id.get(engine_worker_id, -math.inf)
            run.agreed += abs(best - engine_score) <= TIE_SCORE_TOLERANCE
        if engine_worker_id is not None:
            mirror.sync_worker(engine_worker_id)
    return run


def compare_worker_frees(state: SteadyState, decisions: int) -> Run:
    """The baseline serving freed workers on the same state, checked against the engine."""
    mirror = NaiveMirror(state)
    run = Run()
    busy = state.busy_worker_ids()
    started = time.perf_counter()
    while run.decisions < decisions and not _over_budget(run, started):
        worker_id = busy[state.rng.randrange(len(busy))]
        engine = state.engine
        task_id = state.voice_task_by_worker_id[worker_id]
        state.advance(DECISION_STEP_MS)
        # The baseline sees the worker as the engine will right after the completion.
        freed = mirror.worker_by_id[worker_id]
        freed.load_by_channel[VOICE] -= 1
        if not freed.load_by_channel[VOICE]:
            del freed.load_by_channel[VOICE]
        if len(engine.workers[worker_id].task_ids) == 1:
            freed.idle_since_ms = state.now_ms
        choice, elapsed_ns = _timed(None, lambda: mirror.waiting.best_task_for(freed))  # noqa: B023
        run.record(elapsed_ns)
        created_before = len(state.created_task_ids)
        state.apply(cmd.CompleteTask(task_id))
        offered = state.restore_after_free(worker_id, engine.take_events())
        run.offered += choice is not None
        run.compared += 1
        naive_task_id = choice.task_id if choice is not None else None
        run.agreed += offered == naive_task_id
        run.agreed_exactly += offered == naive_task_id
        if offered is not None:
            record = engine.tasks[offered]
            mirror.waiting.remove(offered, mirror.naive_task(record).order_key)
        mirror.sync_new_tasks(created_before)
        mirror.sync_worker(worker_id)
    return run


def _over_budget(run: Run, started: float) -> bool:
    return (
        run.decisions >= BASELINE_DECISIONS_MIN
        and time.perf_counter() - started > BASELINE_TIME_BUDGET_S
    )
