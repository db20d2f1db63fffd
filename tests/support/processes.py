"""Real service processes for end-to-end tests: ``python -m ...`` on a free port, stopped by pid."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import Self

from orchestrator.runtime.processes import ManagedProcess, free_port

ROOT = Path(__file__).resolve().parent.parent.parent


class ChildProcess:
    """A ``python -m ...`` child on a free port, answering ``health_path`` when ready.

    ``{port}`` in ``args`` stands for that port. It can be stopped or killed and started again
    (on the same port, appending to the same log).
    """

    def __init__(
        self, name: str, args: list[str], log_dir: Path, env: dict[str, str | None], health_path: str
    ) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.health_path = health_path
        self.port = free_port()
        self.proc = ManagedProcess(name, log_dir / f"{name}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid

    @property
    def log_path(self) -> Path:
        return self.proc.log_path

    def start(self, extra_env: dict[str, str] | None = None) -> Self:
        """``None`` in the env given at construction unsets that variable for the child."""
        merged = {**os.environ, "PYTHONPATH": str(ROOT), **self.env, **(extra_env or {})}
        env = {name: value for name, value in merged.items() if value is not None}
        command = [sys.executable, *[a.replace("{port}", str(self.port)) for a in self.args]]
        self.proc.start(command, env=env, cwd=ROOT)
        return self

    def log_tail(self, lines: int = 30) -> str:
        return self.proc.log_tail(lines)

    def wait_ready(self, timeout_s: float = 90.0) -> Self:
        self.proc.wait_http(self.url + self.health_path, timeout_s)
        return self

    def wait_exit(self, timeout_s: float = 30.0) -> int:
        return self.proc.wait_exit(timeout_s)

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout_s: float = 60.0) -> int | None:
        """Send ``sig`` (SIGKILL after ``timeout_s``) and wait; the exit code, None if not running."""
        return self.proc.stop(timeout_s, sig)

    def kill(self) -> int | None:
        """SIGKILL: no clean-up at all, as in a crash."""
        return self.proc.kill()

    def __enter__(self) -> Self:
        return self.start().wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class SearchServiceProcess(ChildProcess):
    """``python -m search_service`` on CPU over ``data_dir``, named after it.

    Its log goes to ``log_dir`` (by default beside ``data_dir``). It wants ``token`` (a new
    random one by default; shards of one index share one) as its callers' bearer token.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        shard: str | None = None,
        log_dir: Path | None = None,
        token: str | None = None,
        **env: str,
    ) -> None:
        self.data_dir = data_dir
        self.token = token or secrets.token_urlsafe(32)
        args = ["-m", "search_service", "--port", "{port}", "--data-dir", str(data_dir)]
        args += ["--log-level", "warning", *(["--shard", shard] if shard else [])]
        super().__init__(
            data_dir.name,
            args,
            log_dir or data_dir.parent,
            {"FACEREC_SEARCH_DEVICE": "cpu", "FACEREC_SEARCH_TOKEN": self.token, **env},
            "/health",
        )


class MilvusLiteProcess(ChildProcess):
    """Milvus Lite's file served over gRPC (``python -m orchestrator.runtime.milvus_lite``), as
    ``facerec up`` runs it for the milvus backend; ``url`` is the ``FACEREC_SEARCH__MILVUS_URI``
    of its callers, ``token`` their ``FACEREC_SEARCH_TOKEN``."""

    def __init__(self, data: Path, *, log_dir: Path | None = None, token: str | None = None) -> None:
        self.data_dir = data
        self.token = token or secrets.token_urlsafe(32)
        args = ["-m", "orchestrator.runtime.milvus_lite", "--data", str(data), "--port", "{port}"]
        super().__init__(data.name, args, log_dir or data.parent, {"FACEREC_SEARCH_TOKEN": self.token}, "")

    def wait_ready(self, timeout_s: float = 90.0) -> Self:
        self.proc.wait_until(self._listening, timeout_s)
        return self

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
        except OSError:
            return False
        return True


class JobWorkerProcess(ChildProcess):
    """``facerec worker`` with a stack's environment: no port; ready once Celery says so."""

    def __init__(self, name: str, log_dir: Path, env: dict[str, str | None], concurrency: int = 8) -> None:
        args = ["-m", "orchestrator.cli", "worker", "--name", name, "--concurrency", str(concurrency)]
        super().__init__(name, args, log_dir, env, "")

    def wait_ready(self, timeout_s: float = 90.0) -> Self:
        self.proc.wait_until(lambda: " ready." in self.proc.log_tail(200), timeout_s)
        return self
