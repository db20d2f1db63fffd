"""Local stacks for the report: the serving stack on free ports, and the naive baseline.

Children are stopped by pid (Triton with its process group).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from orchestrator.modelrepo.catalog import SERVED_MODELS
from orchestrator.modelrepo.repository import parse, render
from orchestrator.runtime.triton_env import TritonEnvironment, ensure_environment
from orchestrator.runtime.triton_server import TritonPorts, TritonServer
from tests.support.processes import ChildProcess
from tests.support.stack import ADMIN_KEY, sqlite_url
from tests.support.stack import Stack as SharedStack

__all__ = ["ADMIN_KEY", "NaiveServer", "Stack", "cpu_repository", "write_unbatched_repository"]


def data_dir() -> Path:
    return Path(os.environ.get("FACEREC_DATA_DIR", Path(__file__).resolve().parent.parent / "var")).resolve()


def triton_environment() -> TritonEnvironment:
    """Triton's Python environment: ``FACEREC_TRITON__ENV_DIR``, or the data dir's."""
    return ensure_environment(Path(os.environ.get("FACEREC_TRITON__ENV_DIR", data_dir() / "triton-env")))


def cpu_repository() -> Path:
    return data_dir() / "models" / "repository" / "cpu"


def write_unbatched_repository(source: Path, target: Path) -> Path:
    """A copy of the CPU repository whose configs have no ``dynamic_batching`` block.

    Version directories are symlinked (same weights and ``model.py``); only the configs
    differ. Without the block Triton runs every request on its own, in arrival order.
    """
    for name in SERVED_MODELS:
        if not (source / name / "config.pbtxt").is_file():
            continue
        model_dir = target / name
        model_dir.mkdir(parents=True, exist_ok=True)
        config = parse((source / name / "config.pbtxt").read_text())
        config.ClearField("dynamic_batching")
        (model_dir / "config.pbtxt").write_text(render(config))
        for version in (source / name).iterdir():
            link = model_dir / version.name
            if version.is_dir() and version.name.isdigit() and not link.exists():
                link.symlink_to(version.resolve(), target_is_directory=True)
    return target


class Stack(SharedStack):
    """The shared test stack with no cache, over a Triton started here or given.

    No cache: the probes repeat, and a cache would measure Redis, not the serving path. A
    given ``triton`` (already running, e.g. a test session's) is used and left running.
    ``redis_url`` is for a stack that needs Redis as the jobs' broker (it is the cache too):
    its callers must send bytes the cache has never seen. ``backend`` is the search backend
    (``tests.support.stack.BACKENDS``).
    """

    api_timeout_s = 180.0

    def __init__(
        self,
        root: Path,
        repository: Path,
        api_env: dict[str, str] | None = None,
        triton: TritonServer | None = None,
        redis_url: str | None = None,
        backend: str = "faiss",
    ) -> None:
        self.owns_triton = triton is None
        triton = triton or TritonServer(
            triton_environment(),
            repository,
            root / "logs" / "triton.log",
            TritonPorts.free(),
            list(SERVED_MODELS),
        )
        # As `make up` runs it: FACEREC_API__WORKERS from the caller's environment, else the default.
        workers = {"FACEREC_API__WORKERS": os.environ.get("FACEREC_API__WORKERS")}
        super().__init__(root, triton, sqlite_url(root), redis_url, {**workers, **(api_env or {})}, backend)

    def start(self) -> Stack:
        if self.owns_triton:
            self.triton.start()
            self.triton.wait_ready()
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        if self.owns_triton:
            self.triton.stop()


class NaiveServer:
    """``loadtests.naive_app`` under uvicorn as a child process."""

    def __init__(self, root: Path, repository: Path, photos: Path) -> None:
        self.process = ChildProcess(
            "naive",
            [
                "-m",
                "loadtests.naive_app",
                "--port",
                "{port}",
                "--repository",
                str(repository),
                "--photos",
                str(photos),
            ],
            root / "logs",
            {},
            "/health/ready",
        )

    @property
    def url(self) -> str:
        return self.process.url

    def pids(self) -> dict[str, int]:
        pid = self.process.pid
        return {"naive": pid} if pid else {}

    def __enter__(self) -> NaiveServer:
        self.process.start().wait_ready(120)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.process.stop()
