"""Quickstart: a front end creates a task, an agent desktop receives the offer and accepts it.

Run a router first (`make serve`), then: `.venv/bin/python examples/quickstart.py 127.0.0.1:50051`.
"""

from __future__ import annotations

import sys

import grpc

from router._proto.switchboard.v1 import admin_service_pb2 as admin
from router._proto.switchboard.v1 import admin_service_pb2_grpc as admin_grpc
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tasks
from router._proto.switchboard.v1 import task_service_pb2_grpc as tasks_grpc
from router._proto.switchboard.v1 import worker_service_pb2 as workers
from router._proto.switchboard.v1 import worker_service_pb2_grpc as workers_grpc


def main(address: str) -> None:
    channel = grpc.insecure_channel(address)
    admin_api = admin_grpc.AdminServiceStub(channel)
    task_api = tasks_grpc.TaskServiceStub(channel)
    worker_api = workers_grpc.WorkerServiceStub(channel)

    # An operator defines a queue and an agent.
    admin_api.UpsertQueue(
        admin.UpsertQueueRequest(
            queue=pb.Queue(
                queue_id="billing",
                target_expression="team == 'finance'",
                wrapup_s=30,
            )
        )
    )
    agent = pb.Worker(
        worker_id="ana",
        display_name="Ana",
        skills={"billing": 5},
        languages=["en", "es"],
        empathy=0.9,
        capacity_by_channel={"voice": 1, "chat": 3},
    )
    agent.attributes.update({"team": "finance"})
    worker_api.UpsertWorker(workers.UpsertWorkerRequest(worker=agent))

    # An IVR creates a task for an upset caller; retries with the same request id are safe.
    created = task_api.CreateTask(
        tasks.CreateTaskRequest(
            client_request_id="call-7f3a",
            task=pb.Task(
                channel="voice",
                queue_id="billing",
                required_skills={"billing": 3},
                language="es",
                sentiment=-0.7,
                customer_id="cust-42",
            ),
        )
    )
    print("created", created.task.task_id, "position", created.task.queue_position)

    # The agent's desktop connects, goes available, and is offered the task at once.
    hello = workers.ConnectRequest(
        hello=workers.ConnectRequest.Hello(
            worker_id="ana",
            activity="available",
        )
    )
    stream = worker_api.Connect(iter([hello]))
    offer = next(m.offer for m in stream if m.WhichOneof("kind") == "offer")
    print("offered", offer.task_id, "to", offer.worker_id)
    stream.cancel()

    # Accept with the unary call (the stream can carry accept too, see the README).
    accepted = worker_api.AcceptOffer(
        workers.AcceptOfferRequest(
            worker_id="ana",
            reservation_id=offer.reservation_id,
        )
    )
    print("assigned", accepted.task.task_id, pb.TaskStatus.Name(accepted.task.status))
    done = task_api.CompleteTask(tasks.CompleteTaskRequest(task_id=accepted.task.task_id))
    print("completed ->", pb.TaskStatus.Name(done.task.status))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051")
