"""The GPU stack for ``make gpu-check``: docker-compose.gpu.yml, or a Triton installed on this machine.

Either way the check gets a :class:`Serving`: the API's URL and an admin key, and Triton's
gRPC address for perf_analyzer and the FP16 comparison.

* :class:`ComposeStack` runs the compose file as a project of its own (``facerec-gpu-check``),
  so its database, shards and engine cache are volumes apart from any real deployment on the
  machine, with secrets made once under the data dir (readable by their owner only) and
  given through the environment, so no ``.env`` is needed. It is left running afterwards.
* :class:`LocalStack` starts a GPU ``tritonserver`` (``/opt/tritonserver`` in NVIDIA's image)
  on the GPU repository, and the orchestrator and a search service as local processes,
  as the load tests run them; all of it stops with the check.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from orchestrator.core.secret_files import read_or_create_token
from orchestrator.modelrepo.catalog import DEFAULT_MODELS
from orchestrator.runtime.triton_env import TritonEnvironment
from orchestrator.runtime.triton_server import TritonPorts, TritonServer
from tests.support.stack import ADMIN_KEY, Stack, sqlite_url

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.gpu.yml"
PROJECT = "facerec-gpu-check"
SECRETS = {
    "FACEREC_ADMIN_KEY": "admin-key",
    "POSTGRES_PASSWORD": "postgres-password",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password",
    "FACEREC_SEARCH_TOKEN": "search-token",
}
"""What the compose file requires from .env, and the file under ``<data dir>/gpu-check`` holding each."""


@dataclass(frozen=True)
class Serving:
    api_url: str
    admin_key: str
    triton_url: str
    """gRPC host:port."""


class ComposeStack:
    def __init__(self, data_dir: Path, port: int, triton_grpc_port: int, timeout_s: float) -> None:
        self.data_dir = data_dir
        self.port = port
        self.triton_grpc_port = triton_grpc_port
        self.timeout_s = timeout_s

    def command(self, *args: str) -> list[str]:
        return ["docker", "compose", "--project-name", PROJECT, "--file", str(COMPOSE_FILE), *args]

    def environment(self) -> dict[str, str]:
        """The caller's environment with the project's secrets, data dir and host ports."""
        secrets_dir = self.data_dir / "gpu-check"
        secrets_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        made = {name: read_or_create_token(secrets_dir / file) for name, file in SECRETS.items()}
        return {
            **os.environ,
            **made,
            "FACEREC_DATA_DIR": str(self.data_dir),
            "FACEREC_PORT": str(self.port),
            "TRITON_GRPC_PORT": str(self.triton_grpc_port),
        }

    def __enter__(self) -> Serving:
        env = self.environment()
        # --wait: until every health check passes; the first start builds the TensorRT engines.
        up = self.command("up", "--detach", "--build", "--wait", "--wait-timeout", str(int(self.timeout_s)))
        subprocess.run(up, env=env, check=True, cwd=ROOT)
        return Serving(
            f"http://127.0.0.1:{self.port}", env["FACEREC_ADMIN_KEY"], f"127.0.0.1:{self.triton_grpc_port}"
        )

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Left running: `docker compose -p facerec-gpu-check -f docker-compose.gpu.yml down` stops it."""


class LocalTriton(TritonServer):
    """A GPU ``tritonserver`` installed on this machine, with its own backends, instead of the wheel's.

    Only the command and its environment differ from the CPU server: no Python-backend
    directory or shared-memory prefix, nothing of Triton's Python environment.
    """

    def __init__(self, binary: Path, repository: Path, log_path: Path) -> None:
        models = [spec.name for spec in DEFAULT_MODELS]  # the GPU repository has no face_chain
        super().__init__(TritonEnvironment(binary.parent), repository, log_path, TritonPorts.free(), models)
        self.binary = binary

    def command(self) -> list[str]:
        python_only = ("--backend-directory=", "--backend-config=python")
        return [str(self.binary), *(a for a in super().command()[1:] if not a.startswith(python_only))]

    def environment(self) -> dict[str, str]:
        return dict(os.environ)


class LocalStack:
    def __init__(self, binary: Path, repository: Path, root: Path, timeout_s: float) -> None:
        self.triton = LocalTriton(binary, repository, root / "logs" / "triton.log")
        self.stack = Stack(
            root,
            self.triton,
            sqlite_url(root),
            None,
            {
                "FACEREC_TRITON__METRICS_URL": self.triton.metrics_url,
                "FACEREC_TRITON__REPOSITORY": str(repository),
            },
        )
        self.timeout_s = timeout_s

    def __enter__(self) -> Serving:
        self.triton.start_ready(self.timeout_s)
        try:
            self.stack.start()
        except BaseException:
            self.stop()
            raise
        return Serving(self.stack.url, ADMIN_KEY, self.triton.grpc_url)

    def stop(self) -> None:
        self.stack.stop()
        self.triton.stop()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
