"""Run the real ``tritonserver`` binary from the nvidia-pytriton wheel as a child process.

Explicit model control, ports given or picked free, a readiness wait that notices an early
exit, the server's log kept in the data dir, and a clean stop of the whole process group
(the Python-backend stubs are children of the server) and of its shared memory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from orchestrator.runtime.allocator import malloc_environment
from orchestrator.runtime.processes import ManagedProcess, StartError, free_port
from orchestrator.runtime.reaper import reaper_command, remove_leftovers
from orchestrator.runtime.triton_env import TritonEnvironment

SHM_DIR = Path("/dev/shm")
STOP_TIMEOUT_S = 20.0
"""How long a stop waits before SIGKILL: past Triton's own --exit-timeout-secs."""


class TritonStartError(StartError):
    pass


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
        *,
        die_with_parent: bool = False,
    ) -> None:
        """``die_with_parent``: it gets SIGTERM when the thread that starts it ends, and runs
        under a reaper (see ``orchestrator.runtime.reaper``) so that its stubs go too."""
        self.env = env
        self.repository = repository
        self.ports = ports
        self.models = list(models)
        self.host = host
        self._reaped = die_with_parent
        self.log_path = log_path
        self._process = ManagedProcess(
            "tritonserver", log_path, own_group=True, die_with_parent=die_with_parent, error=TritonStartError
        )

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
        """The server's pid; its reaper's when it dies with its parent."""
        return self._process.pid

    @property
    def shm_prefix(self) -> Path:
        """Where the Python backend's shared-memory regions of this server start (one per port)."""
        return SHM_DIR / f"facerec-triton-{self.ports.http}-"

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
            # Named after our port so that the regions a killed server leaves can be removed.
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix.name}",
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
        command = self.command()
        if self._reaped:
            leftovers = [f"{self.shm_prefix}*"]
            command = reaper_command(command, self.log_path, STOP_TIMEOUT_S - 5, leftovers)
        self._process.start(command, env=self.environment())

    def start_ready(self, timeout_s: float = 180.0) -> None:
        """``start``, then ``wait_ready``."""
        self.start()
        self.wait_ready(timeout_s)

    def poll(self) -> int | None:
        """The exit code if the server has exited, else None (also when not started)."""
        return self._process.poll()

    def log_tail(self, lines: int = 30) -> str:
        return self._process.log_tail(lines)

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Wait until Triton reports ready; if it exits or time runs out, stop it and raise."""
        self._process.wait_http(f"{self.http_url}/v2/health/ready", timeout_s)

    def wait_exit(self) -> int:
        """Block until the server exits; its exit code."""
        return self._process.wait_exit()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout_s``; no stub outlives the server.

        A server that stops cleanly removes its shared memory; one that was killed leaves it
        (megabytes per model instance, in RAM), so what remains is removed here.
        """
        if self._process.stop(timeout_s) is not None:
            remove_leftovers([f"{self.shm_prefix}*"])

    def __enter__(self) -> TritonServer:
        self.start_ready()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
