"""An imported arcface_torch checkpoint embeds real aligned faces as PyTorch does.

The crops come from the real chain (Triton's detector and landmark model, then alignment);
a random iresnet18 takes its batch norm statistics from them, is saved as arcface_torch
saves it (float32, and float16), and is imported with ``facerec models import-pth``. The
imported version, fed the orchestrator's canonical input, must give PyTorch's embedding of
arcface_torch's own input, face by face.
"""

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from orchestrator.cli.main import main
from orchestrator.clients.triton import TritonModels
from orchestrator.modelrepo import pth
from orchestrator.modelrepo.catalog import ARCFACE
from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.modelrepo.repository import MODEL_FILE, TARGETS
from orchestrator.pipeline.face_pipeline import FacePipeline
from orchestrator.pipeline.vision.align import embedder_input
from tests.support import augment
from tests.support.photos import BIDEN, OBAMA
from tests.support.stores import linked_copy

try:
    import torch
except ImportError:  # the pth extra; `make` installs it, so under CI this is a failure
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("PyTorch (the pth extra) is not installed", allow_module_level=True)

from tests.support.arcface_torch import random_backbone, save_like_arcface_torch, torch_input

pytestmark = pytest.mark.integration

MIN_COSINE = 0.9999


async def aligned_crops(triton: TritonModels, photos: Path) -> np.ndarray:
    """[N, 112, 112, 3] uint8 RGB: every face the chain finds in the photos and variants of them."""
    pipeline = FacePipeline(triton)
    crops = []
    for name in OBAMA + BIDEN:
        data = (photos / name).read_bytes()
        for variant in (data, augment.scaled(data, 0.6), augment.reencoded(data, 40)):
            analysis = await pipeline.analyse(variant)
            crops += [face.crop for face in analysis.faces if face.crop is not None]
    return np.stack(crops)


def embed_imported(store: ModelStore, target: str, version: int, crops: np.ndarray) -> np.ndarray:
    path = store.repository(target) / ARCFACE.name / str(version) / MODEL_FILE
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([ARCFACE.outputs[0].name], {ARCFACE.inputs[0].name: embedder_input(crops)})[0]


async def test_an_imported_checkpoint_embeds_real_faces_as_pytorch_does(
    triton: TritonModels, photos: Path, model_store: ModelStore, tmp_path: Path
) -> None:
    crops = await aligned_crops(triton, photos)
    assert len(crops) >= 12
    net = random_backbone("r18", seed=2026, images=torch_input(crops))
    with torch.inference_mode():
        expected = net(torch_input(crops)).numpy()
    store = linked_copy(model_store, tmp_path / "data" / "models")
    data_dir = ["--data-dir", str(tmp_path / "data")]

    for fp16 in (False, True):
        checkpoint = save_like_arcface_torch(net, tmp_path / f"r18-{fp16=}.pth", fp16=fp16)
        before = set(store.versions(ARCFACE.name))
        assert main(["models", "import-pth", str(checkpoint), "--arch", "r18", *data_dir]) == 0
        (version,) = set(store.versions(ARCFACE.name)) - before
        # In half precision the checkpoint lost bits: its reference is the network it loads as.
        reference = expected
        if fp16:
            with torch.inference_mode():
                reference = pth.load_backbone(checkpoint, "r18")(torch_input(crops)).numpy()
            assert pth.cosines(expected, reference).min() > 0.999
        for target in TARGETS:
            cosines = pth.cosines(reference, embed_imported(store, target, version, crops))
            assert cosines.min() >= MIN_COSINE, (fp16, target, cosines)

    # Different faces give different embeddings: the agreement is not that of a constant output.
    unit = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    similarity = unit @ unit.T
    assert similarity[~np.eye(len(unit), dtype=bool)].min() < 0.9, similarity
