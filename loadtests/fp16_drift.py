"""How far FP16 moves the embedder's similarities, and whether the threshold needs a GPU variant.

``python -m loadtests.fp16_drift`` (seconds, no server): the faces of the threshold's
calibration set (README, "Match threshold: how it was calibrated": the five Obama photos
and Biden's, each also EXIF-rotated, scaled to 30 % and re-encoded at quality 25) are
aligned by the models in ONNX Runtime (``loadtests.chain``), then each crop is embedded, in
ONNX Runtime on the CPU, by the arcface model as shipped (FP32) and in two FP16 forms: as
onnxconverter-common converts it, with FP32 inputs and outputs (``keep_io_types``, as
Triton's TensorRT FP16 mode keeps them), which ONNX Runtime's x86 kernels compute in FP32
with only the weights rounded; and with every node's output rounded through FP16 as well
(``fp16_storage``), as a GPU stores activations. Genuine pairs are two samples of one
person, impostor pairs samples of two.

The drift of a pair is ``|cos16 − cos32|``: both faces embedded in FP16 (a GPU gallery
probed on the GPU), and mixed, one face in FP32 and the other in FP16 (a gallery enrolled
on the CPU probed on the GPU). The threshold needs a GPU variant if FP16 changes the
decision of a pair at it, or moves a score by as much as the shipped value's rounding
(0.005): below that no calibration could tell the two apart. TensorRT's FP16 kernels are
not these, so ``make gpu-check`` applies the same rule to the GPU's own embeddings.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from onnxconverter_common import float16

from loadtests.chain import OrtChain
from loadtests.stack import cpu_repository, data_dir
from orchestrator.modelrepo.catalog import ARCFACE
from orchestrator.pipeline.calibration import DEFAULT_MATCH_THRESHOLD, Calibration, calibrate
from orchestrator.pipeline.face_pipeline import l2_normalize
from orchestrator.pipeline.vision.align import embedder_input
from tests.support import augment
from tests.support.photos import fetch_photos

NEEDS_GPU_VARIANT = "the threshold needs a GPU variant"
ROUNDING = 0.005
"""Half the last digit of the shipped threshold (0.38): a smaller drift is below what it states."""

SAMPLES = {
    "Barack Obama": [
        "obama.jpg",
        "obama2.jpg",
        "obama3.jpg",
        "obama_partial_face.jpg",
        "obama_partial_face2.jpg",
    ],
    "Joe Biden": ["biden.jpg"],
}
VARIANTS: dict[str, Callable[[bytes], bytes]] = {
    "": lambda data: data,
    "@exif90": augment.rotated_by_exif,
    "@x0.3": lambda data: augment.scaled(data, 0.3),
    "@q25": lambda data: augment.reencoded(data, 25),
}


@dataclass(frozen=True)
class Drift:
    """|other − reference| over ``n`` pair scores."""

    n: int
    max: float
    p99: float
    mean: float

    @classmethod
    def between(cls, reference: np.ndarray, other: np.ndarray) -> Drift:
        gap = np.abs(np.asarray(other, np.float64) - np.asarray(reference, np.float64))
        return cls(int(gap.size), float(gap.max()), float(np.percentile(gap, 99)), float(gap.mean()))


def pairs(labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) index pairs [P, 2] of every two samples, by whether their labels agree."""
    genuine: list[tuple[int, int]] = []
    impostor: list[tuple[int, int]] = []
    for a, b in itertools.combinations(range(len(labels)), 2):
        (genuine if labels[a] == labels[b] else impostor).append((a, b))
    return np.array(genuine, np.int64).reshape(-1, 2), np.array(impostor, np.int64).reshape(-1, 2)


