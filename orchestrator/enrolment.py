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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from orchestrator import failpoints
from orchestrator.db.gallery import Gallery
from orchestrator.errors import FaceCountError, ProblemError, UpstreamUnavailable
from orchestrator.pipeline import FacePipeline, ModelVersions
from orchestrator.search_client import SearchClient, SearchServiceError
from search_service.checksum import checksum_of_ids
from search_service.schema import CollectionSpec

log = logging.getLogger(__name__)

PAGE = 1000


def crop_png(crop: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding of an aligned crop failed")
    return buffer.tobytes()


def decode_crops(pngs: list[bytes]) -> np.ndarray:
    """PNG crops → [N, 112, 112, 3] uint8 RGB."""
    crops = []
    for png in pngs:
        bgr = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError("a stored crop is not a readable PNG")
        crops.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return np.stack(crops)


async def put_vectors(search: SearchClient, collection: str, ids: list[int], vectors: np.ndarray) -> None:
    """An add that tolerates ids already present: a rollout pass and a dual write may both add a face."""
    await search.delete(collection, ids)
    await search.add(collection, ids, vectors)


async def embed_missing(
    gallery: Gallery,
    pipeline: FacePipeline,
    version: str,
    *,
    collection: str | None = None,
    search: SearchClient | None = None,
    batch: int = 32,
    progress: Callable[[int, int], Awaitable[None]] | None = None,
) -> int:
    """Embed with ``version`` every stored crop that has no ``version`` embedding yet.

    Writes the embeddings to the database and, when ``collection`` is given, to that
    collection. Repeats until none is missing, since faces may be enrolled meanwhile.
    Returns how many faces were embedded.
    """
    embedded = 0
    while True:
        total = await asyncio.to_thread(gallery.count_faces)
        done = set((await asyncio.to_thread(gallery.face_ids, version)).tolist())
        if len(done) >= total:
            return embedded
        after = 0
        while page := await asyncio.to_thread(gallery.crops, after, batch):
            after = page[-1][0]
            todo = [(face_id, png) for face_id, png in page if face_id not in done]
            if not todo:
                continue
            ids = [face_id for face_id, _ in todo]
            vectors = await pipeline.embed_crops(
                await asyncio.to_thread(decode_crops, [p for _, p in todo]), version
            )
            await asyncio.to_thread(gallery.add_embeddings, version, ids, vectors)
            if collection is not None and search is not None:
                await put_vectors(search, collection, ids, vectors)
            done.update(ids)
            embedded += len(ids)
            if progress is not None:
                await progress(len(done), total)


@dataclass(frozen=True)
class Reconciliation:
    collection: str
    database_checksum: str
    index_checksum: str
    rebuilt: bool


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
            # Undo the database row: an acknowledged enrolment must be in both or neither.
            await asyncio.to_thread(self.gallery.delete_face, stored.face_id)
            raise UpstreamUnavailable(f"search service: {error}") from error
        if state.pending_model_version and state.pending_collection:
            await self._dual_write(
                stored.face_id, face.crop, state.pending_model_version, state.pending_collection
            )
        await asyncio.to_thread(self.gallery.bump_generation)
        return {
            "face_id": stored.face_id,
            "person_id": person_id,
            "box": [round(float(v), 1) for v in face.box],
            "det_score": round(face.det_score, 4),
            "quality": face.quality,
        }

    async def _dual_write(self, face_id: int, crop: np.ndarray, version: str, collection: str) -> None:
        """During a rollout a new face also goes to the collection being built."""
        try:
            vector = await self.pipeline.embed_crops(crop[None], version)
            await asyncio.to_thread(self.gallery.add_embeddings, version, [face_id], vector)
            await put_vectors(self.search, collection, [face_id], vector)
        except (SearchServiceError, ProblemError) as error:
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


async def ensure_collection(search: SearchClient, name: str, dim: int) -> None:
    await search.create_collection(name, CollectionSpec(dim=dim))


async def rebuild(gallery: Gallery, search: SearchClient, name: str, model_version: str, dim: int) -> int:
    """Drop the collection and refill it from the database's embeddings of ``model_version``."""
    await search.drop_collection(name)
    await ensure_collection(search, name, dim)
    after, total = 0, 0
    while True:
        ids, vectors = await asyncio.to_thread(gallery.embeddings, model_version, after, PAGE)
        if len(ids) == 0:
            return total
        await search.add(name, ids, vectors)
        total += len(ids)
        after = int(ids[-1])


async def reconcile(
    gallery: Gallery, search: SearchClient, pipeline: FacePipeline, dim: int
) -> Reconciliation:
    """Compare the active collection with the database; rebuild it from the database if they differ.

    Faces without an embedding of the active version (one enrolled across a switch) are
    embedded from their stored crops first, so none is left out of the rebuilt index.
    """
    state = await asyncio.to_thread(gallery.state)
    await ensure_collection(search, state.active_collection, dim)
    await embed_missing(gallery, pipeline, state.active_model_version)
    ids = await asyncio.to_thread(gallery.face_ids, state.active_model_version)
    expected = checksum_of_ids(ids)
    actual = (await search.info(state.active_collection)).checksum
    if actual == expected:
        return Reconciliation(state.active_collection, expected, actual, rebuilt=False)
    log.warning(
        "index %s (%s) disagrees with the database (%s): rebuilding it from the database",
        state.active_collection,
        actual,
        expected,
    )
    await rebuild(gallery, search, state.active_collection, state.active_model_version, dim)
    await asyncio.to_thread(gallery.bump_generation)
    actual = (await search.info(state.active_collection)).checksum
    return Reconciliation(state.active_collection, expected, actual, rebuilt=True)
