"""The real tritonserver binary serving the real models through the Python backend."""

import asyncio
from pathlib import Path

import httpx
import numpy as np
import pytest

from orchestrator.clients.triton import TritonModels
from orchestrator.core.errors import UpstreamUnavailable
from orchestrator.modelrepo.catalog import ARCFACE, DEFAULT_MODELS, SERVED_MODELS
from orchestrator.runtime.allocator import malloc_environment
from orchestrator.runtime.triton_server import TritonServer

pytestmark = pytest.mark.integration


def test_all_models_are_ready(triton_server: TritonServer) -> None:
    index = httpx.post(f"{triton_server.http_url}/v2/repository/index", timeout=10).json()
    ready = {(m["name"], m["version"]) for m in index if m.get("state") == "READY"}
    # Other arcface versions may be listed (UNAVAILABLE) after a rollout test unloaded them.
    assert ready == {(name, "1") for name in SERVED_MODELS}


async def test_tensor_names_and_batch_size_come_from_triton(triton: TritonModels) -> None:
    info = await triton.info("arcface")
    assert info.inputs == ("input",) and info.outputs == ("output",)
    assert info.max_batch_size == ARCFACE.max_batch_size


async def test_a_batch_larger_than_max_batch_size_is_split(triton: TritonModels) -> None:
    batch = np.random.default_rng(0).uniform(-1, 1, (70, 1, 64, 64)).astype(np.float32)
    out = await triton.infer("face_landmarks", batch)
    assert out["output"].shape == (70, 136)
    single = await triton.infer("face_landmarks", batch[65:66])
    np.testing.assert_allclose(out["output"][65], single["output"][0], atol=1e-5)


async def test_a_bad_request_fails_alone_with_a_clear_error(triton: TritonModels) -> None:
    info = await triton.info("arcface")
    wrong = np.zeros((1, 3, 100, 100), np.float32)
    with pytest.raises(UpstreamUnavailable):
        await triton._infer_one(info, wrong)
    ok = await triton.infer("arcface", np.zeros((2, 3, 112, 112), np.float32))
    assert ok["output"].shape == (2, 512)


async def arcface_counts(triton: TritonModels) -> tuple[int, int]:
    stats = await triton.statistics("arcface", "1")
    model = stats["model_stats"][0]
    return int(model.get("inference_count", 0)), int(model.get("execution_count", 0))


async def test_concurrent_callers_are_batched(triton: TritonModels) -> None:
    before = await arcface_counts(triton)
    rng = np.random.default_rng(1)
    faces = rng.uniform(-1, 1, (48, 1, 3, 112, 112)).astype(np.float32)
    results = await asyncio.gather(*(triton.infer("arcface", face) for face in faces))
    after = await arcface_counts(triton)
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == 48
    assert executions < inferences, f"{executions} executions for {inferences} inferences"
    # Batching must not mix answers up: each caller gets the embedding of its own face.
    alone = await triton.infer("arcface", faces[17])
    np.testing.assert_allclose(results[17]["output"], alone["output"], atol=1e-4)


def test_model_processes_run_with_the_allocator_settings(triton_server: TritonServer) -> None:
    """The Python backend's stubs (where inference runs) inherit them from tritonserver."""
    assert triton_server.pid is not None
    stubs = [
        pid
        for pid in _children(triton_server.pid)
        if b"triton_python_backend_stub" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]
    assert len(stubs) >= len(DEFAULT_MODELS)
    for pid in stubs:
        environ = dict(
            item.split(b"=", 1)
            for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if b"=" in item
        )
        expected = {k.encode(): v.encode() for k, v in malloc_environment().items()}
        assert {k: environ.get(k) for k in expected} == expected, pid


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            found += [int(child), *_children(int(child))]
    return found
