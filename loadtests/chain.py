"""The whole per-image chain in ONNX Runtime inside one process, on a batch of images.

decode → detect → landmarks → align → embed, reusing the orchestrator's pure image code,
with each model run once per batch (chunked at the model's Triton ``max_batch_size``), so
the embedder sees every face of the batch at once. Same graph optimisation level per
model as the CPU Triton repository's config (tuned for this CPU by ``facerec models tune``).
It is the work of each worker of the physical limit (``loadtests.ceiling``) and of the naive
single-process server (one image per request).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from orchestrator.modelrepo import tuning
from orchestrator.modelrepo.catalog import ARCFACE, FACE_DETECTOR, FACE_LANDMARKS, ModelSpec
from orchestrator.modelrepo.repository import MODEL_FILE
from orchestrator.modelrepo.tuning import configured_level
from orchestrator.pipeline.face_pipeline import l2_normalize
from orchestrator.pipeline.vision import align, detect, landmarks
from orchestrator.pipeline.vision.decode import DecodeLimits, decode_pixels, for_faces, read_header
from orchestrator.pipeline.vision.faces import Face


def session(repository: Path, spec: ModelSpec, threads: int = 0) -> ort.InferenceSession:
    """The batch-dynamic model of the CPU repository, at the level its config gives the stub."""
    path = repository / spec.name / "1" / MODEL_FILE
    return tuning.session(path, configured_level(repository, spec), threads)


def _run(model: ort.InferenceSession, spec: ModelSpec, batch: np.ndarray) -> list[np.ndarray]:
    """[N, ...] → outputs [N, ...] each, in chunks of the model's max batch size."""
    parts = [
        model.run(None, {spec.input.name: batch[i : i + spec.max_batch_size]})
        for i in range(0, len(batch), spec.max_batch_size)
    ]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


class OrtChain:
    def __init__(self, repository: Path, threads: int = 0) -> None:
        self.detector = session(repository, FACE_DETECTOR, threads)
        self.landmarks = session(repository, FACE_LANDMARKS, threads)
        self.embedder = session(repository, ARCFACE, threads)
        self.params = detect.DetectParams()

    def analyse(self, images: list[bytes]) -> list[list[Face]]:
        """Faces per image (largest first, embeddings unit length), every model once per batch."""
        limits = DecodeLimits()
        headers = [read_header(data, limits) for data in images]
        decoded = [decode_pixels(data, header) for data, header in zip(images, headers, strict=True)]
        scores, boxes = _run(
            self.detector, FACE_DETECTOR, np.stack([detect.detector_input(d.rgb) for d in decoded])
        )
        found = [
            detect.detections(scores[i], boxes[i], d.width, d.height, self.params)
            for i, d in enumerate(decoded)
        ]
        faces: list[list[Face]] = [
            [Face(box=d.box / image.scale, det_score=d.score) for d in detections]
            for image, detections in zip(decoded, found, strict=True)
        ]
        owners: list[tuple[int, int]] = []
        patches: list[np.ndarray] = []
        rects: list[tuple[int, int, int, int]] = []
        for i, detections in enumerate(found):
            if not detections:
                continue
            # As the served pipeline does: a face too small at the detector's scale is cut
            # from a finer decode.
            decoded[i], face_boxes = for_faces(
                images[i], headers[i], decoded[i], [d.box for d in detections], limits
            )
            for j, box in enumerate(face_boxes):
                rect = landmarks.crop_rect(box, decoded[i].width, decoded[i].height)
                owners.append((i, j))
                rects.append(rect)
                patches.append(landmarks.landmark_input(decoded[i].rgb, rect))
        if not owners:
            return faces
        (points,) = _run(self.landmarks, FACE_LANDMARKS, np.stack(patches))
        crops = []
        for (i, j), rect, raw in zip(owners, rects, points, strict=True):
            points68 = landmarks.landmarks_in_image(raw, rect)
            points5 = landmarks.five_points(points68)
            face = faces[i][j]
            face.crop = align.align(decoded[i].rgb, points5)
            face.sharpness = align.sharpness(face.crop)
            face.points5 = points5 / decoded[i].scale
            crops.append(face.crop)
        (vectors,) = _run(self.embedder, ARCFACE, align.embedder_input(np.stack(crops)))
        for (i, j), vector in zip(owners, l2_normalize(vectors), strict=True):
            faces[i][j].embedding = vector
        return faces


@dataclass(frozen=True)
class GalleryMatrix:
    """Enrolled faces as one [G, D] matrix; search is an exact inner-product top-k in numpy."""

    names: tuple[str, ...]
    person_ids: tuple[int, ...]
    vectors: np.ndarray

    def top_k(self, queries: np.ndarray, k: int) -> list[list[tuple[int, float]]]:
        """[Q, D] unit queries → per query up to k (gallery row, cosine), best first."""
        scores = queries @ self.vectors.T
        k = min(k, scores.shape[1])
        rows = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        result = []
        for q, candidates in enumerate(rows):
            ordered = candidates[np.argsort(-scores[q, candidates])]
            result.append([(int(r), float(scores[q, r])) for r in ordered])
        return result


def build_gallery(chain: OrtChain, enrolled: list[tuple[int, str, bytes]]) -> GalleryMatrix:
    """(person id, name, photo) → the largest face of each photo, embedded by the same chain."""
    faces = chain.analyse([photo for _, _, photo in enrolled])
    vectors = []
    for (_, name, _), found in zip(enrolled, faces, strict=True):
        if not found or found[0].embedding is None:
            raise ValueError(f"no face in the enrolment photo of {name}")
        vectors.append(found[0].embedding)
    return GalleryMatrix(
        names=tuple(n for _, n, _ in enrolled),
        person_ids=tuple(p for p, _, _ in enrolled),
        vectors=np.stack(vectors),
    )
