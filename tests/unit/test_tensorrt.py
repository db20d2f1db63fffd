"""Every embedder version carries its own TensorRT engine name; the name changes nothing else.

ONNX Runtime's TensorRT cache names an engine after the graph name and a hash of the file
name and tensor names, which every ``arcface`` version shares. The embedders here are
small stand-ins of one architecture that differ only in their weights, as a retrained model
would.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from orchestrator.modelrepo.catalog import ARCFACE
from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.modelrepo.importer import add_version, derive
from orchestrator.modelrepo.repository import MODEL_FILE, TARGETS
from orchestrator.modelrepo.tensorrt import engine_identity, with_engine_identity
from orchestrator.modelrepo.variants import Normalization

pytestmark = pytest.mark.unit


def embedder(seed: int) -> onnx.ModelProto:
    """[batch, 3, 112, 112] → [batch, 512]: channel means times a seeded matrix."""
    weights = np.random.default_rng(seed).standard_normal((3, 512)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("MatMul", ["flat", "weights"], ["output"]),
        ],
        "torch-jit-export",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 112, 112])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 512])],
        [numpy_helper.from_array(weights, "weights")],
    )
    # IR 8 (ONNX 1.10): what the ONNX Runtime here reads, whatever the onnx package defaults to.
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    """An empty store: no version of ``arcface`` yet, in either target."""
    store = ModelStore(tmp_path / "models")
    store.batched.mkdir(parents=True)
    for target in TARGETS:
        (store.repository(target) / ARCFACE.name).mkdir(parents=True)
    return store


def served(store: ModelStore, target: str, version: int) -> onnx.ModelProto:
    return onnx.load(str(store.repository(target) / ARCFACE.name / str(version) / MODEL_FILE))


def tensor_names(model: onnx.ModelProto) -> list[str]:
    graph = model.graph
    return [v.name for v in [*graph.input, *graph.output]] + [o for n in graph.node for o in n.output]


def test_versions_of_one_architecture_get_an_engine_name_each(store: ModelStore) -> None:
    first = add_version(store, embedder(0), Normalization())
    rotated = derive(store, "rotated")  # from version 1, as `facerec models derive` does
    retrained = add_version(store, embedder(1), Normalization())
    again = add_version(store, embedder(0), Normalization())
    versions = [first, rotated, retrained, again]
    assert versions == [1, 2, 3, 4]

    names = {}
    for version in versions:
        cpu, gpu = (served(store, target, version) for target in TARGETS)
        assert gpu.graph.name == cpu.graph.name == engine_identity(gpu, ARCFACE.name, version)
        assert gpu.graph.name.startswith(f"{ARCFACE.name}_v{version}_")
        names[version] = gpu.graph.name
    assert len(set(names.values())) == len(versions), names
    # What ONNX Runtime's own cache id sees is the same for the retrained version: only the
    # graph name keeps it from loading version 1's engine.
    assert tensor_names(served(store, "gpu", retrained)) == tensor_names(served(store, "gpu", first))


def test_the_identity_is_stable_and_leaves_the_model_alone() -> None:
    model = embedder(0)
    named = with_engine_identity(model, ARCFACE.name, 2)
    assert model.graph.name == "torch-jit-export", "the argument is not modified"
    assert engine_identity(model, ARCFACE.name, 2) == named.graph.name
    assert with_engine_identity(named, ARCFACE.name, 2).graph.name == named.graph.name
    assert engine_identity(model, ARCFACE.name, 3) != named.graph.name
    assert engine_identity(model, "face_detector", 2) != named.graph.name
    assert engine_identity(embedder(1), ARCFACE.name, 2) != named.graph.name

    probe = np.random.default_rng(5).uniform(-1, 1, (4, 3, 112, 112)).astype(np.float32)
    before, after = (
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"input": probe}
        )[0]
        for m in (model, named)
    )
    np.testing.assert_array_equal(before, after)
