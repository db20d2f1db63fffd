"""Enrolment and deletion, keeping the database (the truth) and the search index consistent.

Order of writes: the database first, then the index, then the gallery generation (which
retires cached answers). A crash between the first two leaves the index behind the
database; ``reconcile`` at start-up repairs it, and until then the answer builder drops
any hit whose face is not in the database, so an orphan is never served.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import cv2
import numpy as np

from orchestrator.clients.search import SearchClient, SearchServiceError
from orchestrator.core.errors import FaceCountError, FacerecError, UpstreamUnavailable
from orchestrator.db.gallery import Gallery
from orchestrator.db.tables import GalleryStatePublic
from orchestrator.gallery.index_sync import is_duplicate, put_vectors
from orchestrator.pipeline.face_pipeline import FacePipeline, ModelVersions
from orchestrator.runtime import failpoints

log = logging.getLogger(__name__)


def crop_png(crop: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding of an aligned crop failed")
    return buffer.tobytes()


class Enrolment:
    def __init__(self, gallery: Gallery, search: SearchClient, pipeline: FacePipeline) -> None:
        self.gallery = gallery
        self.search = search
        self.pipeline = pipeline

    async def enrol(self, person_id: int, image: bytes, *, pick_largest: bool) -> dict[str, Any]:
        state = await asyncio.to_thread(self.gallery.state)
        await asyncio.to_thread(self.gallery.get_person, person_id)  # 404 before any work
        analysis = await self.pipeline.analyse(
            image, versions=ModelVersions(embedder=state.active_model_version)
        )
        count = len(analysis.faces)
        if count == 0:
            raise FaceCountError("no face found in the image")
        if count > 1 and not pick_largest:
            raise FaceCountError(f"{count} faces found; enrol an image with one face or pass pick=largest")
        face = analysis.faces[0]
        assert face.embedding is not None and face.crop is not None
        png = await asyncio.to_thread(crop_png, face.crop)
        stored = await asyncio.to_thread(
            self.gallery.add_face,
            person_id,
            embedding=face.embedding,
            model_version=state.active_model_version,
            crop_png=png,
            image_sha256=hashlib.sha256(image).hexdigest(),
            quality=face.quality,
            det_score=face.det_score,
            box=[float(v) for v in face.box],
        )
        failpoints.hit("enrol-after-database")
        try:
            await self.search.add(state.active_collection, [stored.face_id], face.embedding[None])
        except SearchServiceError as error:
            # A repair (``repair_in_place``) found the new row first and added it: it is in.
            if not is_duplicate(error):
                # Undo the database row: an acknowledged enrolment must be in both or neither.
                await asyncio.to_thread(self.gallery.delete_face, stored.face_id)
                raise UpstreamUnavailable(f"search service: {error}") from error
        if state.pending_model_version and state.pending_collection:
            await self._dual_write(stored.face_id, face.crop, face.embedding, state)
        await asyncio.to_thread(self.gallery.bump_generation)
        return {
            "face_id": stored.face_id,
            "person_id": person_id,
            "box": [round(float(v), 1) for v in face.box],
            "det_score": round(face.det_score, 4),
            "quality": face.quality,
        }

    async def _dual_write(
        self, face_id: int, crop: np.ndarray, embedding: np.ndarray, state: GalleryStatePublic
    ) -> None:
        """During a rollout (or a rebuild) a new face also goes to the collection being built."""
        version, collection = state.pending_model_version, state.pending_collection
        assert version is not None and collection is not None
        try:
            if version == state.active_model_version:  # a rebuild: the embedding is the same
                vector = embedding[None]
            else:
                vector = await self.pipeline.embed_crops(crop[None], version)
                await asyncio.to_thread(self.gallery.add_embeddings, version, [face_id], vector)
            await put_vectors(self.search, collection, [face_id], vector)
        except (SearchServiceError, FacerecError) as error:
            # Not fatal: the rollout embeds every face still missing before it switches.
            log.warning("dual write of face %s to version %s failed: %s", face_id, version, error)

    async def _forget(self, face_ids: list[int]) -> None:
        state = await asyncio.to_thread(self.gallery.state)
        failpoints.hit("delete-after-database")
        collections = [
            state.active_collection,
            *([state.pending_collection] if state.pending_collection else []),
        ]
        for collection in collections if face_ids else []:
            try:
                await self.search.delete(collection, face_ids)
            except SearchServiceError as error:
                # The rows are gone, so these hits are already filtered out of answers;
                # reconciliation at the next start removes them from the index.
                log.warning("index delete of %d faces from %s failed: %s", len(face_ids), collection, error)
        await asyncio.to_thread(self.gallery.bump_generation)

    async def delete_person(self, person_id: int) -> None:
        await self._forget(await asyncio.to_thread(self.gallery.delete_person, person_id))

    async def delete_face(self, face_id: int) -> None:
        await asyncio.to_thread(self.gallery.delete_face, face_id)
        await self._forget([face_id])
