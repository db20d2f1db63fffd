"""``facerec models import``: any ArcFace-style ONNX becomes the next version of ``arcface``.

The model is made batch-dynamic, given the canonical input normalisation, its tensors are
renamed to the names every ``arcface`` version shares (one Triton config serves them all),
and it is run once on a batch to check the shapes before anything is written. Its graph is
named for its version and weights, so TensorRT caches its engine apart from the other
versions' (``tensorrt.py``). The new version directory is written aside and renamed into
place, in both repository targets, each after the version's record (``records.py``): a
version never appears without it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from orchestrator.modelrepo.batching import BATCH_DIM, make_batch_dynamic
from orchestrator.modelrepo.catalog import ARCFACE
from orchestrator.modelrepo.fetch import ModelFetchError, ModelStore, sha256_file
from orchestrator.modelrepo.records import Source, VersionRecord, add_record
from orchestrator.modelrepo.repository import MODEL_FILE, TARGETS, backend_model_source, replace_file
from orchestrator.modelrepo.tensorrt import with_engine_identity
from orchestrator.modelrepo.variants import Normalization, with_normalization


class ModelImportError(ModelFetchError):
    """The model does not fit ``arcface``; nothing was written."""


def _rename(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise ModelImportError("an embedder has exactly one input and one output")
    renames = {inputs[0].name: ARCFACE.inputs[0].name, graph.output[0].name: ARCFACE.outputs[0].name}
    for node in graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    inputs[0].name = ARCFACE.inputs[0].name
    graph.output[0].name = ARCFACE.outputs[0].name
    return model


def prepare(model: onnx.ModelProto, normalization: Normalization) -> onnx.ModelProto:
    """Rename, normalise and make batch-dynamic; then check it by running a batch of three."""
    model = _rename(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    if [d.dim_value for d in dims[1:]] != list(ARCFACE.input.dims):
        raise ModelImportError(
            f"input must be [N, 3, 112, 112], got {[d.dim_value or d.dim_param for d in dims]}"
        )
    if dims[0].dim_param != BATCH_DIM:
        model = make_batch_dynamic(model)
    model = with_normalization(model, normalization)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    probe = np.random.default_rng(0).uniform(-1, 1, (3, *ARCFACE.input.dims)).astype(np.float32)
    (out,) = session.run([ARCFACE.outputs[0].name], {ARCFACE.inputs[0].name: probe})
    expected = (3, *ARCFACE.outputs[0].dims)
    if out.shape != expected:
        raise ModelImportError(
            f"output shape {list(out.shape)} for a batch of 3; "
            f"every arcface version must give {list(expected)}"
        )
    if not np.isfinite(out).all() or np.allclose(out[0], out[1]):
        raise ModelImportError("the model's output is not finite or does not depend on its input")
    return model


def add_version(
    store: ModelStore,
    model: onnx.ModelProto,
    normalization: Normalization,
    *,
    source: Source = "imported",
    origin: str | None = None,
    sha256: str | None = None,
) -> int:
    """Write ``model`` as the next ``arcface`` version in both targets; returns the version.

    ``origin`` and ``sha256`` say what it was made from, for its record.
    """
    prepared = prepare(model, normalization)
    record = VersionRecord.now(
        source,
        origin=origin,
        sha256=sha256,
        normalization=None if normalization.is_canonical else str(normalization),
    )
    version = max(store.versions(ARCFACE.name), default=0) + 1
    onnx_file = store.batched / f"{ARCFACE.name}-{version}.onnx"
    onnx.save(with_engine_identity(prepared, ARCFACE.name, version), str(onnx_file))
    for target in TARGETS:
        model_dir = store.repository(target) / ARCFACE.name
        staging = model_dir / f".{version}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        shutil.copyfile(onnx_file, staging / MODEL_FILE)
        if target == "cpu":
            (staging / "model.py").write_text(backend_model_source())
        add_record(model_dir, version, record)
        staging.rename(model_dir / str(version))
    return version


def derive(store: ModelStore, kind: str) -> int:
    """Build a second version from v1 (``int8`` or ``rotated``) once; later calls return it."""
    from orchestrator.modelrepo import variants

    record = store.derived
    known: dict[str, int] = json.loads(record.read_text()) if record.is_file() else {}
    if kind in known and known[kind] in store.versions(ARCFACE.name):
        return known[kind]
    builders = {"int8": variants.int8_dynamic, "rotated": variants.rotated}
    if kind not in builders:
        raise ModelImportError(f"unknown variant {kind!r}; choose from {sorted(builders)}")
    v1 = onnx.load(str(store.batched / f"{ARCFACE.name}-1.onnx"))
    version = add_version(store, builders[kind](v1), Normalization(), source="derived", origin=kind)
    known[kind] = version
    # By rename: a torn record would break every later derive, and the store may share it.
    replace_file(record, json.dumps(known, indent=2))
    return version


def import_file(store: ModelStore, path: Path, normalization: Normalization) -> int:
    try:
        model = onnx.load(str(path))
    except Exception as error:  # onnx raises protobuf's DecodeError as well as OSError
        raise ModelImportError(f"{path}: not a readable ONNX model ({error})") from error
    return add_version(store, model, normalization, origin=path.name, sha256=sha256_file(path))
