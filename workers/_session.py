"""AgentSession: an agent desktop's connection to the router over the Connect stream."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from types import MappingProxyType, TracebackType
from typing import NamedTuple, TypeVar

import grpc

from router._proto.switchboard.v1 import resources_pb2 as pb
from router._proto.switchboard.v1 import task_service_pb2 as tpb
from router._proto.switchboard.v1 import task_service_pb2_grpc as tgrpc
from router._proto.switchboard.v1 import timeline_service_pb2_grpc as tlgrpc
from router._proto.switchboard.v1 import worker_service_pb2 as wpb
from router._proto.switchboard.v1 import worker_service_pb2_grpc as wgrpc
from workers._backoff import DEFAULT_BACKOFF_S, backoff_delays, check_backoff
from workers._channel import open_channel, unary
from workers._conversations import ConversationCalls, TaskCall
from workers._credentials import TlsSettings, TokenSource, for_stubs
from workers._errors import SwitchboardError, Unavailable, error_for, error_from_rpc
from workers._notices import Inbox, TaskNotice, task_notice
from workers._timeline import TimelineCall, TimelineCalls

T = TypeVar("T")

ConnectRequest = wpb.ConnectRequest
ConnectResponse = wpb.ConnectResponse

HEARTBEAT_INTERVAL_S = 10.0
"""How often the session proves over the stream that the router still answers."""
REQUEST_TIMEOUT_S = 10.0
"""Longest wait for the answer to a message sent on the stream (or for a reconnection)."""
CONNECT_TIMEOUT_S = 10.0
"""Longest wait for the first attachment when entering the session."""
SEEN_OFFERS_MAX = 10_000
"""Reservation ids remembered for de-duplication. An offer is re-sent only while it is pending,
which lasts at most the queue's reservation timeout, so a bounded memory is enough."""

_HELD_STATUSES = frozenset(
    {pb.TASK_STATUS_ASSIGNED, pb.TASK_STATUS_WRAPPING, pb.TASK_STATUS_COMPLETED}
)
# A stream refused with one of these will be refused again: reconnecting cannot help.
_FATAL_STREAM_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
        grpc.StatusCode.UNIMPLEMENTED,
        # Another session connected as the same worker and took it over: fighting back would
        # make the two take turns.
        grpc.StatusCode.ABORTED,
    }
)


class _StreamLost(Unavailable):
    """The stream went down while a message waited for its answer."""

    def __init__(self, message: str = "the connection to the router was lost") -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, message)


class _Stubs(NamedTuple):
    tasks: tgrpc.TaskServiceStub
    workers: wgrpc.WorkerServiceStub
    timeline: tlgrpc.TimelineServiceStub


