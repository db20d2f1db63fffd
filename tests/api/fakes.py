"""Stand-ins for what needs Triton or the search service, each giving a fixed, valid answer.

Uploaded images still go through the real decoder, so a non-image is refused the way the
real pipeline refuses it; only the model calls and the index are faked.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from orchestrator.core.errors import FacerecError
from orchestrator.db.gallery import Gallery
from orchestrator.db.people import NewFace
from orchestrator.db.tables import PersonCreate, RolloutPublic
from orchestrator.pipeline.face_pipeline import DETECTOR, EMBEDDER, LANDMARKS
from orchestrator.pipeline.vision.decode import decode
from search_service.checksum import checksum_of_ids
from search_service.schema import CollectionInfo, Health, Hit

BOX = [4.0, 4.0, 28.0, 28.0]
LANDMARKS_5 = [[10.0, 12.0], [22.0, 12.0], [16.0, 17.0], [11.0, 23.0], [21.0, 23.0]]


def png(width: int = 32, height: int = 32) -> bytes:
    """A small valid PNG (grey), big enough for the decoder's minimum side."""
    ok, encoded = cv2.imencode(".png", np.full((height, width, 3), 128, np.uint8))
    assert ok
    return encoded.tobytes()


@dataclass(frozen=True)
class Enrolled:
    """The one person and face the fakes name in their answers."""

    person_id: int
    name: str
    face_id: int


class FakeRecognition:
    """Every decodable image holds one face matching the enrolled person."""

    def __init__(self, enrolled: Enrolled, threshold: float = 0.4) -> None:
        self.enrolled = enrolled
        self.threshold = threshold

    def _face(self) -> dict[str, Any]:
        return {"box": BOX, "det_score": 0.99, "landmarks": LANDMARKS_5}

    async def recognize(self, image: bytes, **options: Any) -> dict[str, Any]:
        decode(image)
        e = self.enrolled
        person = {
            "id": e.person_id,
            "name": e.name,
            "external_id": None,
            "age": None,
            "gender": None,
            "address": None,
            "attributes": {},
        }
        match = {
            "person_id": e.person_id,
            "name": e.name,
            "face_id": e.face_id,
            "similarity": 0.8,
            "far": 0.05,
        }
        face = {**self._face(), "quality": 0.9, "decision": "match", "matches": [{**match, "person": person}]}
        return {
            "faces": [face],
            "model_version": "1",
            "threshold": self.threshold,
            "threshold_source": "shipped",
            "took_ms": 1.0,
            "cached": False,
        }

    async def verify(self, first: bytes, second: bytes, threshold: float | None = None) -> dict[str, Any]:
        decode(first)
        decode(second)
        threshold = self.threshold if threshold is None else threshold
        return {"similarity": 0.8, "match": threshold <= 0.8, "threshold": threshold, "model_version": "1"}

    async def detect(self, image: bytes, max_faces: int | None = None) -> dict[str, Any]:
        decode(image)
        return {"faces": [self._face()]}


class FakeEnrolment:
    """Enrols nothing new (answers with the enrolled face); deletes through the real gallery."""

    def __init__(self, gallery: Gallery, enrolled: Enrolled) -> None:
        self.gallery = gallery
        self.enrolled = enrolled

    async def enrol(self, person_id: int, image: bytes, **options: Any) -> dict[str, Any]:
        await asyncio.to_thread(self.gallery.get_person, person_id)
        decode(image)
        return {
            "face_id": self.enrolled.face_id,
            "person_id": person_id,
            "box": BOX,
            "det_score": 0.99,
            "quality": 0.9,
        }

    async def enrol_person(
        self, person: PersonCreate, images: list[tuple[str, bytes]], **options: Any
    ) -> dict[str, Any]:
        """Decodes every image, then stores the person with one face (a fixed vector) for each."""
        for number, (name, image) in enumerate(images, 1):
            try:
                decode(image)
            except FacerecError as error:
                error.detail = f"file {number} ({name!r}): {error.detail}"
                raise
        faces = [
            NewFace(
                embedding=np.full(512, 1 / np.sqrt(512), np.float32),
                model_version="1",
                crop_png=png(112, 112),
                image_sha256=hashlib.sha256(image).hexdigest(),
                quality=0.9,
                det_score=0.99,
                box=BOX,
            )
            for _, image in images
        ]
        created, face_ids = await asyncio.to_thread(self.gallery.create_person_with_faces, person, faces)
        enrolled = [
            {"face_id": i, "person_id": created.id, "box": BOX, "det_score": 0.99, "quality": 0.9}
            for i in face_ids
        ]
        return {**created.model_dump(), "faces": enrolled}

    async def delete_person(self, person_id: int) -> None:
        await asyncio.to_thread(self.gallery.delete_person, person_id)

    async def delete_face(self, face_id: int) -> None:
        await asyncio.to_thread(self.gallery.delete_face, face_id)


