"""The face pipeline: decode → detect → landmarks → align → embed, through Triton.

By default an image is one request to Triton's ``face_chain`` model, which does all of it
(``orchestrator.pipeline.vision.chain``); the orchestrator only checks the header first, so
a bad image is refused before it travels. With ``chain=False`` the orchestrator does the
pixel work itself, in a thread pool off the event loop, and each Triton model gets one
request per image (all faces of the image in one batch): measured on two cores at 16
concurrent images, that path spent 28 ms of CPU an image (orchestrator 11.3, Triton 16.6)
where the chain spends 19.4 (0.6 and 18.8), the in-process chain 19.3.

Embeddings are L2-normalised here and nowhere else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from orchestrator.clients.triton import TritonModels
from orchestrator.core.errors import FaceCountError
from orchestrator.pipeline.memory_budget import Hold, PixelBudget, decoded_bytes, held_bytes
from orchestrator.pipeline.vision import align, detect, landmarks
from orchestrator.pipeline.vision.chain import ChainOptions, from_tensors
from orchestrator.pipeline.vision.decode import (
    DecodedImage,
    DecodeLimits,
    ImageHeader,
    decode_pixels,
    for_faces,
    read_header,
)
from orchestrator.pipeline.vision.faces import Analysis, Face

T = TypeVar("T")

DETECTOR, LANDMARKS, EMBEDDER, CHAIN = "face_detector", "face_landmarks", "arcface", "face_chain"

__all__ = ["Analysis", "FacePipeline", "ModelVersions", "l2_normalize"]


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """[N, D] → [N, D] float32 with unit rows (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class ModelVersions:
    detector: str = "1"
    landmarks: str = "1"
    embedder: str = "1"


class FacePipeline:
    def __init__(
        self,
        triton: TritonModels,
        *,
        executor: Executor | None = None,
        limits: DecodeLimits | None = None,
        detect_params: detect.DetectParams | None = None,
        budget: PixelBudget | None = None,
        chain: bool = True,
    ) -> None:
        self.triton = triton
        self.chain = chain
        self.executor = executor
        self.limits = limits or DecodeLimits()
        self.detect_params = detect_params or detect.DetectParams()
        self.budget = budget or PixelBudget(sys.maxsize)
        """Decoded pixels of the images being analysed; unbounded unless given."""

    async def _cpu(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def analyse(
        self,
        data: bytes,
        *,
        embed: bool = True,
        max_faces: int | None = None,
        versions: ModelVersions | None = None,
    ) -> Analysis:
        # The image's pixels are counted against the budget from its header, before they
        # are decoded, until its analysis ends (however it ends: a cancelled one too).
        with self.budget.hold() as memory:
            return await self._analyse(data, memory, embed, max_faces, versions or ModelVersions())

    async def _analyse(
        self, data: bytes, memory: Hold, embed: bool, max_faces: int | None, versions: ModelVersions
    ) -> Analysis:
        params = self.detect_params
        if max_faces is not None:
            params = dataclasses.replace(params, max_faces=max_faces)
        if self.chain:
            return await self._in_one_call(data, memory, embed, params, versions)
        timings: dict[str, float] = {}
        clock = time.perf_counter()

        def lap(stage: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[stage] = round((now - clock) * 1000, 3)
            clock = now

        def decoded() -> tuple[ImageHeader, DecodedImage, np.ndarray]:
            header = read_header(data, self.limits)
            memory.take(held_bytes(data, header))
            image = decode_pixels(data, header)
            return header, image, detect.detector_input(image.rgb)

        # Each hop to the thread pool costs a GIL hand-over: one per stage between models.
        header, image, detector_in = await self._cpu(decoded)
        lap("decode")
        out = await self.triton.infer(DETECTOR, detector_in[None], versions.detector)
        found = detect.detections(out["scores"][0], out["boxes"][0], image.width, image.height, params)
        lap("detect")
        # Report coordinates in the image as sent, whatever scale it was decoded at.
        to_sent = 1.0 / image.scale
        faces = [Face(box=d.box * to_sent, det_score=d.score) for d in found]
        analysis = Analysis(
            faces=faces,
            width=round(image.width * to_sent),
            height=round(image.height * to_sent),
            timings_ms=timings,
        )
        if not found:
            return analysis

        def landmark_patches() -> tuple[DecodedImage, list[tuple[int, int, int, int]], np.ndarray]:
            """The faces' image (decoded finer if a face is too small in ``image``), their
            landmark crops in it, and the landmark model's input."""
            source, boxes = for_faces(
                data,
                header,
                image,
                [d.box for d in found],
                self.limits,
                lambda finer: memory.take(decoded_bytes(finer)),
            )
            rects = [landmarks.crop_rect(box, source.width, source.height) for box in boxes]
            return source, rects, np.stack([landmarks.landmark_input(source.rgb, r) for r in rects])

        source, rects, patches = await self._cpu(landmark_patches)
        marks = await self.triton.infer(LANDMARKS, patches, versions.landmarks)
        lap("landmarks")
        rgb, to_sent = source.rgb, 1.0 / source.scale

        def align_all() -> np.ndarray | None:
            """Crops on the faces; the embedder's input when embedding."""
            crops = []
            for face, rect, raw in zip(faces, rects, marks["output"], strict=True):
                points = landmarks.landmarks_in_image(raw, rect)
                face.landmarks68 = points * to_sent
                points5 = landmarks.five_points(points)
                face.crop = align.align(rgb, points5)
                face.sharpness = align.sharpness(face.crop)
                face.points5 = points5 * to_sent
                crops.append(face.crop)
            return align.embedder_input(np.stack(crops)) if embed else None

        embedder_in = await self._cpu(align_all)
        lap("align")
        if embedder_in is not None:
            out = await self.triton.infer(EMBEDDER, embedder_in, versions.embedder)
            for face, vector in zip(faces, l2_normalize(out["output"]), strict=True):
                face.embedding = vector
            lap("embed")
        return analysis

    async def _in_one_call(
        self, data: bytes, memory: Hold, embed: bool, params: detect.DetectParams, versions: ModelVersions
    ) -> Analysis:
        # Checked here, not decoded: a bad image is a 4xx before it travels, and its pixels
        # (decoded in Triton) are counted against the budget from the header.
        memory.take(held_bytes(data, read_header(data, self.limits)))
        options = ChainOptions(versions.embedder, embed, params, self.limits)
        tensors = await self.triton.infer_bytes(CHAIN, {"image": data, "options": options.to_json().encode()})
        analysis = from_tensors({name: value[0] for name, value in tensors.items()})
        if embed and analysis.faces:
            vectors = l2_normalize(np.stack([f.embedding for f in analysis.faces if f.embedding is not None]))
            for face, vector in zip(analysis.faces, vectors, strict=True):
                face.embedding = vector
        return analysis

    async def compare_largest(
        self, images: tuple[bytes, bytes], names: tuple[str, str], versions: ModelVersions | None = None
    ) -> float:
        """Cosine similarity of the largest face of each image; FaceCountError names one without."""
        analyses = await asyncio.gather(*(self.analyse(image, versions=versions) for image in images))
        for name, analysis in zip(names, analyses, strict=True):
            if not analysis.faces:
                raise FaceCountError(f"no face found in {name}")
        a, b = (analysis.faces[0].embedding for analysis in analyses)
        assert a is not None and b is not None
        return round(float(a @ b), 4)

    async def embed_crops(self, crops: np.ndarray, version: str = "1") -> np.ndarray:
        """[N, 112, 112, 3] uint8 aligned crops → [N, D] unit embeddings (re-embedding)."""
        embedder_in = await self._cpu(align.embedder_input, crops)
        out = await self.triton.infer(EMBEDDER, embedder_in, version)
        return l2_normalize(out["output"])
