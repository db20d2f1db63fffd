"""Graph surgery for new embedder versions: input normalisation, INT8 and a rotated space.

Every version of ``arcface`` takes the same canonical input — RGB, (x − 127) / 128,
[N, 3, 112, 112] — so the orchestrator preprocesses once whatever version it calls. A model
trained with another normalisation gets it prepended to its graph at import time.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper, version_converter

CANONICAL_MEAN, CANONICAL_STD = 127.0, 128.0
ROTATION_SEED = 20261122


@dataclass(frozen=True)
class Normalization:
    """How the imported model wants its pixels: (x − mean) / std, in RGB or BGR order."""

    mean: float = CANONICAL_MEAN
    std: float = CANONICAL_STD
    channels: str = "rgb"

    @classmethod
    def parse(cls, text: str) -> Normalization:
        """``"127.5,127.5,bgr"`` → mean 127.5, std 127.5, BGR."""
        parts = [p.strip() for p in text.split(",")]
        if len(parts) != 3 or parts[2] not in ("rgb", "bgr"):
            raise ValueError("normalisation is MEAN,STD,rgb|bgr (e.g. 127.5,127.5,bgr)")
        mean, std = float(parts[0]), float(parts[1])
        if std <= 0:
            raise ValueError("std must be positive")
        return cls(mean, std, parts[2])

    def __str__(self) -> str:
        """The form :meth:`parse` reads: ``127.5,127.5,rgb``."""
        return f"{self.mean:g},{self.std:g},{self.channels}"

    @property
    def is_canonical(self) -> bool:
        return (self.mean, self.std, self.channels) == (CANONICAL_MEAN, CANONICAL_STD, "rgb")


def _rename_input(model: onnx.ModelProto, old: str, new: str) -> None:
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def with_normalization(model: onnx.ModelProto, norm: Normalization) -> onnx.ModelProto:
    """Prepend ``canonical → model normalisation`` so the graph takes the canonical input."""
    if norm.is_canonical:
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    entry = graph.input[0].name
    inner = f"{entry}__model_normalised"
    _rename_input(out, entry, inner)
    # x_model = (x_canonical * 128 + 127 − mean) / std = x_canonical * a + b
    a = CANONICAL_STD / norm.std
    b = (CANONICAL_MEAN - norm.mean) / norm.std
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(a, np.float32), f"{entry}__scale"),
            numpy_helper.from_array(np.array(b, np.float32), f"{entry}__shift"),
        ]
    )
    nodes = [helper.make_node("Mul", [entry, f"{entry}__scale"], [f"{entry}__scaled"])]
    shifted = f"{entry}__shifted" if norm.channels == "bgr" else inner
    nodes.append(helper.make_node("Add", [f"{entry}__scaled", f"{entry}__shift"], [shifted]))
    if norm.channels == "bgr":
        # Only here: an unused initializer draws a warning from ONNX Runtime at every load.
        graph.initializer.append(numpy_helper.from_array(np.array([2, 1, 0], np.int64), f"{entry}__bgr"))
        nodes.append(helper.make_node("Gather", [shifted, f"{entry}__bgr"], [inner], axis=1))
    for node in reversed(nodes):
        graph.node.insert(0, node)
    onnx.checker.check_model(out)
    return out


def rotated(model: onnx.ModelProto, seed: int = ROTATION_SEED) -> onnx.ModelProto:
    """v1 followed by a fixed random orthogonal rotation of its output space.

    Cosines between two embeddings of the same version are unchanged (a rotation keeps
    angles), but a v1 embedding compared with a rotated one is meaningless: exactly what
    a rollout must never mix.
    """
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    output = graph.output[0]
    dim = output.type.tensor_type.shape.dim[1].dim_value
    q, r = np.linalg.qr(np.random.default_rng(seed).standard_normal((dim, dim)))
    q = (q * np.sign(np.diag(r))).astype(np.float32)
    before = f"{output.name}__unrotated"
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == output.name:
                node.output[i] = before
    graph.initializer.append(numpy_helper.from_array(q, f"{output.name}__rotation"))
    graph.node.append(helper.make_node("MatMul", [before, f"{output.name}__rotation"], [output.name]))
    onnx.checker.check_model(out)
    return out


def int8_dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime dynamic INT8 quantisation (weights INT8, activations quantised at run time).

    The exported opset 9 predates what the quantiser emits, so the graph is upgraded to 11
    first. Its embeddings are not v1's (cosine ≈ 0.93 on the same face): a new space.

    A CPU-target variant: TensorRT's ONNX parser has no ConvInteger or DynamicQuantizeLinear,
    so on the GPU target ONNX Runtime would cut the graph around every convolution and run
    those on the CPU; with the explicit profiles of ``tensorrt.py`` (which name only the
    model input) it refuses such a split when the version loads. INT8 under TensorRT needs
    static QDQ quantisation with calibration images instead.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    upgraded = version_converter.convert_version(model, 11)
    with tempfile.TemporaryDirectory() as work:
        source, target = Path(work) / "fp32.onnx", Path(work) / "int8.onnx"
        onnx.save(upgraded, str(source))
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
        return onnx.load(str(target))
