"""Writes the upgrade fixture: a small data folder (the embedded Redis' append-only files, holding
a snapshot and a journal after it) made by this checkout, and the state digest it holds.

Run once with the code whose format the fixture pins, then commit the folder:

    python scripts/make_upgrade_fixture.py tests/upgrade/data-v3

`tests/upgrade/test_recover_older_data.py` starts the current router on a copy of that folder and
requires the same digest, so a change that misreads older journals or snapshots fails there.
The test clock is pinned so that recovery fires no timer the fixture did not fire.
"""

from __future__ import annotations

# First: importing router turns gRPC's fork handlers off, which must happen before gRPC loads.
import router  # noqa: F401

# isort: split
import argparse
import asyncio
import json
import shutil
import subprocess
from pathlib import Path

import grpc

from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import admin_service_pb2_grpc as agrpc
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router._proto.switchboard.v1 import worker_service_pb2_grpc as wgrpc
from router.server import ServerConfig, start_server

CLOCK_MS = 1_790_000_000_000
"""The test clock of both the fixture's router and the one that recovers it."""
SNAPSHOT_EVERY_COMMANDS = 12
"""Small, so that the folder holds a snapshot and a journal after it."""


async def _offer_of(workers: wgrpc.WorkerServiceStub, worker_id: str) -> str:
    """The reservation id of the offer a worker holds, read from its Connect stream."""
    call = workers.Connect()
    hello = wpb.ConnectRequest.Hello(worker_id=worker_id)
    await call.write(wpb.ConnectRequest(request_id="hello", hello=hello))
    try:
        while True:
            response = await asyncio.wait_for(call.read(), 5)
            if response.WhichOneof("kind") == "offer":
                return str(response.offer.reservation_id)
    finally:
        call.cancel()


async def build(data_dir: Path) -> dict[str, object]:
    config = ServerConfig(
        port=0,
        metrics_port=None,
        test_clock=True,
        test_clock_start_ms=CLOCK_MS,
        data_dir=data_dir,
        snapshot_every_commands=SNAPSHOT_EVERY_COMMANDS,
    )
    server = await start_server(config)
    while not server.service.is_leader:
        await asyncio.sleep(0.01)
    async with grpc.aio.insecure_channel(server.address) as channel:
        admin = agrpc.AdminServiceStub(channel)
        tasks = tgrpc.TaskServiceStub(channel)
        workers = wgrpc.WorkerServiceStub(channel)
        for queue_id, expression in (("support", ""), ("billing", "skills.billing >= 2")):
            queue = pb.Queue(queue_id=queue_id, reservation_timeout_s=60, wrapup_s=30)
            if expression:
                queue.target_expression = expression
            await admin.UpsertQueue(apb.UpsertQueueRequest(queue=queue))
        people = {"ana": (0.9, {"billing": 4.0}), "ben": (0.3, {"billing": 1.0})}
        for worker_id, (empathy, skills) in people.items():
            worker = pb.Worker(
                worker_id=worker_id,
                display_name=worker_id.title(),
                skills=skills,
                empathy=empathy,
                capacity_by_channel={"voice": 1, "chat": 2},
                activity="available",
            )
            await workers.UpsertWorker(wpb.UpsertWorkerRequest(worker=worker))
        created = []
        for number in range(8):
            task = pb.Task(
                channel="chat" if number % 2 else "voice",
                queue_id="billing" if number % 3 == 0 else "support",
                priority=number % 3,
                sentiment=-0.8 if number % 4 == 0 else 0.2,
                customer_id=f"customer-{number % 5}",
            )
            task.attributes.update({"order": f"A-{number}", "vip": number == 5})
            reply = await tasks.CreateTask(
                tpb.CreateTaskRequest(task=task, client_request_id=f"create-{number}")
            )
            created.append(reply.task.task_id)
        accepted = await workers.AcceptOffer(
            wpb.AcceptOfferRequest(worker_id="ana", reservation_id=await _offer_of(workers, "ana"))
        )
        await tasks.CompleteTask(tpb.CompleteTaskRequest(task_id=accepted.task.task_id))
        await tasks.CancelTask(tpb.CancelTaskRequest(task_id=created[-1]))
        await tasks.UpdateTask(tpb.UpdateTaskRequest(task_id=created[-2], priority=7))
        await asyncio.sleep(2)  # the background snapshot saves
        digest = await admin.GetStateDigest(apb.GetStateDigestRequest())
    await server.stop(0.5)
    return {
        "clock_ms": CLOCK_MS,
        "digest": digest.digest,
        "tasks": digest.tasks,
        "workers": digest.workers,
        "made_by_commit": subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where to write the fixture (replaced)")
    folder: Path = parser.parse_args().folder
    shutil.rmtree(folder, ignore_errors=True)
    data_dir = folder / "data"
    expected = asyncio.run(build(data_dir))
    for leftover in data_dir.glob("*.lock"):
        leftover.unlink()
    (folder / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    print(json.dumps(expected))


if __name__ == "__main__":
    main()
