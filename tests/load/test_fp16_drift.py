"""The FP16 drift measurement's arithmetic and its two FP16 models, on small made-up data."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from loadtests.fp16_drift import Drift, flips, fp16_model, fp16_storage, pair_scores, pairs, report

pytestmark = pytest.mark.unit


def unit_rows(rng: np.random.Generator, n: int, dim: int = 16) -> np.ndarray:
    rows = rng.standard_normal((n, dim))
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_pairs_are_every_two_samples_split_by_person() -> None:
    labels = ["obama"] * 20 + ["biden"] * 4
    genuine, impostor = pairs(labels)
    assert len(genuine) == 190 + 6 and len(impostor) == 20 * 4
    assert all(labels[a] == labels[b] and a < b for a, b in genuine)
    assert all(labels[a] != labels[b] for a, b in impostor)
    assert {tuple(p) for p in np.concatenate([genuine, impostor])} == set(
        itertools.combinations(range(24), 2)
    )


def test_pair_scores_are_the_cosines_of_the_named_rows() -> None:
    rng = np.random.default_rng(0)
    first, second = unit_rows(rng, 6), unit_rows(rng, 6)
    index = np.array([[0, 1], [2, 5], [4, 4]])
    expected = [float(first[a] @ second[b]) for a, b in index]
    np.testing.assert_allclose(pair_scores(first, second, index), expected, rtol=1e-6)


def test_drift_is_the_absolute_change_per_pair() -> None:
    reference = np.linspace(-0.2, 0.9, 101)
    gaps = np.arange(101) / 1000  # 0 … 0.1, one of each
    drift = Drift.between(reference, reference + gaps * np.where(np.arange(101) % 2, 1, -1))
    assert drift.n == 101
    assert drift.max == pytest.approx(0.1)
    assert drift.p99 == pytest.approx(0.099)
    assert drift.mean == pytest.approx(0.05)
    assert Drift.between(reference, reference) == Drift(101, 0.0, 0.0, 0.0)


def test_a_decision_changes_only_when_the_threshold_lies_between_the_scores() -> None:
    reference = np.array([0.10, 0.379, 0.38, 0.381, 0.70])
    other = np.array([0.37, 0.380, 0.3799, 0.390, 0.20])
    # 0.379 → 0.380 crosses up, 0.38 → 0.3799 crosses down, 0.70 → 0.20 crosses down.
    assert flips(reference, other, 0.38) == 3
    assert flips(reference, reference, 0.38) == 0


def test_the_report_clears_a_run_that_moves_scores_by_rounding_noise() -> None:
    rng = np.random.default_rng(1)
    fp32 = unit_rows(rng, 12)
    noise = fp32 + rng.normal(0, 1e-5, fp32.shape).astype(np.float32)
    text = report(
        fp32, {"noise": noise / np.linalg.norm(noise, axis=1, keepdims=True)}, ["a"] * 6 + ["b"] * 6, 0.38
    )
    assert "30 genuine pairs, 36 impostor pairs" in text
    assert "Decisions changed at 0.38: 0." in text
    assert "no GPU variant needed" in text


def test_the_report_asks_for_a_gpu_threshold_when_a_decision_flips() -> None:
    rng = np.random.default_rng(2)
    base = unit_rows(rng, 1)[0]
    other = unit_rows(rng, 1)[0]
    other -= (other @ base) * base
    other /= np.linalg.norm(other)
    # Two faces of one person at cosine 0.385, then 0.375 after the "FP16" run moves one of them.
    # A third face, of another person, far from both.
    fp32 = np.stack([base, 0.385 * base + np.sqrt(1 - 0.385**2) * other, -base])
    moved = np.stack([base, 0.375 * base + np.sqrt(1 - 0.375**2) * other, -base])
    text = report(fp32, {"moved": moved.astype(np.float32)}, ["a", "a", "b"], 0.38)
    assert "Decisions changed at 0.38: 2." in text  # both FP16, and FP32 × FP16
    assert "needs a GPU variant" in text


def tiny_model() -> onnx.ModelProto:
    """x [N, 4] → x @ W + b [N, 3], FP32."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.normal(0, 1, (4, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.normal(0, 1, 3).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = session.run(None, {"x": x})
    return np.asarray(y)


def test_both_fp16_models_take_and_give_fp32_and_round_as_fp16() -> None:
    model = tiny_model()
    x = np.random.default_rng(4).normal(0, 1, (5, 4)).astype(np.float32)
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    half = {i.name: numpy_helper.to_array(i) for i in fp16_model(model).graph.initializer}
    assert all(half[name].dtype == np.float16 for name in weights)

    def fp16(values: np.ndarray) -> np.ndarray:
        return values.astype(np.float16).astype(np.float32)

    stored = run(fp16_storage(model), x)
    assert stored.dtype == np.float32
    # Every value that left a node went through FP16: the output is exactly representable.
    np.testing.assert_array_equal(stored, fp16(stored))
    expected = fp16(fp16(x @ fp16(weights["W"])) + fp16(weights["b"]))
    np.testing.assert_allclose(stored, expected, rtol=2e-3, atol=2e-3)
    converted = run(fp16_model(model), x)
    assert converted.dtype == np.float32
    np.testing.assert_allclose(converted, x @ weights["W"] + weights["b"], rtol=1e-2, atol=1e-2)
