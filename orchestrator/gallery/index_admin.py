"""The index as an administrator sees it, and the gallery emptied.

``index_status`` puts the live collection beside the database, which is the truth;
``forget_everyone`` deletes every person, face and vector. Rebuilding the index is a rollout
of kind ``rebuild`` (:meth:`orchestrator.gallery.rollout.RolloutRunner.rebuild`).
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from orchestrator.clients.search import SearchServiceError
from orchestrator.clients.search_backend import SearchBackend
from orchestrator.core.errors import UpstreamUnavailable
from orchestrator.db.gallery import Gallery
from search_service.checksum import checksum_of_ids
from search_service.schema import IndexKind

log = logging.getLogger(__name__)

CLEAR_PAGE = 1_000_000
"""Ids per delete call when a collection is emptied (about 9 MB of JSON). Few calls on
purpose: in an hnsw collection each call of more than the service's tombstone limit
compacts the graph of the vectors that remain."""


class IndexStatus(BaseModel):
    """The live collection (search service) beside the faces the database holds for it."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "collection": "arcface-v1-g1",
                "model_version": "1",
                "index": "flat",
                "dim": 512,
                "count": 1200,
                "database_count": 1200,
                "database_checksum": "1200:9b1e3c0d2a7f4e51",
                "index_checksum": "1200:9b1e3c0d2a7f4e51",
                "in_agreement": True,
                "memory_bytes": 2553600,
                "device": "cpu",
            }
        }
    )
    collection: str = Field(description="the live search collection")
    model_version: str = Field(description="the arcface version whose embeddings it holds")
    index: IndexKind = Field(description="its FAISS index kind")
    dim: int
    count: int = Field(description="vectors in the collection, over all shards")
    database_count: int = Field(description="faces in the database with an embedding of that version")
    database_checksum: str = Field(description="`count:digest` of the database's face ids")
    index_checksum: str = Field(description="the same of the collection's ids")
    in_agreement: bool = Field(
        description="both checksums equal; a write in flight may show as a passing disagreement"
    )
    memory_bytes: int | None = Field(
        description="the FAISS index's arrays on the CPU, an estimate, over all shards (null from a "
        "search service too old to say)"
    )
    device: str = Field(description='where searches run: "cpu" or "gpu:N"')


class GalleryCleared(BaseModel):
    """What ``DELETE /v1/people?confirm=all`` removed."""

    model_config = ConfigDict(json_schema_extra={"example": {"people": 12, "faces": 31, "vectors": 31}})
    people: int
    faces: int
    vectors: int = Field(description="deleted from the live collection (and one a rollout is building)")


async def index_status(gallery: Gallery, search: SearchBackend) -> IndexStatus:
    state = await asyncio.to_thread(gallery.state)
    try:
        info = await search.info(state.active_collection)
    except SearchServiceError as error:
        raise UpstreamUnavailable(f"search service: {error}") from error
    ids = await asyncio.to_thread(gallery.face_ids, state.active_model_version)
    database_checksum = checksum_of_ids(ids)
    return IndexStatus(
        collection=state.active_collection,
        model_version=state.active_model_version,
        index=info.index,
        dim=info.dim,
        count=info.count,
        database_count=int(ids.size),
        database_checksum=database_checksum,
        index_checksum=info.checksum,
        in_agreement=database_checksum == info.checksum,
        memory_bytes=info.memory_bytes,
        device=info.device,
    )


async def forget_everyone(gallery: Gallery, search: SearchBackend) -> GalleryCleared:
    """Delete every person, face and embedding, then their vectors from the live collection
    and from one a rollout or rebuild is building.

    The database goes first, in one transaction that bumps the generation (as every delete:
    cached answers retire); the collections are emptied in place, never dropped, so a
    request in flight still finds the collection it was sent to. If the search service
    fails half-way the database is already empty, answers never name a deleted face (they
    are checked against the database), and calling this again finishes the job.
    """
    people, faces = await asyncio.to_thread(gallery.delete_everyone)
    state = await asyncio.to_thread(gallery.state)
    targets = [(state.active_collection, state.active_model_version, True)]
    if state.pending_collection and state.pending_model_version:
        targets.append((state.pending_collection, state.pending_model_version, False))
    vectors = 0
    try:
        for collection, version, live in targets:
            vectors += await _delete_the_deleted(gallery, search, collection, version, must_exist=live)
    except SearchServiceError as error:
        raise UpstreamUnavailable(
            f"every person was deleted, but the search service failed while emptying the index "
            f"(its leftovers are never answered; call again to finish): {error}"
        ) from error
    finally:
        await asyncio.to_thread(gallery.bump_generation)
    log.warning("gallery emptied: %d people, %d faces, %d vectors", people, faces, vectors)
    return GalleryCleared(people=people, faces=faces, vectors=vectors)


async def _delete_the_deleted(
    gallery: Gallery, search: SearchBackend, collection: str, version: str, *, must_exist: bool
) -> int:
    """Delete from ``collection`` every id the database no longer has; how many went.

    The collection is listed before the database is read, as in
    :func:`orchestrator.gallery.index_sync.repair_in_place`: a face reaches the index only
    after its row is committed and ids are never reused, so a listed id missing from the
    database was deleted, while a face enrolled since the gallery was emptied stays.
    """
    try:
        listed = await search.ids(collection)
    except SearchServiceError as error:
        if error.status == 404 and not must_exist:
            return 0  # the rollout ended and dropped it meanwhile
        raise
    kept = await asyncio.to_thread(gallery.face_ids, version)
    gone = np.setdiff1d(listed, kept, assume_unique=True)
    deleted = 0
    for start in range(0, gone.size, CLEAR_PAGE):
        deleted += await search.delete(collection, gone[start : start + CLEAR_PAGE])
    return deleted