def pair_scores(first: np.ndarray, second: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Cosine of ``first[i]`` and ``second[j]`` for each (i, j) row of ``index`` [P, 2]; rows unit length."""
    return np.einsum("pd,pd->p", first[index[:, 0]], second[index[:, 1]])


def flips(reference: np.ndarray, other: np.ndarray, threshold: float) -> int:
    """Pairs whose decision (match is score ≥ threshold) differs between the two runs."""
    return int(np.count_nonzero((reference >= threshold) != (other >= threshold)))


def fp16_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weights and activations in FP16, inputs and outputs still FP32 (onnxconverter-common)."""
    with warnings.catch_warnings():
        # It warns once per weight below FP16's smallest normal number, which it clamps: expected.
        warnings.simplefilter("ignore", UserWarning)
        return float16.convert_float_to_float16(model, keep_io_types=True)


def fp16_storage(model: onnx.ModelProto) -> onnx.ModelProto:
    """The FP32 graph with ``fp16_model``'s weights and every node's output rounded to FP16.

    ONNX Runtime has no FP16 kernels for these ops on x86 CPUs: it runs ``fp16_model`` in
    FP32 between casts it inserts, and drops the round trips through FP16 between nodes, so
    only the weights are rounded. Here each output goes through FP16 explicitly, as a GPU
    stores activations between layers (arithmetic inside a node stays FP32).
    """
    half = {init.name: numpy_helper.to_array(init) for init in fp16_model(model).graph.initializer}
    rounded = copy.deepcopy(model)
    for init in rounded.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            init.CopyFrom(numpy_helper.from_array(half[init.name].astype(np.float32), init.name))
    nodes = []
    for node in rounded.graph.node:
        nodes.append(node)
        if node.op_type in ("Reshape", "Flatten"):  # moves values, computes nothing
            continue
        for i, name in enumerate(node.output):
            node.output[i] = f"{name}/fp32"
            nodes.append(helper.make_node("Cast", [f"{name}/fp32"], [f"{name}/fp16"], to=TensorProto.FLOAT16))
            nodes.append(helper.make_node("Cast", [f"{name}/fp16"], [name], to=TensorProto.FLOAT))
    del rounded.graph.node[:]
    rounded.graph.node.extend(nodes)
    return rounded


def embed(model: onnx.ModelProto, crops: np.ndarray) -> np.ndarray:
    """[N, 112, 112, 3] uint8 aligned crops → [N, 512] unit embeddings, as the CPU repository runs it."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    (vectors,) = session.run(None, {ARCFACE.input.name: embedder_input(crops)})
    return l2_normalize(vectors)


def aligned_crops(photos: Path, repository: Path) -> tuple[np.ndarray, list[str]]:
    """The largest face of every photo and variant, aligned to 112×112, and its person."""
    chain = OrtChain(repository)
    crops, labels = [], []
    for person, names in SAMPLES.items():
        for name in names:
            data = (photos / name).read_bytes()
            for tag, variant in VARIANTS.items():
                (faces,) = chain.analyse([variant(data)])
                if not faces or faces[0].crop is None:
                    raise RuntimeError(f"no face in {name}{tag}")
                crops.append(faces[0].crop)
                labels.append(person)
    return np.stack(crops), labels


def _row(run: str, pairs: str, d: Drift) -> str:
    return f"| {run} | {pairs} | {d.n} | {d.max:.5f} | {d.p99:.5f} | {d.mean:.5f} |"


def _calibration(label: str, c: Calibration) -> str:
    return f"| {label} | {c.min_genuine:.4f} | {c.max_impostor:.4f} | {c.threshold:.4f} |"


def report(fp32: np.ndarray, runs: dict[str, np.ndarray], labels: Sequence[str], threshold: float) -> str:
    """Markdown: per FP16 run the drift per pair kind, each face's own cosine, its calibration, the verdict.

    ``fp32`` and each of ``runs`` are [N, D] unit embeddings of the same N faces, whose
    persons are ``labels``.
    """
    genuine, impostor = pairs(labels)
    reference = {"genuine": pair_scores(fp32, fp32, genuine), "impostor": pair_scores(fp32, fp32, impostor)}
    drift_rows, own_rows = [], []
    calibrations = [
        _calibration("FP32", calibrate(reference["genuine"].tolist(), reference["impostor"].tolist()))
    ]
    flipped, largest = 0, 0.0
    for run, vectors in runs.items():
        scored = {}
        for kind, index in (("genuine", genuine), ("impostor", impostor)):
            for how, first in (("both FP16", vectors), ("FP32 × FP16", fp32)):
                scored[kind, how] = pair_scores(first, vectors, index)
                drift = Drift.between(reference[kind], scored[kind, how])
                drift_rows.append(_row(run, f"{kind}, {how}", drift))
                flipped += flips(reference[kind], scored[kind, how], threshold)
                largest = max(largest, drift.max)
        own = np.einsum("nd,nd->n", fp32, vectors)
        own_rows.append(f"| {run} | {own.min():.6f} | {own.mean():.6f} |")
        g, i = scored["genuine", "both FP16"], scored["impostor", "both FP16"]
        calibrations.append(_calibration(run, calibrate(g.tolist(), i.tolist())))
    margin = float(np.abs(np.concatenate(list(reference.values())) - threshold).min())
    needed = flipped > 0 or largest >= ROUNDING
    verdict = (
        f"{NEEDS_GPU_VARIANT}: recalibrate on FP16 embeddings."
        if needed
        else "no GPU variant needed: FP16 changes no decision, and moves no score by as much as "
        "the shipped threshold's own rounding."
    )
    return (
        "\n".join(
            [
                f"{len(labels)} faces: {len(genuine)} genuine pairs, {len(impostor)} impostor pairs; "
                f"threshold {threshold}.",
                "",
                "| FP16 run | pairs | n | max drift | p99 | mean |",
                "|---|---|---|---|---|---|",
                *drift_rows,
                "",
                "| FP16 run | one face's FP32 × FP16 cosine, min | mean |",
                "|---|---|---|",
                *own_rows,
                "",
                "| calibration | min genuine | max impostor | threshold |",
                "|---|---|---|---|",
                *calibrations,
                "",
                f"Decisions changed at {threshold}: {flipped}. Largest drift {largest:.5f}; the nearest pair "
                f"is {margin:.3f} from the threshold; the shipped value's rounding is {ROUNDING}.",
                f"Verdict: {verdict}",
            ]
        )
        + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.fp16_drift", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--model", type=Path, help="FP32 arcface ONNX (default: version 1 of the CPU repository)"
    )
    parser.add_argument("--threshold", type=float, default=DEFAULT_MATCH_THRESHOLD)
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)

    repository = cpu_repository()
    model = onnx.load(str(args.model or repository / ARCFACE.name / "1" / "model.onnx"))
    crops, labels = aligned_crops(fetch_photos(data_dir() / "testdata"), repository)
    runs = {
        "FP16 weights": embed(fp16_model(model), crops),
        "FP16 weights and activations": embed(fp16_storage(model), crops),
    }
    text = report(embed(model, crops), runs, labels, args.threshold)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
