"""The search index kept in step with the database, which is the truth.

``reconcile`` compares a collection's checksum with the database's face ids and rebuilds
it from the stored embeddings when they differ; ``embed_missing`` embeds stored crops that
lack an embedding of a version (a rollout, or a face enrolled across a switch).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import cv2
import numpy as np

from orchestrator.clients.search import SearchClient
from orchestrator.db.gallery import Gallery
from orchestrator.pipeline.face_pipeline import FacePipeline
from search_service.checksum import checksum_of_ids
from search_service.schema import CollectionSpec

log = logging.getLogger(__name__)

PAGE = 1000


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
