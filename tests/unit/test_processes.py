"""ManagedProcess with real small children: readiness, early exit, stubborn children, groups."""

from __future__ import annotations

import os
import select
import signal
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.runtime.processes import ManagedProcess, StartError, free_port

pytestmark = pytest.mark.unit

Make = Callable[..., ManagedProcess]
# Generous bounds for events to happen; nothing asserts how fast they happen.
WAIT_S = 60.0


@pytest.fixture
def managed(tmp_path: Path) -> Iterator[Make]:
    """Makes ManagedProcesses logging under ``tmp_path``; kills what a failed test left running."""
    made: list[ManagedProcess] = []

    def make(name: str, **options: Any) -> ManagedProcess:
        made.append(ManagedProcess(name, tmp_path / "logs" / f"{name}.log", **options))
        return made[-1]

    yield make
    for process in made:
        process.kill()


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(code)]


def _assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _printed(process: ManagedProcess, word: str) -> bool:
    return word in process.log_tail()


def test_ready_over_http_then_stopped(managed: Make, tmp_path: Path) -> None:
    port = free_port()
    server = managed("http.server")
    server.start([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=tmp_path)
    pid = server.pid
    assert pid is not None
    server.wait_http(f"http://127.0.0.1:{port}/", WAIT_S)
    assert "GET / HTTP" in server.log_tail()  # its stderr went to the log

    assert server.stop() == -signal.SIGTERM
    assert server.pid is None
    _assert_gone(pid)
    assert server.stop() is None  # idempotent


def test_an_early_exit_raises_with_the_log_tail(managed: Make) -> None:
    bad = managed("bad")
    bad.log_path.parent.mkdir()
    bad.log_path.write_text("an earlier run's output\n")
    bad.start(_python("import sys; print('no such model: arcface', flush=True); sys.exit(3)"))
    pid = bad.pid
    assert pid is not None

    with pytest.raises(StartError, match="bad exited with 3") as error:
        bad.wait_until(lambda: False, WAIT_S)
    assert "no such model: arcface" in str(error.value)
    assert "earlier run" not in str(error.value)
    assert bad.pid is None
    _assert_gone(pid)


def test_the_error_class_is_the_callers(managed: Make, tmp_path: Path) -> None:
    class ServerError(StartError):
        pass

    missing = managed("missing", error=ServerError)
    with pytest.raises(ServerError, match="cannot start missing"):
        missing.start([str(tmp_path / "no-such-binary")])
    with pytest.raises(ServerError, match="not started"):
        missing.wait_exit()


def test_a_child_that_ignores_sigterm_is_killed(managed: Make) -> None:
    stubborn = managed("stubborn")
    stubborn.start(
        _python(
            """
            import signal, time
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            print("ignoring SIGTERM", flush=True)
            time.sleep(600)
            """
        )
    )
    pid = stubborn.pid
    assert pid is not None
    stubborn.wait_until(lambda: _printed(stubborn, "ignoring"), WAIT_S)

    assert stubborn.stop(timeout_s=0.5) == -signal.SIGKILL
    _assert_gone(pid)


def test_kill_then_start_again(managed: Make) -> None:
    child = managed("sleeper")
    sleep = _python("import time; print('up', flush=True); time.sleep(600)")
    first = child.start(sleep).pid
    assert first is not None
    assert child.kill() == -signal.SIGKILL
    _assert_gone(first)

    child.start(sleep).wait_until(lambda: _printed(child, "up"), WAIT_S)
    assert child.pid not in (None, first)
    with pytest.raises(StartError, match="already started"):
        child.start(sleep)
    assert child.stop() == -signal.SIGTERM


def test_wait_exit_returns_the_exit_code(managed: Make) -> None:
    child = managed("quitter")
    child.start(_python("import os; os._exit(137)"))
    assert child.wait_exit(WAIT_S) == 137
    assert child.stop() == 137


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="needs pidfd_open (Linux 5.3+)")
def test_a_grandchild_in_the_group_goes_with_it(managed: Make) -> None:
    leader = managed("leader", own_group=True)
    # The grandchild ignores SIGTERM and the leader dies of it without waiting for it, as a
    # server whose workers outlive it would: only the group's SIGKILL ends the grandchild.
    grandchild = """
        import os, signal, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("grandchild", os.getpid(), flush=True)
        time.sleep(600)
    """
    leader.start(
        _python(
            f"""
            import subprocess, sys, time
            subprocess.Popen([sys.executable, "-c", {textwrap.dedent(grandchild)!r}])
            time.sleep(600)
            """
        )
    )
    leader_pid = leader.pid
    assert leader_pid is not None
    leader.wait_until(lambda: _printed(leader, "grandchild"), WAIT_S)
    grandchild_pid = int(leader.log_tail().split()[-1])
    assert os.getpgid(grandchild_pid) == leader_pid
    # A pidfd sees the grandchild's end even while, orphaned, it waits as a zombie for init.
    pidfd = os.pidfd_open(grandchild_pid)
    try:
        assert leader.stop() == -signal.SIGTERM
        _assert_gone(leader_pid)
        readable, _, _ = select.select([pidfd], [], [], WAIT_S)
        assert readable == [pidfd]
    finally:
        os.close(pidfd)
