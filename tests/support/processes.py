"""Real service processes for end-to-end tests: free ports, readiness waits, stop by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from orchestrator.runtime.processes import wait_http_ready
from orchestrator.runtime.triton_server import free_port

ROOT = Path(__file__).resolve().parent.parent


class ChildProcess:
    """A ``python -m ...`` child on a free port, answering ``health_path`` when ready."""

    def __init__(
        self, name: str, args: list[str], log_dir: Path, env: dict[str, str | None], health_path: str
    ) -> None:
        self.name = name
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        self.env = env
        self.health_path = health_path
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, extra_env: dict[str, str] | None = None) -> ChildProcess:
        """``None`` in the env given at construction unsets that variable for the child."""
        merged = {**os.environ, "PYTHONPATH": str(ROOT), **self.env, **(extra_env or {})}
        env = {name: value for name, value in merged.items() if value is not None}
        command = [sys.executable, *[a.replace("{port}", str(self.port)) for a in self.args]]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=ROOT
            )
        return self

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def wait_ready(self, timeout_s: float = 90.0) -> ChildProcess:
        assert self.proc is not None
        wait_http_ready(
            self.url + self.health_path, self.proc, timeout_s, name=self.name, log_tail=self.log_tail
        )
        return self

    def wait_exit(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as in a crash."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