class FakeRollouts:
    """Records a rollout in the gallery and never runs it."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery

    async def start(self, to_version: str, reverses: int | None = None) -> RolloutPublic:
        state = await asyncio.to_thread(self.gallery.state)
        return await asyncio.to_thread(
            self.gallery.start_rollout, state.active_model_version, to_version, f"arcface-v{to_version}-g1"
        )

    async def rollback(self, rollout_id: int) -> RolloutPublic:
        done = await asyncio.to_thread(self.gallery.get_rollout, rollout_id)
        return await self.start(done.from_version, reverses=rollout_id)

    async def rebuild(self) -> RolloutPublic:
        state = await asyncio.to_thread(self.gallery.state)
        version = state.active_model_version
        return await asyncio.to_thread(
            lambda: self.gallery.start_rollout(
                version,
                version,
                f"arcface-v{version}-rebuilt",
                from_collection=state.active_collection,
                kind="rebuild",
            )
        )

    async def wait(self) -> None:
        return None


class FakeTriton:
    """Every model ready, embedder versions 1 and 2 in the repository."""

    async def is_ready(self, model: str, version: str = "1") -> bool:
        return model in (DETECTOR, LANDMARKS, EMBEDDER)

    async def statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        return {"model_stats": []}

    async def repository_index(self) -> list[dict[str, Any]]:
        return [
            {"name": DETECTOR, "version": "1", "state": "READY"},
            {"name": EMBEDDER, "version": "1", "state": "READY"},
            {"name": EMBEDDER, "version": "2", "state": "UNAVAILABLE"},
        ]


class FakeSearch:
    """A healthy index that always agrees with the database."""

    def __init__(self, gallery: Gallery, dim: int) -> None:
        self.gallery = gallery
        self.dim = dim

    async def health(self) -> list[Health]:
        return [Health(status="ok", shard=None, collections=1)]

    async def info(self, name: str) -> CollectionInfo:
        state = await asyncio.to_thread(self.gallery.state)
        ids = await asyncio.to_thread(self.gallery.face_ids, state.active_model_version)
        return CollectionInfo(
            name=name,
            dim=self.dim,
            count=len(ids),
            checksum=checksum_of_ids(ids),
            index="flat",
            device="cpu",
            memory_bytes=len(ids) * (self.dim * 4 + 48),
        )

    async def ids(self, name: str) -> np.ndarray:
        state = await asyncio.to_thread(self.gallery.state)
        return await asyncio.to_thread(self.gallery.face_ids, state.active_model_version)

    async def delete(self, name: str, ids: Any) -> int:
        return int(np.asarray(ids).size)

    async def search(self, name: str, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """No neighbours: a recompute of the scores (POST /v1/calibration/recompute) finds none."""
        return [[] for _ in range(len(queries))]

    async def aclose(self) -> None:
        return None


class BrokenRecognition:
    """A bug in the service: every call raises what no handler expects."""

    SECRET = "internal detail that must not reach the client"

    async def recognize(self, image: bytes, **options: Any) -> dict[str, Any]:
        raise RuntimeError(self.SECRET)

    async def verify(self, first: bytes, second: bytes, threshold: float | None = None) -> dict[str, Any]:
        raise RuntimeError(self.SECRET)

    async def detect(self, image: bytes, max_faces: int | None = None) -> dict[str, Any]:
        raise RuntimeError(self.SECRET)
