"""Fetching the models: checksum refusal, idempotence, and the batch rewrite's fidelity."""

import gzip
import io
import tarfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from orchestrator.modelrepo.catalog import DEFAULT_MODELS
from orchestrator.modelrepo.fetch import ModelFetchError, ModelStore, fetch_models

pytestmark = pytest.mark.unit


def fake_tarball(path: Path) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        data = b"not a model"
        info = tarfile.TarInfo("package/model/fr_feature.onnx")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buffer.getvalue()))
    return path


def test_a_wrong_checksum_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "data" / "models"
    with pytest.raises(ModelFetchError, match="does not match the pinned"):
        fetch_models(target, tarball=fake_tarball(tmp_path / "fake.tgz"))
    assert not target.exists()
    assert list((tmp_path / "data").iterdir()) == []


def test_a_second_fetch_is_a_no_op(model_store: ModelStore) -> None:
    manifest_mtime = model_store.manifest.stat().st_mtime_ns
    fetch_models(model_store.root, tarball=Path("/nonexistent/never-read.tgz"))
    assert model_store.manifest.stat().st_mtime_ns == manifest_mtime


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("spec", DEFAULT_MODELS, ids=lambda s: s.name)
def test_batched_model_gives_the_originals_numbers_batch_by_batch(model_store: ModelStore, spec) -> None:
    original = session(model_store.originals / Path(spec.source).name)
    batched = session(model_store.repository("cpu") / spec.name / "1" / "model.onnx")
    rng = np.random.default_rng(3)
    inputs = rng.uniform(-1, 1, (5, *spec.input.dims)).astype(np.float32)
    expected = [original.run(None, {spec.input.name: x[None]}) for x in inputs]
    one = batched.run(None, {spec.input.name: inputs[:1]})
    five = batched.run(None, {spec.input.name: inputs})
    for k, tensor in enumerate(spec.outputs):
        assert five[k].shape == (5, *tensor.dims)
        np.testing.assert_allclose(one[k][0], expected[0][k][0], atol=1e-5, rtol=1e-4)
        for i in range(5):
            np.testing.assert_allclose(five[k][i], expected[i][k][0], atol=1e-5, rtol=1e-4)
