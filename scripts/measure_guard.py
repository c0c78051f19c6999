"""What the access check adds to each call, measured in this process: the bearer token's
verification (a look-up once cached, the signature check the first time) and the table's rule
with its scope (for the scopes, against an engine holding a worker and an assigned task).

    python scripts/measure_guard.py

A whole task lifecycle (three calls and the Connect stream's messages) costs the router 1.3 to
1.5 ms of CPU at saturation (benchmarks/README.md); the figures here say what share of it the
guard takes."""

from __future__ import annotations

import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router.api.access import ACCESS, refusal
from router.api.authn import AuthConfig, Role, TokenVerifier
from router.core import commands as cmd
from router.core.engine import Engine
from router.core.model import QueueConfig, TaskSpec, WorkerProfile
from router.mint import mint_token

SECRET = b"a-measurement-secret-of-thirty-two-bytes-or-more"
CALLS = 50_000


def _engine() -> tuple[Engine, str]:
    """An engine with a queue, the worker `ana` and a task offered to her."""
    engine = Engine()
    engine.apply(cmd.UpsertQueue(QueueConfig(queue_id="support")), 1)
    engine.apply(cmd.UpsertWorker(WorkerProfile(worker_id="ana", capacity_by_channel={"voice": 1},
                                                activity="available")), 2)  # fmt: skip
    created = engine.apply(cmd.CreateTask(TaskSpec(channel="voice", queue_id="support"), ""), 3)
    return engine, created.task.task_id


def _us(statement: object, number: int = CALLS) -> float:
    return 1e6 * timeit.timeit(statement, number=number) / number  # type: ignore[arg-type]


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        secret = Path(folder) / "secret"
        secret.write_bytes(SECRET)
        verifier = TokenVerifier(AuthConfig(hs256_secret_file=secret))
        token = mint_token(role=Role.AGENT, worker_id="ana", key=SECRET, algorithm="HS256")
        metadata = (("user-agent", "grpc-python"), ("authorization", f"Bearer {token}"))
        principal = verifier.principal(metadata)
        fresh = [mint_token(role=Role.AGENT, worker_id="ana", subject=f"s{n}", key=SECRET,
                            algorithm="HS256") for n in range(2_000)]  # fmt: skip
        uncached = iter(fresh)
        engine, task_id = _engine()
        rows = [
            ("token, cached", _us(lambda: verifier.principal(metadata))),
            ("token, first time (HS256)", _us(
                lambda: verifier.principal((("authorization", f"Bearer {next(uncached)}"),)),
                number=len(fresh))),
            ("rule: CreateTask (role only)", _us(lambda: refusal(
                ACCESS["/switchboard.v1.TaskService/CreateTask"], principal,
                tpb.CreateTaskRequest(), engine))),
            ("rule: GetTask (agent's task)", _us(lambda: refusal(
                ACCESS["/switchboard.v1.TaskService/GetTask"], principal,
                tpb.GetTaskRequest(task_id=task_id), engine))),
            ("rule: SetActivity (own worker)", _us(lambda: refusal(
                ACCESS["/switchboard.v1.WorkerService/SetActivity"], principal,
                wpb.SetActivityRequest(worker_id="ana"), engine))),
        ]  # fmt: skip
    print(f"{'check':<34} {'us per call':>12}")
    for name, us in rows:
        print(f"{name:<34} {us:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
