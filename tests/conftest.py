"""Shared fixtures: the fetched models, the real Triton binary, and real photos.

Servers run on free ports and are stopped by pid. A server that cannot be had skips its
tests locally and fails them under CI=true.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orchestrator.clients.triton import TritonModels
from orchestrator.modelrepo.catalog import SERVED_MODELS
from orchestrator.modelrepo.fetch import ModelStore, fetch_models
from orchestrator.modelrepo.tuning import ensure_tuned
from orchestrator.runtime.triton_env import TritonEnvironment, ensure_environment
from orchestrator.runtime.triton_server import TritonPorts, TritonServer
from tests.support.photos import fetch_photos

ROOT = Path(__file__).resolve().parent.parent


def unavailable(reason: str) -> None:
    """Skip locally; under CI a missing server is a failure, not a silent skip."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return Path(os.environ.get("FACEREC_DATA_DIR", ROOT / "var")).resolve()


@pytest.fixture(scope="session")
def model_store(data_dir: Path) -> ModelStore:
    """The fetched models, tuned for this CPU as `facerec up` tunes them (once per CPU model)."""
    store = fetch_models(data_dir / "models")
    ensure_tuned(store.root)
    return store


@pytest.fixture(scope="session")
def triton_env(data_dir: Path) -> TritonEnvironment:
    env_dir = os.environ.get("FACEREC_TRITON__ENV_DIR")
    return ensure_environment(Path(env_dir) if env_dir else data_dir / "triton-env")


def local_triton(model_store: ModelStore, env: TritonEnvironment, log_dir: Path) -> TritonServer:
    """A Triton on free ports serving the fetched CPU repository (start it with ``with``)."""
    return TritonServer(
        env,
        model_store.repository("cpu"),
        log_dir / "triton.log",
        TritonPorts.free(),
        list(SERVED_MODELS),
    )


@pytest.fixture(scope="session")
def triton_server(
    model_store: ModelStore, triton_env: TritonEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    with local_triton(model_store, triton_env, tmp_path_factory.mktemp("triton")) as server:
        yield server


@pytest.fixture
async def triton(triton_server: TritonServer) -> AsyncIterator[TritonModels]:
    async with TritonModels(triton_server.grpc_url, timeout_s=60.0) as client:
        yield client


@pytest.fixture(scope="session")
def photos(data_dir: Path) -> Path:
    return fetch_photos(data_dir / "testdata")
