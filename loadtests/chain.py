"""The whole per-image chain in ONNX Runtime inside one process, on a batch of images.

decode → detect → landmarks → align → embed, the same code as Triton's face_chain model
(``orchestrator.pipeline.vision.chain``), with each model run once per batch (chunked at
the model's Triton ``max_batch_size``), so the embedder sees every face of the batch at once.
Same graph optimisation level per model as the CPU Triton repository's config (tuned for this
CPU by ``facerec models tune``).
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
from orchestrator.pipeline.vision.chain import ChainOptions, analyse_batch
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


def _pair(outputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    scores, boxes = outputs
    return scores, boxes


class OrtChain:
    def __init__(self, repository: Path, threads: int = 0) -> None:
        self.detector = session(repository, FACE_DETECTOR, threads)
        self.landmarks = session(repository, FACE_LANDMARKS, threads)
        self.embedder = session(repository, ARCFACE, threads)

    def analyse(self, images: list[bytes]) -> list[list[Face]]:
        """Faces per image (largest first, embeddings unit length), every model once per batch:
        the work of Triton's face_chain model (``orchestrator.pipeline.vision.chain``)."""
        results = analyse_batch(
            images,
            [ChainOptions()] * len(images),
            lambda batch: _pair(_run(self.detector, FACE_DETECTOR, batch)),
            lambda batch: _run(self.landmarks, FACE_LANDMARKS, batch)[0],
            lambda batch, _version: _run(self.embedder, ARCFACE, batch)[0],
        )
        faces = []
        for result in results:
            if isinstance(result, Exception):
                raise result
            for face in result.faces:
                assert face.embedding is not None
                face.embedding = l2_normalize(face.embedding[None])[0]
            faces.append(result.faces)
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
