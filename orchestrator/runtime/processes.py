"""Child processes of the stack: started with a log file, waited on until ready, stopped by signal.

``ManagedProcess`` is the one place that starts, waits for, stops and kills a child; the
servers (Triton, the local Valkey, the search service, the test stacks) describe only their
command and their readiness check.
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import BinaryIO, Self

import httpx

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """A process of the stack did not come up."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def answers_ok(url: str, timeout_s: float = 2.0) -> bool:
    """True if a GET of ``url`` answers 200; False if it answers otherwise or not at all."""
    try:
        return httpx.get(url, timeout=timeout_s).status_code == 200
    except httpx.TransportError:
        return False


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    """A pre-exec hook so the child gets SIGTERM when we die, even by SIGKILL (Linux only).

    The kernel ties this to the thread that forks, so start the child from a thread that
    lives as long as the child (the main thread or the event loop's thread).
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


class ManagedProcess:
    """A child process whose output (stdout and stderr) is appended to ``log_path`` (None:
    it writes to this process's own, as a worker whose log belongs on the terminal).

    ``own_group`` starts it in a session of its own and signals the whole process group, so
    its own children (Triton's Python-backend stubs) go with it, and whatever is left in the
    group when it has exited is killed. ``die_with_parent`` has the kernel send it SIGTERM
    when this process dies. Failures to come up raise ``error`` (a StartError) with the tail
    of this run's log. After ``stop`` or ``kill`` it can be started again.
    """

    def __init__(
        self,
        name: str,
        log_path: Path | None,
        *,
        own_group: bool = False,
        die_with_parent: bool = False,
        error: type[StartError] = StartError,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self.own_group = own_group
        self.die_with_parent = die_with_parent
        self.error = error
        self._popen: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    @property
    def pid(self) -> int | None:
        """The child's pid from ``start`` until ``stop`` or ``kill``, else None."""
        return self._popen.pid if self._popen else None

    def start(
        self, command: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> Self:
        if self._popen is not None:
            if self._popen.poll() is None:
                raise self.error(f"{self.name} already started (pid {self._popen.pid})")
            self.stop()  # exited by itself: reap it and clear its group
        with self._output() as out:
            try:
                self._popen = subprocess.Popen(
                    command,
                    stdout=out,
                    stderr=subprocess.STDOUT if out is not None else None,  # inherited: ours
                    stdin=subprocess.DEVNULL,
                    env=env,
                    cwd=cwd,
                    start_new_session=self.own_group,
                    preexec_fn=_die_with_parent(os.getpid()) if self.die_with_parent else None,
                )
            except OSError as exc:
                raise self.error(f"cannot start {self.name}: {exc}") from exc
        log.info("%s pid %s, log %s", self.name, self._popen.pid, self.log_path or "with ours")
        return self

    @contextlib.contextmanager
    def _output(self) -> Iterator[BinaryIO | None]:
        if self.log_path is None:
            yield None
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self._log_offset = out.tell()
            yield out

    def poll(self) -> int | None:
        """The exit code if the child has exited, else None (also when not started)."""
        return self._popen.poll() if self._popen else None

    def wait_until(self, is_ready: Callable[[], bool], timeout_s: float, *, interval_s: float = 0.1) -> Self:
        """Poll ``is_ready`` until it is true; stop the child and raise if it exits or time runs out."""
        popen = self._started()
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                code = popen.poll()
                if code is not None:
                    raise self.error(f"{self.name} exited with {code}:\n{self.log_tail()}")
                if is_ready():
                    return self
                time.sleep(interval_s)
            raise self.error(f"{self.name} not ready after {timeout_s}s:\n{self.log_tail()}")
        except BaseException:
            self.stop()
            raise

    def wait_http(self, url: str, timeout_s: float) -> Self:
        """``wait_until`` ``url`` answers 200."""
        return self.wait_until(partial(answers_ok, url), timeout_s)

    def wait_exit(self, timeout_s: float | None = None) -> int:
        """The exit code once the child exits; ``subprocess.TimeoutExpired`` if it does not in time."""
        return self._started().wait(timeout_s)

    def stop(self, timeout_s: float = 20.0, sig: int = signal.SIGTERM) -> int | None:
        """Send ``sig``, then SIGKILL if the child has not exited after ``timeout_s``.

        Returns its exit code (negative: the signal that ended it), None if it was not started.
        """
        popen, self._popen = self._popen, None
        if popen is None:
            return None
        if popen.poll() is None:
            self._send(popen, sig)
            try:
                popen.wait(timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in %ss; killing it", self.name, timeout_s)
                self._send(popen, signal.SIGKILL)
                popen.wait()
        if self.own_group:
            # Children that ignored the signal or were orphaned must not outlive the leader.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
        log.info("%s pid %s stopped (exit %s)", self.name, popen.pid, popen.returncode)
        return popen.returncode

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` (to its group with ``own_group``) and return at once."""
        self._send(self._started(), sig)

    def kill(self) -> int | None:
        """SIGKILL: no clean-up at all, as in a crash."""
        return self.stop(sig=signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines this run (or the last one) wrote to the log ("" without one)."""
        if self.log_path is None:
            return ""
        try:
            with self.log_path.open("rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _started(self) -> subprocess.Popen[bytes]:
        if self._popen is None:
            raise self.error(f"{self.name} not started")
        return self._popen

    def _send(self, popen: subprocess.Popen[bytes], sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            if self.own_group:
                os.killpg(popen.pid, sig)
            else:
                popen.send_signal(sig)
