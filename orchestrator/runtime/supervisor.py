"""Keep the children of ``facerec up`` running: a child that dies is logged and restarted.

Each child is brought up (started and ready) by the caller's thread, then watched by a thread
of its own that restarts it after a delay that doubles from one crash to the next. That
thread lives until ``stop``, so a child it restarted with ``die_with_parent`` (the kernel
ties that to the forking *thread*) is not signalled early.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol, Self

from orchestrator.runtime.processes import StartError

log = logging.getLogger(__name__)


class Process(Protocol):
    """What the supervisor watches: a ManagedProcess, a TritonServer, a LocalValkey."""

    @property
    def pid(self) -> int | None: ...

    def poll(self) -> int | None: ...

    def stop(self) -> object: ...

    def log_tail(self, lines: int = ...) -> str: ...


@dataclass(frozen=True)
class Child:
    name: str
    process: Process
    start: Callable[[], object]
    """Starts ``process`` and returns once it is ready; raises if it does not come up (and
    leaves it stopped)."""


@dataclass
class Backoff:
    """Delay before each restart: ``first_s``, doubling up to ``cap_s``.

    A run that lasted ``reset_after_s`` counts as healthy, so the next crash starts over
    at ``first_s`` rather than paying for crashes long past.
    """

    first_s: float = 1.0
    cap_s: float = 30.0
    reset_after_s: float = 60.0
    _next_s: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._next_s = self.first_s

    def delay(self, uptime_s: float) -> float:
        """The delay before restarting a child that ran ``uptime_s`` (0 if it never came up)."""
        if uptime_s >= self.reset_after_s:
            self._next_s = self.first_s
        delay = self._next_s
        self._next_s = min(delay * 2, self.cap_s)
        return delay


def describe_exit(code: int) -> str:
    """'exit code 1' or 'signal SIGKILL', from a Popen return code."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"signal {signal.Signals(-code).name}"
    except ValueError:
        return f"signal {-code}"


class Supervisor:
    """Children brought up in order, kept up, and stopped in reverse order."""

    def __init__(self, backoff: Callable[[], Backoff] = Backoff, *, poll_interval_s: float = 0.2) -> None:
        self._backoff = backoff
        self._poll_interval_s = poll_interval_s
        self._stopping = threading.Event()
        self._watched: list[tuple[Child, threading.Thread]] = []

    def start(self, child: Child) -> None:
        """Bring ``child`` up in this thread (raising if it cannot), then keep it up."""
        if self._stopping.is_set():
            raise StartError(f"supervisor stopped; not starting {child.name}")
        try:
            child.start()
        except BaseException:
            child.process.stop()
            raise
        # A daemon, so that a main thread that dies without ``stop`` does not hang at exit; its
        # children then get their die-with-parent signal.
        thread = threading.Thread(
            target=self._keep_up, args=(child,), name=f"supervise {child.name}", daemon=True
        )
        self._watched.append((child, thread))
        thread.start()

    def keep(self, child: Child) -> None:
        """Keep ``child`` up without bringing it up here: its own thread starts it, and starts
        it again after a delay if it cannot come up, as after a crash. For a child whose
        failure to start must not stop the others (a second API worker while Triton is down)."""
        if self._stopping.is_set():
            raise StartError(f"supervisor stopped; not starting {child.name}")
        thread = threading.Thread(
            target=self._bring_up_and_keep, args=(child,), name=f"supervise {child.name}", daemon=True
        )
        self._watched.append((child, thread))
        thread.start()

    def stop(self) -> None:
        """Stop restarting, then stop every child, the last started first."""
        self._stopping.set()
        for child, thread in reversed(self._watched):
            # Stopped again until its thread has gone: a restart may have begun just before.
            while thread.is_alive():
                child.process.stop()
                thread.join(1.0)
            child.process.stop()
        self._watched.clear()

    def _bring_up_and_keep(self, child: Child) -> None:
        backoff = self._backoff()
        try:
            child.start()
        except Exception as error:
            child.process.stop()
            if self._stopping.is_set():
                return
            log.error("%s did not come up: %s", child.name, error, exc_info=not isinstance(error, StartError))
            if not self._restart(child, backoff.delay(0.0), backoff):
                return
        self._keep_up(child, backoff)

    def _keep_up(self, child: Child, backoff: Backoff | None = None) -> None:
        backoff = backoff or self._backoff()
        up_since = time.monotonic()
        try:
            while (code := self._wait_exit(child)) is not None:
                uptime_s = time.monotonic() - up_since
                log.error(
                    "%s (pid %s) died with %s after %.0fs; the end of its log:\n%s",
                    child.name,
                    child.process.pid,
                    describe_exit(code),
                    uptime_s,
                    child.process.log_tail(20),
                )
                child.process.stop()  # reaps it and kills what is left of its process group
                if not self._restart(child, backoff.delay(uptime_s), backoff):
                    return
                up_since = time.monotonic()
        finally:
            child.process.stop()

    def _wait_exit(self, child: Child) -> int | None:
        """The child's exit code once it exits; None once we are stopping."""
        while not self._stopping.wait(self._poll_interval_s):
            code = child.process.poll()
            if code is not None and not self._stopping.is_set():  # not an exit that ``stop`` caused
                return code
        return None

    def _restart(self, child: Child, delay_s: float, backoff: Backoff) -> bool:
        """Restart until the child is up (True) or we are stopping (False)."""
        while True:
            log.warning("restarting %s in %.3gs", child.name, delay_s)
            if self._stopping.wait(delay_s):
                return False
            began = time.monotonic()
            try:
                child.start()
            except Exception as error:  # a supervisor that gives up leaves the stack down for good
                child.process.stop()
                if self._stopping.is_set():  # ``stop`` ended it while it came up
                    return False
                log.error(
                    "%s did not come back: %s", child.name, error, exc_info=not isinstance(error, StartError)
                )
                delay_s = backoff.delay(0.0)
                continue
            took_s = time.monotonic() - began
            log.warning("%s restarted (pid %s), ready in %.1fs", child.name, child.process.pid, took_s)
            return True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
