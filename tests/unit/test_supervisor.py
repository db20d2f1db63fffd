"""The restart policy, and the Supervisor over real small children (python sleeping in a loop)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from orchestrator.runtime.processes import ManagedProcess, StartError
from orchestrator.runtime.supervisor import Backoff, Child, Supervisor, describe_exit

pytestmark = pytest.mark.unit

WAIT_S = 30.0
SLEEPER = textwrap.dedent(
    """
    import time
    print("ready", flush=True)
    while True:
        time.sleep(1)
    """
)


def quick() -> Backoff:
    return Backoff(first_s=0.05, cap_s=0.2, reset_after_s=60.0)


def test_the_delay_doubles_up_to_the_cap() -> None:
    backoff = Backoff(first_s=1.0, cap_s=30.0, reset_after_s=60.0)
    assert [backoff.delay(uptime_s=0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]


def test_a_run_that_lasted_starts_the_delays_over() -> None:
    backoff = Backoff(first_s=1.0, cap_s=30.0, reset_after_s=60.0)
    assert [backoff.delay(5.0) for _ in range(3)] == [1, 2, 4]
    assert backoff.delay(60.0) == 1
    assert backoff.delay(59.0) == 2


def test_exits_are_named_by_code_or_signal() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-signal.SIGKILL) == "signal SIGKILL"
    assert describe_exit(-200) == "signal 200"


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _eventually(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _sleeper(tmp_path: Path, name: str, refused: frozenset[int] = frozenset()) -> Child:
    """A child that is ready once it printed 'ready'; its starts numbered in ``refused`` fail."""
    process = ManagedProcess(name, tmp_path / f"{name}.log", own_group=True, die_with_parent=True)
    attempts: list[int] = []

    def start() -> None:
        attempts.append(1)
        if len(attempts) in refused:
            raise StartError(f"{name} refused to start (attempt {len(attempts)})")
        process.start([sys.executable, "-c", SLEEPER])
        process.wait_until(lambda: "ready" in process.log_tail(), WAIT_S, interval_s=0.02)

    return Child(name, process, start)


@pytest.fixture
def supervisor() -> Iterator[Supervisor]:
    with Supervisor(quick, poll_interval_s=0.05) as supervisor:
        yield supervisor


def _pid(child: Child) -> int:
    pid = child.process.pid
    assert pid is not None
    return pid


def test_a_killed_child_is_restarted_and_the_death_is_logged(
    supervisor: Supervisor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "orchestrator.runtime.supervisor")
    child = _sleeper(tmp_path, "sleeper")
    supervisor.start(child)
    first = _pid(child)
    os.kill(first, signal.SIGKILL)
    _eventually(lambda: child.process.pid not in (None, first) and "restarted" in caplog.text)
    assert child.process.poll() is None and not _alive(first)
    assert f"sleeper (pid {first}) died with signal SIGKILL" in caplog.text
    assert "ready" in caplog.text  # the end of its log
    assert "restarting sleeper in 0.05s" in caplog.text


def test_a_child_restarted_by_the_supervisor_outlives_the_restart(
    supervisor: Supervisor, tmp_path: Path
) -> None:
    """die_with_parent follows the forking thread: it must be one that lives until ``stop``."""
    child = _sleeper(tmp_path, "sleeper")
    supervisor.start(child)
    first = _pid(child)
    os.kill(first, signal.SIGKILL)
    _eventually(lambda: child.process.pid not in (None, first) and child.process.poll() is None)
    second = _pid(child)
    time.sleep(1.0)
    assert _alive(second) and child.process.pid == second


def test_a_child_that_does_not_come_back_is_retried_with_growing_delays(
    supervisor: Supervisor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "orchestrator.runtime.supervisor")
    child = _sleeper(tmp_path, "flaky", refused=frozenset({2, 3}))
    supervisor.start(child)
    first = _pid(child)
    os.kill(first, signal.SIGKILL)
    _eventually(lambda: "restarted" in caplog.text)
    assert caplog.text.count("did not come back: flaky refused to start") == 2
    delays = [line.split(" in ")[-1] for line in caplog.text.splitlines() if "restarting flaky in" in line]
    assert delays == ["0.05s", "0.1s", "0.2s"]


def test_stop_leaves_no_child_and_reports_no_death(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "orchestrator.runtime.supervisor")
    children = [_sleeper(tmp_path, name) for name in ("first", "second")]
    with Supervisor(quick, poll_interval_s=0.05) as supervisor:
        for child in children:
            supervisor.start(child)
        pids = [_pid(child) for child in children]
        os.kill(pids[1], signal.SIGKILL)
        _eventually(lambda: children[1].process.pid not in (None, pids[1]))
        pids.append(_pid(children[1]))
    assert not any(_alive(pid) for pid in pids)
    assert "died" not in caplog.text.replace(f"second (pid {pids[1]}) died", "")


def test_a_child_that_cannot_come_up_at_first_is_an_error(supervisor: Supervisor, tmp_path: Path) -> None:
    with pytest.raises(StartError, match="refused to start"):
        supervisor.start(_sleeper(tmp_path, "broken", refused=frozenset({1})))


def test_a_kept_child_that_cannot_come_up_at_first_is_retried_by_itself(
    supervisor: Supervisor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "orchestrator.runtime.supervisor")
    child = _sleeper(tmp_path, "second worker", refused=frozenset({1, 2}))
    supervisor.keep(child)  # returns at once: its own thread brings it up
    _eventually(lambda: "second worker restarted" in caplog.text)
    assert caplog.text.count("refused to start") == 2 and "second worker did not come up" in caplog.text
    first = _pid(child)
    os.kill(first, signal.SIGKILL)  # and kept up afterwards like any other child
    _eventually(lambda: child.process.pid not in (None, first) and child.process.poll() is None)
