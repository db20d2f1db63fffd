"""A version imported from an arcface_torch checkpoint rolls out and back like any other, under traffic.

Random weights stand in for a real checkpoint, so its embeddings say nothing about who is
who: what is checked is the rollout itself. It reaches ``done`` with no failed request,
answers carry the new version, every stored face was re-embedded by the imported model (the
database's vectors are that model's, recomputed here from the stored crops), and the
rollback brings version 1 and its right answers back. The store is a private copy, so the
version added here is no other test's.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
import pytest

from orchestrator.db import Gallery, make_engine
from orchestrator.gallery.index_sync import decode_crops
from orchestrator.modelrepo.catalog import ARCFACE
from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.modelrepo.pth import cosines, import_checkpoint
from orchestrator.modelrepo.repository import MODEL_FILE
from orchestrator.pipeline.vision.align import embedder_input
from orchestrator.runtime.triton_env import TritonEnvironment
from orchestrator.runtime.triton_server import TritonServer
from tests.conftest import local_triton
from tests.e2e.flows import create_person, enrol
from tests.support import augment
from tests.support.rollout_traffic import follow_rollout, recognition_traffic
from tests.support.stack import ADMIN_KEY, Stack, redis_url, sqlite_url
from tests.support.stores import linked_copy

try:
    import torch
except ImportError:  # the pth extra; `make` installs it, so under CI this is a failure
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("PyTorch (the pth extra) is not installed", allow_module_level=True)

from tests.support.arcface_torch import random_backbone, save_like_arcface_torch

pytestmark = pytest.mark.integration

CHECKPOINT = "glint360k_cosface_r18_fp16_0.1.pth"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stack's data dir: its ``models/`` is the private store Triton serves."""
    return tmp_path_factory.mktemp("imported-rollout")


@pytest.fixture(scope="module")
def imported(model_store: ModelStore, root: Path) -> tuple[ModelStore, str]:
    store = linked_copy(model_store, root / "models")
    # Blocky random images set the batch norm statistics: enough for a well-conditioned net.
    rng = np.random.default_rng(5)
    images = torch.from_numpy(rng.uniform(-1, 1, (16, 3, 14, 14)).astype(np.float32))
    images = images.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
    net = random_backbone("r18", seed=5, images=images)
    checkpoint = save_like_arcface_torch(net, root / CHECKPOINT, fp16=True)
    return store, str(import_checkpoint(store, checkpoint, "r18"))


@pytest.fixture(scope="module")
def own_triton(
    imported: tuple[ModelStore, str], triton_env: TritonEnvironment, root: Path
) -> Iterator[TritonServer]:
    with local_triton(imported[0], triton_env, root) as server:
        yield server


@pytest.fixture(scope="module")
def stack(own_triton: TritonServer, root: Path) -> Iterator[Stack]:
    env = {"FACEREC_TRITON__METRICS_URL": own_triton.metrics_url, "FACEREC_ROLLOUT__BATCH": "4"}
    running = Stack(root, own_triton, sqlite_url(root), redis_url(), api_env=env).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def people(stack: Stack, photos: Path) -> dict[str, int]:
    with stack.client() as client:
        obama = create_person(client, "Barack Obama")["id"]
        biden = create_person(client, "Joe Biden")["id"]
        for name, person in (("obama.jpg", obama), ("obama2.jpg", obama), ("biden.jpg", biden)):
            data = (photos / name).read_bytes()
            enrol(client, person, data)
            enrol(client, person, augment.scaled(data, 0.7))
    return {"Barack Obama": obama, "Joe Biden": biden}


def probes(photos: Path) -> list[tuple[str, bytes]]:
    obama3 = (photos / "obama3.jpg").read_bytes()
    biden = (photos / "biden.jpg").read_bytes()
    return [("Barack Obama", obama3), ("Joe Biden", augment.reencoded(biden, 50))]


