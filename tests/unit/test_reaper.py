"""The reaper with real small commands: it exits as they did and leaves nothing of their group."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from orchestrator.runtime.reaper import reaper_command

pytestmark = pytest.mark.unit

WAIT_S = 30.0
# Leaves a grandchild in its group that ignores SIGTERM, as a stuck stub does, then waits or exits.
PARENT_OF_A_STUBBORN_CHILD = textwrap.dedent(
    """
    import subprocess, sys, time
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    child = subprocess.Popen([sys.executable, "-c", stubborn])
    print("grandchild", child.pid, flush=True)
    if sys.argv[1] == "wait":
        time.sleep(300)
    sys.exit(int(sys.argv[1]))
    """
)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _reaped(tmp_path: Path, *command: str) -> subprocess.Popen[bytes]:
    log = tmp_path / "command.log"
    return subprocess.Popen(reaper_command(command, log, stop_timeout_s=2.0), stdin=subprocess.DEVNULL)


def _grandchild(tmp_path: Path) -> int:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        log = tmp_path / "command.log"
        words = log.read_text().split() if log.exists() else []
        if "grandchild" in words:
            return int(words[words.index("grandchild") + 1])
        time.sleep(0.05)
    raise AssertionError("the command did not start its grandchild")


def _gone(pid: int) -> bool:
    deadline = time.monotonic() + WAIT_S
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_it_exits_with_the_command_code_and_kills_the_rest_of_its_group(tmp_path: Path) -> None:
    reaper = _reaped(tmp_path, sys.executable, "-c", PARENT_OF_A_STUBBORN_CHILD, "3")
    grandchild = _grandchild(tmp_path)
    assert reaper.wait(WAIT_S) == 3
    assert _gone(grandchild)


def test_it_dies_of_the_signal_that_killed_the_command(tmp_path: Path) -> None:
    reaper = _reaped(
        tmp_path, sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    )
    assert reaper.wait(WAIT_S) == -signal.SIGKILL


def test_sigterm_is_passed_on_and_nothing_is_left(tmp_path: Path) -> None:
    reaper = _reaped(tmp_path, sys.executable, "-c", PARENT_OF_A_STUBBORN_CHILD, "wait")
    grandchild = _grandchild(tmp_path)
    reaper.send_signal(signal.SIGTERM)
    assert reaper.wait(WAIT_S) == -signal.SIGTERM  # the command's default SIGTERM action
    assert _gone(grandchild)


def test_the_leftovers_of_a_killed_command_are_removed(tmp_path: Path) -> None:
    kept = tmp_path / "kept"
    leaves = "import os, pathlib, sys; pathlib.Path(sys.argv[1]).touch(); os.kill(os.getpid(), 9)"
    command = [sys.executable, "-c", leaves, str(tmp_path / "region-1")]
    kept.touch()
    reaper = reaper_command(command, tmp_path / "command.log", 2.0, [f"{tmp_path}/region-*"])
    assert subprocess.run(reaper, timeout=WAIT_S).returncode == -signal.SIGKILL
    assert sorted(p.name for p in tmp_path.iterdir()) == ["command.log", "kept"]
