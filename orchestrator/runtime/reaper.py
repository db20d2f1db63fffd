"""Run a command and take its process group with it: ``python -m orchestrator.runtime.reaper``.

Triton's Python-backend stubs notice Triton's death only once it has been reaped, and a stub
still starting up when Triton dies waits on shared memory forever. When ``facerec up`` is
SIGKILLed while Triton loads its models, Triton dies of the SIGTERM it gets (it handles the
signal only once it is up), and nobody would reap it at once nor kill that stub. This small
parent does both: it dies with its own parent like any child of ``up``, passes SIGTERM and
SIGINT on, reaps the command, kills what is left of the command's group, removes the files
it names as the command's leftovers (Triton's shared memory), and exits as the command did
(the same code, or the same signal).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from orchestrator.runtime.processes import ManagedProcess


class _Signals:
    """SIGTERM and SIGINT noted rather than raised, so that none can cut a start or a stop short."""

    def __init__(self) -> None:
        self.received: int | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.received = signum


def reaper_command(
    command: Sequence[str], log_path: Path, stop_timeout_s: float, leftovers: Sequence[str] = ()
) -> list[str]:
    """``command`` run under the reaper, its output appended to ``log_path``.

    ``leftovers``: glob patterns of files a killed command leaves, removed once it has exited.
    """
    reaper = [sys.executable, "-m", "orchestrator.runtime.reaper", "--log", str(log_path)]
    reaper += ["--stop-timeout", str(stop_timeout_s)]
    for pattern in leftovers:
        reaper += ["--leftovers", pattern]
    return [*reaper, "--", *command]


def remove_leftovers(patterns: Sequence[str]) -> None:
    """Remove the files matching absolute glob ``patterns``."""
    for pattern in patterns:
        path = Path(pattern)
        for leftover in path.parent.glob(path.name):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def run(
    command: Sequence[str], log_path: Path, stop_timeout_s: float, leftovers: Sequence[str] = ()
) -> int | None:
    """Run ``command`` until it exits or we get SIGTERM or SIGINT; its exit code (None: not started)."""
    signals = _Signals()
    signal.signal(signal.SIGTERM, signals)
    signal.signal(signal.SIGINT, signals)
    child = ManagedProcess(Path(command[0]).name, log_path, own_group=True, die_with_parent=True)
    try:
        child.start(command)
        while signals.received is None and child.poll() is None:
            time.sleep(0.1)
    finally:
        # Signals the group if the command still runs; kills what is left of it in any case.
        code = child.stop(stop_timeout_s)
        remove_leftovers(leftovers)
    return code


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m orchestrator.runtime.reaper")
    parser.add_argument("--log", type=Path, required=True)
    parser.add_argument("--stop-timeout", type=float, default=15.0)
    parser.add_argument("--leftovers", action="append", default=[], metavar="GLOB")
    parser.add_argument("command", nargs="+")
    args = parser.parse_args(argv)
    code = run(args.command, args.log, args.stop_timeout, args.leftovers)
    if code is None:
        sys.exit(1)
    if code < 0:  # die of the same signal, so our parent sees what the command died of
        if -code not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        sys.exit(128 - code)  # a signal whose default is to be ignored
    sys.exit(code)


if __name__ == "__main__":
    main()