async def there_and_back(stack: Stack, photos: Path, version: str) -> dict[str, Any]:
    """Roll out to ``version`` and back under recognition traffic; what each step saw."""
    records: list[dict[str, Any]] = []
    stop = asyncio.Event()
    samples = probes(photos)
    workers = [
        asyncio.create_task(recognition_traffic(stack.url, samples[i:] + samples[:i], stop, records))
        for i in range(2)
    ]
    seen: dict[str, Any] = {}
    async with httpx.AsyncClient(base_url=stack.url, headers={"X-API-Key": ADMIN_KEY}, timeout=60) as admin:
        await asyncio.sleep(1)
        seen["forward"], seen["forward_states"] = await follow_rollout(
            admin, "/v1/models/rollouts", {"version": version}
        )
        seen["models_live"] = (await admin.get("/v1/models")).json()
        seen["gallery_live"] = (await admin.get("/health/detailed")).json()["gallery"]
        seen["answer_live"] = (
            await admin.post("/v1/recognize", files={"file": ("p.jpg", samples[0][1])}, params={"top_k": 3})
        ).json()
        await asyncio.sleep(1)
        path = f"/v1/models/rollouts/{seen['forward']['rollout_id']}"
        seen["back"], _ = await follow_rollout(admin, f"{path}/rollback")
        await asyncio.sleep(1)
        seen["forward_after"] = (await admin.get(path)).json()
        seen["models_after"] = (await admin.get("/v1/models")).json()
    stop.set()
    await asyncio.gather(*workers)
    seen["traffic"] = records
    return seen


def embedded_by_the_imported_model(store: ModelStore, version: str, database_url: str) -> tuple[int, float]:
    """How many faces have an embedding of ``version``, and its worst cosine with the model's own."""
    engine = make_engine(database_url)
    try:
        gallery = Gallery(engine)
        stored = gallery.crops(limit=1000)
        ids, vectors = gallery.embeddings_of(version, [face_id for face_id, _ in stored])
    finally:
        engine.dispose()
    assert ids.tolist() == [face_id for face_id, _ in stored]
    model = store.repository("cpu") / ARCFACE.name / version / MODEL_FILE
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inputs = embedder_input(decode_crops([png for _, png in stored]))
    expected = session.run([ARCFACE.outputs[0].name], {ARCFACE.inputs[0].name: inputs})[0]
    return len(ids), float(cosines(expected, vectors).min())


def test_an_imported_version_rolls_out_and_back_under_traffic(
    stack: Stack, imported: tuple[ModelStore, str], people: dict[str, int], photos: Path
) -> None:
    store, version = imported
    seen = asyncio.run(there_and_back(stack, photos, version))

    failures = [r for r in seen["traffic"] if r["status"] != 200]
    assert failures == [], failures[:3]
    forward, back = seen["forward"], seen["back"]
    assert forward["state"] == "done" and forward["to_version"] == version, forward
    assert {"loading", "reembedding", "draining", "done"} <= {s for s, _ in seen["forward_states"]}
    assert back["state"] == "done" and seen["forward_after"]["state"] == "rolled_back", back
    served = Counter(r["version"] for r in seen["traffic"])
    assert served["1"] > 0 and served[version] > 0, served
    assert seen["answer_live"]["model_version"] == version

    # Every face was re-embedded, by the imported model, and the live collection holds them all.
    live = seen["gallery_live"]
    assert live["faces"] == live["index_count"] == 6 and live["in_agreement"] is True, live
    count, worst = embedded_by_the_imported_model(store, version, stack.database_url)
    assert count == 6 and worst >= 0.9999, worst

    listed = {v["version"]: v for v in seen["models_live"]["versions"]}
    assert seen["models_live"]["active"]["version"] == version
    assert listed[version]["source"] == "imported" and listed[version]["state"] == "READY"
    assert listed[version]["origin"] == f"{CHECKPOINT} (arcface_torch r18)"
    after = {v["version"]: v for v in seen["models_after"]["versions"]}
    assert seen["models_after"]["active"]["version"] == "1"
    assert after["1"]["state"] == "READY" and after[version]["state"] == "UNAVAILABLE", after

    # Back on version 1, the real model: the right people again.
    with stack.client() as client:
        for name, data in probes(photos):
            answer = client.post("/v1/recognize", files={"file": ("p.jpg", data)}).json()
            assert answer["model_version"] == "1"
            assert answer["faces"][0]["matches"][0]["name"] == name
    print(f"\nimported version {version}: {len(seen['traffic'])} requests, {dict(served)}, 0 failures")
