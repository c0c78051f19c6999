"""Work on a consistent copy of the router's state, off the writer's loop: a forked child.

`os.fork()` gives the child a copy-on-write image of the whole process as it is at that
instant, which is how Redis takes its own snapshots: the pause is the kernel copying page
tables (about 25 ms at 2 GB of heap, measured), whatever the state's size, and the child then
encodes the state at its own pace while the writer goes on. The child never returns to the
event loop or touches gRPC: it runs one function, writes its bytes to a pipe, and `_exit`s.

A child's output on the pipe is one frame: a kind byte (`D` data, `E` error), the payload's
length (8 bytes, big-endian), then the payload."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
from collections.abc import AsyncIterator, Callable

import router

_HEADER_BYTES = 9
_WRITE_BYTES_MAX = 1 << 20
_ERROR_BYTES_MAX = 4096
CHILD_NICENESS = 10
"""How much lower a child's scheduling priority is than the router's."""


class ForkedError(Exception):
    """The child failed: it raised, died, or its output was cut short."""


def fork_is_safe() -> bool:
    """Whether this process may fork a child that runs Python: gRPC's fork handlers crash such
    children unless they were off before gRPC was imported (see `router/__init__.py`)."""
    return hasattr(os, "fork") and router.GRPC_FORK_HANDLERS_OFF


class ForkedChild:
    """A running child and the read end of its pipe."""

    def __init__(self, pid: int, reader: asyncio.StreamReader, transport: asyncio.BaseTransport):
        self.pid = pid
        self._reader = reader
        self._transport = transport
        self._size: int | None = None
        self._reaped = False

    async def size(self) -> int:
        """The length of the child's result (waits until the child has produced it)."""
        if self._size is None:
            try:
                header = await self._reader.readexactly(_HEADER_BYTES)
            except asyncio.IncompleteReadError:
                raise ForkedError(await self._died()) from None
            size = int.from_bytes(header[1:], "big")
            if header[:1] == b"E":
                message = await self._reader.readexactly(min(size, _ERROR_BYTES_MAX))
                raise ForkedError(f"the child failed: {message.decode(errors='replace')}")
            self._size = size
        return self._size

    async def chunks(self, chunk_bytes: int) -> AsyncIterator[bytes]:
        """The child's result in pieces of at most `chunk_bytes`, as they arrive."""
        remaining = await self.size()
        while remaining:
            try:
                chunk = await self._reader.readexactly(min(chunk_bytes, remaining))
            except asyncio.IncompleteReadError:
                raise ForkedError(await self._died()) from None
            remaining -= len(chunk)
            yield chunk

    async def read_all(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks(_WRITE_BYTES_MAX)])

    async def close(self) -> None:
        """Ends the child (if it still runs) and reaps it."""
        self._transport.close()
        if self._reaped:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        await self._reap()

    async def _died(self) -> str:
        status = await self._reap()
        return f"the child ended early with status {status}"

    async def _reap(self) -> int:
        if self._reaped:
            return 0
        _, status = await asyncio.to_thread(os.waitpid, self.pid, 0)
        self._reaped = True
        return os.waitstatus_to_exitcode(status)


async def fork_child(produce: Callable[[], bytes]) -> ForkedChild:
    """Forks a child that runs `produce()` on the state as it is now and sends back its bytes.
    Call it between commands: the child sees the engine exactly as this instant leaves it."""
    if not fork_is_safe():
        raise ForkedError("this process cannot fork safely (gRPC was imported before router)")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        os.close(read_fd)
        _run_child(write_fd, produce)
    os.close(write_fd)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_WRITE_BYTES_MAX)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0)
    )
    return ForkedChild(pid, reader, transport)


async def run_forked(produce: Callable[[], bytes]) -> bytes:
    """`produce()` run in a forked child on the state as it is now; its result."""
    child = await fork_child(produce)
    try:
        return await child.read_all()
    finally:
        await child.close()


def _run_child(write_fd: int, produce: Callable[[], bytes]) -> None:
    status = 1
    try:
        # Collections would only copy pages the parent shares with us, to free nothing.
        gc.disable()
        # Background work: on a busy machine the writer's loop must get the core first.
        os.nice(CHILD_NICENESS)
        # Signals meant for the router (Ctrl-C, SIGTERM) must not run its handlers here.
        # (A child forked from a thread other than the main one may not touch signals: then
        # it has no such handlers to run either.)
        with contextlib.suppress(ValueError):
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)  # the loop's wakeup fd is shared with the parent
        result = produce()
        _write_all(write_fd, b"D" + len(result).to_bytes(8, "big"))
        _write_all(write_fd, result)
        status = 0
    except BaseException as error:  # reported to the parent, never raised into its code
        message = repr(error).encode()[:_ERROR_BYTES_MAX]
        with contextlib.suppress(OSError):
            _write_all(write_fd, b"E" + len(message).to_bytes(8, "big") + message)
    finally:
        os._exit(status)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view[:_WRITE_BYTES_MAX])
        view = view[written:]
