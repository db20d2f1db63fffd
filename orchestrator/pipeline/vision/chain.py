"""The whole analysis of a batch of images, for whoever holds the three models.

decode → detect → landmarks → align → embed, each model run once for the whole batch. It
runs inside Triton's ``face_chain`` model (one request per image from the orchestrator,
batched by Triton) and in the workers of the physical limit, so both do the same work.
Models are callables: ONNX Runtime sessions in-process, or Triton BLS calls. It needs only
numpy and OpenCV, as Triton's Python-backend stub has them.

Embeddings leave it as the model gives them; the orchestrator L2-normalises them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from orchestrator.core.errors import ImageError
from orchestrator.pipeline.vision import align, detect, landmarks
from orchestrator.pipeline.vision.decode import DecodeLimits, decode_pixels, for_faces, read_header
from orchestrator.pipeline.vision.faces import Analysis, Face

Model = Callable[[np.ndarray], np.ndarray]
"""A batch [N, ...] in, the first output [N, ...] out (the detector's: scores and boxes)."""
Detector = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
Embedder = Callable[[np.ndarray, str], np.ndarray]
"""Crops' input batch and the embedder version → [N, D] raw embeddings."""

STAGES = ("decode", "detect", "landmarks", "align", "embed")


@dataclass(frozen=True)
class ChainOptions:
    """What a request asks of the chain; the orchestrator's settings, sent with each image."""

    embedder_version: str = "1"
    embed: bool = True
    detect: detect.DetectParams = field(default_factory=detect.DetectParams)
    limits: DecodeLimits = field(default_factory=DecodeLimits)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> ChainOptions:
        raw = json.loads(text)
        return cls(
            embedder_version=str(raw["embedder_version"]),
            embed=bool(raw["embed"]),
            detect=detect.DetectParams(**raw["detect"]),
            limits=DecodeLimits(**raw["limits"]),
        )


def analyse_batch(
    images: Sequence[bytes],
    options: Sequence[ChainOptions],
    detector: Detector,
    landmark_model: Model,
    embedder: Embedder,
) -> list[Analysis | ImageError]:
    """Each image's analysis, or the ImageError that stopped it alone."""
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round((now - clock) * 1000, 3)
        clock = now

    results: list[Analysis | ImageError] = []
    decoded = []
    for data, option in zip(images, options, strict=True):
        try:
            header = read_header(data, option.limits)
            decoded.append((len(results), data, option, header, decode_pixels(data, header)))
            results.append(Analysis([], 0, 0))
        except ImageError as error:
            results.append(error)
    lap("decode")
    if decoded:
        scores, boxes = detector(np.stack([detect.detector_input(d[4].rgb) for d in decoded]))
    owners: list[tuple[Analysis, Face, ChainOptions]] = []
    patches, rects, sources = [], [], []
    for row, (slot, data, option, header, image) in enumerate(decoded):
        found = detect.detections(scores[row], boxes[row], image.width, image.height, option.detect)
        analysis = results[slot]
        assert isinstance(analysis, Analysis)
        analysis.width, analysis.height = round(image.width / image.scale), round(image.height / image.scale)
        analysis.faces = [Face(box=d.box / image.scale, det_score=d.score) for d in found]
        if not found:
            continue
        try:  # a face too small at the detector's scale is cut from a finer decode
            source, face_boxes = for_faces(data, header, image, [d.box for d in found], option.limits)
        except ImageError as error:
            results[slot] = error
            continue
        for face, box in zip(analysis.faces, face_boxes, strict=True):
            rect = landmarks.crop_rect(box, source.width, source.height)
            owners.append((analysis, face, option))
            rects.append(rect)
            sources.append(source)
            patches.append(landmarks.landmark_input(source.rgb, rect))
    lap("detect")
    if owners:
        marks = landmark_model(np.stack(patches))
        lap("landmarks")
        for (_, face, _), rect, raw, source in zip(owners, rects, marks, sources, strict=True):
            points = landmarks.landmarks_in_image(raw, rect)
            points5 = landmarks.five_points(points)
            face.crop = align.align(source.rgb, points5)
            face.sharpness = align.sharpness(face.crop)
            face.landmarks68 = points / source.scale
            face.points5 = points5 / source.scale
        lap("align")
        _embed(owners, embedder)
        if any(option.embed for _, _, option in owners):
            lap("embed")
    for result in results:
        if isinstance(result, Analysis):
            result.timings_ms = dict(timings)
    return results


def _embed(owners: list[tuple[Analysis, Face, ChainOptions]], embedder: Embedder) -> None:
    """One embedder batch per version asked for."""
    by_version: dict[str, list[Face]] = {}
    for _, face, option in owners:
        if option.embed:
            by_version.setdefault(option.embedder_version, []).append(face)
    for version, faces in by_version.items():
        crops = np.stack([face.crop for face in faces if face.crop is not None])
        for face, vector in zip(faces, embedder(align.embedder_input(crops), version), strict=True):
            face.embedding = vector


# One request's answer as tensors (Triton's outputs without the batch dimension). Every
# face found has landmarks, a crop and a sharpness; embeddings only when asked for.
FACE_COLUMNS = 4 + 1 + 68 * 2 + 5 * 2 + 1
"""box, detection score, 68 landmarks, 5 points, sharpness."""


def to_tensors(analysis: Analysis) -> dict[str, np.ndarray]:
    faces = analysis.faces
    rows = np.zeros((len(faces), FACE_COLUMNS), dtype=np.float32)
    crops = np.zeros((len(faces), align.CROP_SIZE, align.CROP_SIZE, 3), dtype=np.uint8)
    vectors = [face.embedding for face in faces]
    dim = 0 if not faces or any(v is None for v in vectors) else len(vectors[0])  # type: ignore[arg-type]
    embeddings = np.zeros((len(faces), dim), dtype=np.float32)
    for i, face in enumerate(faces):
        assert face.landmarks68 is not None and face.points5 is not None and face.crop is not None
        rows[i, :5] = [*face.box, face.det_score]
        rows[i, 5:141] = face.landmarks68.reshape(-1)
        rows[i, 141:151] = face.points5.reshape(-1)
        rows[i, 151] = face.sharpness
        crops[i] = face.crop
        if dim:
            embeddings[i] = face.embedding
    return {
        "faces": rows,
        "crops": crops,
        "embeddings": embeddings,
        "size": np.array([analysis.width, analysis.height], dtype=np.int32),
        "timings": np.array([analysis.timings_ms.get(s, -1.0) for s in STAGES], dtype=np.float32),
    }


def from_tensors(tensors: dict[str, np.ndarray]) -> Analysis:
    """The inverse of :func:`to_tensors`."""
    embeddings = tensors["embeddings"]
    faces = [
        Face(
            box=row[:4].copy(),
            det_score=float(row[4]),
            landmarks68=row[5:141].reshape(68, 2).copy(),
            points5=row[141:151].reshape(5, 2).copy(),
            crop=crop,
            sharpness=float(row[151]),
            embedding=embeddings[i] if embeddings.shape[1] else None,
        )
        for i, (row, crop) in enumerate(zip(tensors["faces"], tensors["crops"], strict=True))
    ]
    width, height = (int(v) for v in tensors["size"])
    timings = {s: float(t) for s, t in zip(STAGES, tensors["timings"], strict=True) if t >= 0}
    return Analysis(faces, width, height, timings)
