"""Run the real ``tritonserver`` binary from the nvidia-pytriton wheel as a child process.

Explicit model control, ports given or picked free, a readiness wait that notices an early
exit, the server's log kept in the data dir, and a clean stop of the whole process group
(the Python-backend stubs are children of the server).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from orchestrator.runtime.allocator import malloc_environment
from orchestrator.runtime.processes import StartError, wait_http_ready
from orchestrator.runtime.triton_env import TritonEnvironment

log = logging.getLogger(__name__)


class TritonStartError(StartError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class TritonPorts:
    http: int
    grpc: int
    metrics: int

    @classmethod
    def free(cls) -> TritonPorts:
        return cls(free_port(), free_port(), free_port())

    @classmethod
    def beside(cls, orchestrator_port: int) -> TritonPorts:
        """Fixed offsets from the orchestrator's port, so stacks on different ports coexist."""
        return cls(orchestrator_port + 1, orchestrator_port + 2, orchestrator_port + 3)


class TritonServer:
    def __init__(
        self,
        env: TritonEnvironment,
        repository: Path,
        log_path: Path,
        ports: TritonPorts,
        models: Sequence[str],
        host: str = "127.0.0.1",
    ) -> None:
        self.env = env
        self.repository = repository
        self.log_path = log_path
        self.ports = ports
        self.models = list(models)
        self.host = host
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports.grpc}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.ports.http}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.ports.metrics}/metrics"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def command(self) -> list[str]:
        args = [
            str(self.env.tritonserver),
            f"--model-repository={self.repository}",
            f"--backend-directory={self.env.backends}",
            "--model-control-mode=explicit",
            f"--http-address={self.host}",
            f"--http-port={self.ports.http}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.ports.grpc}",
            "--allow-metrics=true",
            f"--metrics-address={self.host}",
            f"--metrics-port={self.ports.metrics}",
            "--strict-readiness=true",
            "--exit-timeout-secs=10",
            "--log-verbose=0",
        ]
        args += [f"--load-model={name}" for name in self.models]
        return args

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The stub embeds Python and finds its site-packages through the first python on PATH.
        env["PATH"] = f"{self.env.bin}{os.pathsep}{env.get('PATH', '')}"
        libs = [str(self.env.libraries), env.get("LD_LIBRARY_PATH", "")]
        env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
        env.pop("PYTHONPATH", None)
        env.pop("VIRTUAL_ENV", None)
        # The Python backend's stubs inherit these: see orchestrator.runtime.allocator.
        for name, value in malloc_environment().items():
            env.setdefault(name, value)
        return env

    def start(self) -> None:
        if self._process is not None:
            raise TritonStartError("already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self._process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                start_new_session=True,
            )
        log.info("tritonserver pid %s, log %s", self._process.pid, self.log_path)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        assert self._process is not None, "start() first"
        try:
            wait_http_ready(
                f"{self.http_url}/v2/health/ready",
                self._process,
                timeout_s,
                name="tritonserver",
                log_tail=self.log_tail,
            )
        except StartError as error:
            self.stop()
            raise TritonStartError(str(error)) from None

    def stop(self, timeout_s: float = 20.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            log.warning("tritonserver did not stop in %ss; killing it", timeout_s)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Stubs are in the same session; make sure none outlives the server.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)

    def poll(self) -> int | None:
        """The exit code if the server has exited, else None."""
        return self._process.poll() if self._process else None

    def __enter__(self) -> TritonServer:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