class AgentSession(ConversationCalls, TimelineCalls):
    """One agent's live connection to the router.

    ::

        async with AgentSession("router:50051", "agent-7") as session:
            async for offer in session.offers():
                task = await session.accept(offer)
                ...
                await session.complete(task.task_id)

    Entering the session opens the Connect stream and says hello (setting `activity`); the
    router answers with the worker (`session.worker`) and re-sends the worker's pending offers.
    If the stream drops (or stops answering heartbeats), the session reconnects by itself with
    exponential back-off and jitter between `reconnect_backoff_s[0]` and `[1]` seconds, trying
    the given addresses in turn (a leader and its standbys), and says hello again; offers still
    pending are re-sent by the router and are not yielded twice. Accept and reject travel on
    the stream and wait for their answer; every refusal raises a `SwitchboardError`.

    The agent's conversation calls (`transfer_task`, `cancel_transfer`, `pause_task`,
    `resume_task`, `add_participant`, `remove_participant`, `hand_over_task`: see
    `ConversationCalls`) are unary calls with the session's token; what the router changed on
    the agent's tasks arrives on the stream, read with `task_notices()` (transfers,
    participants, pause and resume) and `presence_changes()`. A consult offer (someone asked
    for this agent's help, or a warm transfer to it) comes through `offers()` like any other,
    with `consult_role` set (and `transfer_id` for a warm transfer); accepting it joins the task
    (and takes it over, for a warm transfer).

    At wrap-up the agent records what a task came to (`record_outcome`) and what it did
    (`record_agent_action`), as itself; `get_timeline` and `get_customer_context` read the
    history of the customer of a task it holds (see `TimelineCalls`).

    `token` (a string, or a function returning the current one) is sent on every call; `tls`
    makes the channel TLS (with a client certificate for mTLS).

    One task should iterate `offers()`; `accept`, `reject` and the other calls may be made
    concurrently from any task of the same event loop.
    """

    def __init__(
        self,
        address: str | Sequence[str],
        worker_id: str,
        *,
        activity: str = "available",
        reconnect_backoff_s: tuple[float, float] = DEFAULT_BACKOFF_S,
        heartbeat_interval_s: float = HEARTBEAT_INTERVAL_S,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        token: TokenSource | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        self._addresses = [address] if isinstance(address, str) else list(address)
        if not self._addresses:
            raise ValueError("address: give at least one router address")
        check_backoff(reconnect_backoff_s)
        self.worker_id = worker_id
        self._activity = activity
        self._reconnect_backoff_s = reconnect_backoff_s
        self._heartbeat_interval_s = heartbeat_interval_s
        self._request_timeout_s = request_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._token = token
        self._tls = tls
        self._address_index = 0
        self._channels: dict[str, grpc.aio.Channel] = {}
        # Stubs per address, made once: building one costs ~65 us (a load test's agents make
        # thousands of calls a second).
        self._stubs: dict[str, _Stubs] = {}
        self._outbox: asyncio.Queue[ConnectRequest] | None = None
        self._attached = asyncio.Event()
        self._attach_count = 0
        self._worker: pb.Worker | None = None
        self._open_offers: dict[str, pb.Offer] = {}
        self._seen_offers: OrderedDict[str, None] = OrderedDict()
        self._new_offers: asyncio.Queue[str | None] = asyncio.Queue()
        self._answers: dict[str, asyncio.Future[ConnectResponse]] = {}
        self._assignments: dict[str, asyncio.Future[pb.Task]] = {}
        self._request_ids = itertools.count(1)
        self._runner: asyncio.Task[None] | None = None
        self._failure: SwitchboardError | None = None
        self._last_error: SwitchboardError | None = None
        self._closed = False
        self._presence_changes: Inbox[ConnectResponse.PresenceChange] = Inbox()
        self._task_notices: Inbox[TaskNotice] = Inbox()

    # -- lifecycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> AgentSession:
        """Connects and waits for the router to attach the stream (at most `connect_timeout_s`);
        raises the router's refusal (e.g. `NotFound` for an unknown worker) or `Unavailable`."""
        if self._runner is not None:
            raise RuntimeError("an AgentSession can be entered only once")
        self._runner = asyncio.create_task(self._run(), name=f"agent-session-{self.worker_id}")
        try:
            await self._until_attached(self._connect_timeout_s)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def goodbye(self, activity: str = "") -> None:
        """Signs the agent out and ends the session: the router disconnects the worker at once
        (no grace) and moves it to `activity` (an unavailable one) or, when empty, to the
        workspace's lost activity (`offline` by default). Closing without a goodbye leaves the
        worker in its grace, as a desktop that died would."""
        await self._send(ConnectRequest(goodbye=ConnectRequest.Goodbye(activity=activity)))
        await self.close()

    async def close(self) -> None:
        """Ends the stream and the session: waiting calls fail and `offers()` iterators end."""
        if self._closed:
            return
        self._closed = True
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._lose_stream(_StreamLost("the session was closed"))
        self._end_readers()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()
        self._stubs.clear()

    # -- state ----------------------------------------------------------------------------------

    @property
    def worker(self) -> pb.Worker:
        """The worker as the router last described it (at the latest attachment, or in the
        answer to `set_activity`)."""
        if self._worker is None:
            raise RuntimeError("the session has not attached yet: use `async with session`")
        return self._worker

    @property
    def connected(self) -> bool:
        """Whether the stream is attached right now."""
        return self._attached.is_set()

    @property
    def attach_count(self) -> int:
        """How many times the router attached this session's stream (1 + reconnections)."""
        return self._attach_count

    @property
    def address(self) -> str:
        """The router address the session uses (or will try next)."""
        return self._addresses[self._address_index]

    @property
    def pending_offers(self) -> Mapping[str, pb.Offer]:
        """Offers made to this worker and not yet answered or closed, by reservation id."""
        return MappingProxyType(self._open_offers)

    # -- offers ---------------------------------------------------------------------------------

    async def offers(self) -> AsyncIterator[pb.Offer]:
        """Yields each new offer once, in the order received; an offer that closed (timed
        out, rescinded, canceled) before being reached is skipped. A consult offer has its
        `consult_role` set (`PARTICIPANT_ROLE_CONSULT`) and, when it serves a warm transfer,
        its `transfer_id`. Ends when the session is closed; raises the error that ended the
        session if it failed for good."""
        while True:
            reservation_id = await self._new_offers.get()
            if reservation_id is None:
                self._new_offers.put_nowait(None)  # so that every other iterator ends as well
                if self._failure is not None:
                    raise self._failure
                return
            offer = self._open_offers.get(reservation_id)
            if offer is not None:
                yield offer

    async def accept(self, offer: pb.Offer) -> pb.Task:
        """Accepts an offer and returns its task, now assigned to this worker (for a consult
        offer: the task this worker joined, or took over by a warm transfer). Raises
        `FailedPrecondition` when the offer is no longer pending (expired, rescinded...)."""
        try:
            return await self._accept_once(offer)
        except _StreamLost:
            pass
        # The stream went down with the accept in flight: the router may or may not have
        # applied it. Ask once reconnected; if it did not, the offer may still be pending.
        await self._until_attached(self._request_timeout_s)
        task = await self.get_task(offer.task_id)
        if self._is_on(task):
            self._open_offers.pop(offer.reservation_id, None)
            return task
        return await self._accept_once(offer)

    def _is_on(self, task: pb.Task) -> bool:
        """Whether this worker holds the task, or has joined it as a participant."""
        if task.worker_id == self.worker_id and task.status in _HELD_STATUSES:
            return True
        return any(p.worker_id == self.worker_id and p.joined_at_ms for p in task.participants)

    async def _accept_once(self, offer: pb.Offer) -> pb.Task:
        if offer.consult_role != pb.PARTICIPANT_ROLE_UNSPECIFIED:
            return await self._accept_consult_once(offer)
        # The assigned task arrives as its own message, which may come before or after the ack.
        assignment: asyncio.Future[pb.Task] = asyncio.get_running_loop().create_future()
        self._assignments[offer.task_id] = assignment
        try:
            accept = ConnectRequest.Accept(reservation_id=offer.reservation_id)
            await self._send(ConnectRequest(accept=accept))
            task = await self._wait(assignment, "the assigned task")
        except _StreamLost:
            raise  # the answer was lost, not given: the offer may still be pending, keep it
        except SwitchboardError:
            self._open_offers.pop(offer.reservation_id, None)
            raise
        finally:
            self._assignments.pop(offer.task_id, None)
        self._open_offers.pop(offer.reservation_id, None)
        return task

    async def _accept_consult_once(self, offer: pb.Offer) -> pb.Task:
        # A consult's acceptance is answered with an ack (no `assigned`: the task may stay with
        # its agent); the task is read once the router applied it.
        accept = ConnectRequest.Accept(reservation_id=offer.reservation_id)
        try:
            await self._send(ConnectRequest(accept=accept))
        except _StreamLost:
            raise  # the answer was lost, not given: the offer may still be pending, keep it
        except SwitchboardError:
            self._open_offers.pop(offer.reservation_id, None)
            raise
        self._open_offers.pop(offer.reservation_id, None)
        return await self.get_task(offer.task_id)

    async def reject(self, offer: pb.Offer, reason: str = "") -> None:
        """Rejects an offer; the router will not offer this task to this worker again. Raises
        `FailedPrecondition` when the offer is no longer pending, `Unavailable` when the stream
        went down before the answer (the offer stays in `pending_offers`; reject it again)."""
        reject = ConnectRequest.Reject(reservation_id=offer.reservation_id, reason=reason)
        try:
            await self._send(ConnectRequest(reject=reject))
        except _StreamLost:
            raise  # the answer was lost, not given: the offer may still be pending, keep it
        except SwitchboardError:
            self._open_offers.pop(offer.reservation_id, None)
            raise
        self._open_offers.pop(offer.reservation_id, None)

    # -- unary calls ----------------------------------------------------------------------------

    async def complete(self, task_id: str) -> pb.Task:
        """Ends the handling of an assigned task: it wraps up for its queue's wrap-up time
        (status WRAPPING) or, with none, completes and frees this worker's capacity."""
        stub = self._stubs_now().tasks
        request = tpb.CompleteTaskRequest(task_id=task_id)
        response = await unary(stub.CompleteTask(request, timeout=self._request_timeout_s))
        return response.task

    async def wrap_up(self, task_id: str) -> pb.Task:
        """Ends a task's wrap-up now, freeing this worker's capacity for the next task."""
        stub = self._stubs_now().tasks
        request = tpb.WrapUpTaskRequest(task_id=task_id)
        response = await unary(stub.WrapUpTask(request, timeout=self._request_timeout_s))
        return response.task

    async def set_activity(self, activity: str) -> pb.Worker:
        """Moves this worker to an activity (going unavailable rescinds pending offers). The
        session says this activity in its hello when it reconnects."""
        stub = self._stubs_now().workers
        request = wpb.SetActivityRequest(worker_id=self.worker_id, activity=activity)
        response = await unary(stub.SetActivity(request, timeout=self._request_timeout_s))
        self._activity = activity
        self._worker = response.worker
        return response.worker

    async def set_draining(self, draining: bool = True) -> pb.Worker:
        """Drains this worker (it finishes what it holds and is offered nothing new) or ends
        its drain."""
        stub = self._stubs_now().workers
        request = wpb.SetDrainingRequest(worker_id=self.worker_id, draining=draining)
        response = await unary(stub.SetDraining(request, timeout=self._request_timeout_s))
        self._worker = response.worker
        return response.worker

    async def presence_changes(self) -> AsyncIterator[ConnectResponse.PresenceChange]:
        """Yields what the router changed for this worker (moved away after missed offers,
        drained, its activity set by a supervisor, ...), in order, until the session ends
        (the latest `NOTICES_MAX` are kept for a desktop that reads them late)."""
        async for change in self._presence_changes.items():
            yield change

    async def task_notices(self) -> AsyncIterator[TaskNotice]:
        """Yields what the router changed on the tasks this worker is on, in order, until the
        session ends: a transfer from or to it began or ended, a participant joined or left, a
        task it held was paused, a task it paused was resumed (see `TaskNotice`; the latest
        `NOTICES_MAX` are kept for a desktop that reads them late). Notices sent while the
        stream was down are not re-sent: read the task (`get_task`) after a
        reconnection when it matters."""
        async for notice in self._task_notices.items():
            yield notice

    async def _call_tasks(self, call: TaskCall[T]) -> T:
        return await unary(call(self._stubs_now().tasks, self._request_timeout_s))

    async def _call_timeline(self, call: TimelineCall[T]) -> T:
        return await unary(call(self._stubs_now().timeline, self._request_timeout_s))

    def _recording_worker_id(self) -> str:
        return self.worker_id

    async def get_task(self, task_id: str) -> pb.Task:
        """A task this worker holds, is offered or is on, as it is now."""
        stub = self._stubs_now().tasks
        request = tpb.GetTaskRequest(task_id=task_id)
        response = await unary(stub.GetTask(request, timeout=self._request_timeout_s))
        return response.task

    def _stubs_now(self) -> _Stubs:
        """The stubs on the channel to the address in use."""
        channel = self._channel()
        stubs = self._stubs.get(self.address)
        if stubs is None:
            face = for_stubs(channel, self._token)
            stubs = _Stubs(
                tgrpc.TaskServiceStub(face),
                wgrpc.WorkerServiceStub(face),
                tlgrpc.TimelineServiceStub(face),
            )
            self._stubs[self.address] = stubs
        return stubs

    def _channel(self) -> grpc.aio.Channel:
        if self._closed:
            raise SwitchboardError(grpc.StatusCode.CANCELLED, "the session is closed")
        address = self.address
        channel = self._channels.get(address)
        if channel is None:
            channel = open_channel(
                address, reconnect_backoff_s=self._reconnect_backoff_s, tls=self._tls
            )
            self._channels[address] = channel
        return channel

    # -- messages on the stream -----------------------------------------------------------------

    async def _send(self, request: ConnectRequest) -> ConnectResponse:
        """Sends a message on the attached stream and returns its `ack`, or raises its error."""
        await self._until_attached(self._request_timeout_s)
        assert self._outbox is not None
        request.request_id = str(next(self._request_ids))
        answer: asyncio.Future[ConnectResponse] = asyncio.get_running_loop().create_future()
        self._answers[request.request_id] = answer
        try:
            self._outbox.put_nowait(request)
            response = await self._wait(answer, f"the answer to {request.WhichOneof('kind')}")
        finally:
            self._answers.pop(request.request_id, None)
        if response.HasField("error"):
            raise error_for(response.error.code, response.error.message)
        return response

    async def _wait(self, future: asyncio.Future[T], what: str) -> T:
        try:
            return await asyncio.wait_for(future, self._request_timeout_s)
        except TimeoutError:
            raise SwitchboardError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"no {what} within {self._request_timeout_s:g} s",
            ) from None

    async def _until_attached(self, timeout_s: float) -> None:
        """Waits until the stream is attached; raises when the session ended or time ran out."""
        if not self._attached.is_set() and self._runner is not None and not self._closed:
            attached = asyncio.create_task(self._attached.wait())
            await asyncio.wait(
                {attached, self._runner}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
            attached.cancel()
        if self._runner is not None and self._runner.done() and not self._runner.cancelled():
            unexpected = self._runner.exception()
            if unexpected is not None:
                raise unexpected
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise SwitchboardError(grpc.StatusCode.CANCELLED, "the session is closed")
        if not self._attached.is_set():
            reason = f": {self._last_error.message}" if self._last_error else ""
            raise Unavailable(
                grpc.StatusCode.UNAVAILABLE,
                f"not connected to {', '.join(self._addresses)} within {timeout_s:g} s{reason}",
            )

    def _on_message(self, message: ConnectResponse) -> None:
        kind = message.WhichOneof("kind")
        if kind == "attached":
            self._on_attached(message.attached)
        elif kind == "offer":
            self._on_offer(message.offer)
        elif kind == "offer_closed":
            self._open_offers.pop(message.offer_closed.reservation_id, None)
        elif kind == "assigned":
            assignment = self._assignments.get(message.assigned.task_id)
            if assignment is not None and not assignment.done():
                assignment.set_result(message.assigned)
        elif kind == "presence":
            if self._worker is not None and message.presence.activity:
                self._worker.activity = message.presence.activity
            self._presence_changes.put(message.presence)
        elif kind in ("ack", "error"):
            answer = self._answers.get(message.request_id)
            if answer is not None and not answer.done():
                answer.set_result(message)
        else:
            notice = task_notice(message)
            if notice is not None:
                self._task_notices.put(notice)

    def _on_attached(self, worker: pb.Worker) -> None:
        self._worker = worker
        # Offers that closed while the stream was down sent no offer_closed to this session;
        # the worker's held tasks say which offers can still be pending.
        held = set(worker.task_ids)
        for reservation_id, offer in list(self._open_offers.items()):
            if offer.task_id not in held:
                del self._open_offers[reservation_id]
        self._attach_count += 1
        self._attached.set()

    def _on_offer(self, offer: pb.Offer) -> None:
        reservation_id = offer.reservation_id
        if reservation_id in self._seen_offers:
            return  # re-sent after a reconnect: already known
        self._seen_offers[reservation_id] = None
        while len(self._seen_offers) > SEEN_OFFERS_MAX:
            self._seen_offers.popitem(last=False)
        self._open_offers[reservation_id] = offer
        self._new_offers.put_nowait(reservation_id)

    def _end_readers(self) -> None:
        """Ends the iterations of `offers()`, `task_notices()` and `presence_changes()`."""
        self._new_offers.put_nowait(None)
        self._task_notices.close()
        self._presence_changes.close()

    def _lose_stream(self, error: _StreamLost) -> None:
        """Fails every message waiting for an answer from a stream that is gone."""
        self._attached.clear()
        self._outbox = None
        waiting: list[asyncio.Future[ConnectResponse] | asyncio.Future[pb.Task]] = [
            *self._answers.values(),
            *self._assignments.values(),
        ]
        for future in waiting:
            if not future.done():
                future.set_exception(error)
        self._answers.clear()

    # -- the connection loop --------------------------------------------------------------------

    async def _run(self) -> None:
        """Keeps a stream attached until the session is closed or refused for good."""
        delays = backoff_delays(self._reconnect_backoff_s)
        while True:
            attached_before = self._attach_count
            error = await self._stream(self.address)
            self._last_error = error
            self._lose_stream(_StreamLost(f"the connection to the router was lost: {error}"))
            if error.code in _FATAL_STREAM_CODES:
                self._failure = error
                self._end_readers()
                return
            if self._attach_count > attached_before:
                # The stream had been up: this is a fresh outage, start the back-off again.
                delays = backoff_delays(self._reconnect_backoff_s)
            leader = error.leader_address
            if leader and leader != self.address:
                # A standby named the leader: go there at once (a known leader is not a guess).
                if leader not in self._addresses:
                    self._addresses.append(leader)
                self._address_index = self._addresses.index(leader)
                continue
            self._address_index = (self._address_index + 1) % len(self._addresses)
            await asyncio.sleep(next(delays))

    async def _stream(self, address: str) -> SwitchboardError:
        """Runs one Connect stream until it fails; returns why it ended."""
        call = self._stubs_now().workers.Connect()
        outbox: asyncio.Queue[ConnectRequest] = asyncio.Queue()
        hello = ConnectRequest.Hello(worker_id=self.worker_id, activity=self._activity)
        outbox.put_nowait(ConnectRequest(request_id="hello", hello=hello))
        self._outbox = outbox
        parts = {
            asyncio.create_task(self._read(call), name="read"),
            asyncio.create_task(self._write(call, outbox), name="write"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
        }
        try:
            done, _ = await asyncio.wait(parts, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._attached.clear()
            call.cancel()
            for part in parts:
                part.cancel()
            await asyncio.gather(*parts, return_exceptions=True)
        # The reader knows best why a stream ended (it holds the call's status).
        first = min(done, key=lambda part: part.get_name() != "read")
        return _why_ended(first, address)

    async def _read(self, call: grpc.aio.StreamStreamCall) -> None:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                return
            self._on_message(message)

    @staticmethod
    async def _write(
        call: grpc.aio.StreamStreamCall, outbox: asyncio.Queue[ConnectRequest]
    ) -> None:
        # The only writer of the call: grpc.aio does not allow concurrent writes, and a user's
        # task must never be the one inside `write` when the call is canceled.
        while True:
            await call.write(await outbox.get())

    async def _heartbeat(self) -> None:
        """Returns when the router stopped answering heartbeats on an attached stream."""
        await self._attached.wait()
        while True:
            await asyncio.sleep(self._heartbeat_interval_s)
            try:
                await self._send(ConnectRequest(heartbeat=ConnectRequest.Heartbeat()))
            except SwitchboardError:
                return


def _why_ended(part: asyncio.Task[None], address: str) -> SwitchboardError:
    """The error that ended a stream, from the first of its tasks to finish."""
    error = part.exception()
    if isinstance(error, grpc.aio.AioRpcError):
        return error_from_rpc(error)
    if part.get_name() == "heartbeat":
        return Unavailable(grpc.StatusCode.UNAVAILABLE, f"{address} stopped answering heartbeats")
    if error is None:
        return Unavailable(grpc.StatusCode.UNAVAILABLE, f"{address} ended the stream")
    return Unavailable(grpc.StatusCode.UNAVAILABLE, f"the stream to {address} failed: {error!r}")
