"""The search index kept in step with the database, which is the truth.

``reconcile`` compares the live collection with the database's face ids (a disagreement is
repaired by a rebuild into a new collection: :meth:`RolloutRunner.reconcile`);
``repair_in_place`` makes a collection agree without ever emptying it; ``embed_missing``
embeds stored crops that lack an embedding of a version (a rollout, or a face enrolled
across a switch).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import cv2
import numpy as np

from orchestrator.clients.search import SearchServiceError
from orchestrator.clients.search_backend import SearchBackend
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


async def put_vectors(search: SearchBackend, collection: str, ids: list[int], vectors: np.ndarray) -> None:
    """Add ``vectors`` [n, D] under ``ids``; an id already there is left as it is.

    A rollout pass, an enrolment's dual write and a repair may each add the same face at
    once, always with its embedding by the collection's version: whichever lands first is
    right. Never a delete, so a face that is there stays answerable.
    """
    try:
        await search.add(collection, ids, vectors)
    except SearchServiceError as error:
        if not is_duplicate(error):
            raise
        # The clashing batch was refused whole: again one by one, skipping those present.
        for row, face_id in enumerate(ids):
            try:
                await search.add(collection, [face_id], vectors[row : row + 1])
            except SearchServiceError as clash:
                if not is_duplicate(clash):
                    raise


def is_duplicate(error: SearchServiceError) -> bool:
    """The search service refused an add because an id is in the collection already."""
    return error.status == 409 and str(error.problem.get("type", "")).endswith(":duplicate-ids")


async def embed_missing(
    gallery: Gallery,
    pipeline: FacePipeline,
    version: str,
    *,
    collection: str | None = None,
    search: SearchBackend | None = None,
    batch: int = 32,
    progress: Callable[[int, int], Awaitable[None]] | None = None,
) -> int:
    """Embed with ``version`` every stored crop that has no ``version`` embedding yet.

    Writes the embeddings to the database and, when ``collection`` is given, to that
    collection. Passes over the faces until one finds none missing, since faces may be
    enrolled meanwhile; each pass reads only the faces still missing, so one written by
    the enrolment's dual write is never embedded twice. Returns how many were embedded.
    """
    embedded = 0
    while True:
        total = await asyncio.to_thread(gallery.count_faces)
        had = len(await asyncio.to_thread(gallery.face_ids, version))
        after, this_pass = 0, 0
        while page := await asyncio.to_thread(gallery.crops, after, batch, unembedded_by=version):
            after = page[-1][0]
            ids = [face_id for face_id, _ in page]
            vectors = await pipeline.embed_crops(
                await asyncio.to_thread(decode_crops, [png for _, png in page]), version
            )
            await asyncio.to_thread(gallery.add_embeddings, version, ids, vectors)
            if collection is not None and search is not None:
                await put_vectors(search, collection, ids, vectors)
            this_pass += len(ids)
            if progress is not None:
                await progress(min(had + this_pass, total), total)
        embedded += this_pass
        if this_pass == 0:
            return embedded


@dataclass(frozen=True)
class Reconciliation:
    collection: str
    database_checksum: str
    index_checksum: str
    rebuilt: bool
    disagreeing: int = 0
    """Faces missing from the collection or extra in it, that stayed so while writes settled."""


async def ensure_collection(search: SearchBackend, name: str, spec: CollectionSpec) -> None:
    """Create collection ``name`` as ``spec`` says, unless it exists.

    One that exists with other index settings is kept as it is: the settings (``FACEREC_INDEX__*``)
    shape the collections made from now on, and the live one moves to them by a rebuild.
    One of another dimension cannot serve these embeddings: that is an error.
    """
    try:
        await search.create_collection(name, spec)
    except SearchServiceError as error:
        if error.status != 409 or not str(error.problem.get("type", "")).endswith(":collection-exists"):
            raise
        info = await search.info(name)
        if info.dim != spec.dim:
            raise
        if info.index != spec.index:
            log.warning(
                "collection %s is %s, the settings say %s: a rebuild (POST /v1/index/rebuild) moves it",
                name,
                info.index,
                spec.index,
            )


async def disagreement(gallery: Gallery, search: SearchBackend, collection: str, version: str) -> set[int]:
    """Face ids in only one of the collection and the database (embeddings of ``version``).

    The collection is listed first: every write reaches the database before the index, so
    a face enrolled between the two reads shows as missing, never as a phantom extra.
    """
    listed = await search.ids(collection)
    stored = await asyncio.to_thread(gallery.face_ids, version)
    return set(np.setxor1d(listed, stored).tolist())


async def reconcile(
    gallery: Gallery,
    search: SearchBackend,
    pipeline: FacePipeline,
    spec: CollectionSpec,
    settle_s: float = 2.0,
) -> Reconciliation:
    """Compare the active collection with the database; changes nothing in the collection.

    Faces without an embedding of the active version (one enrolled across a switch) are
    embedded from their stored crops first. Other replicas may be writing meanwhile: a
    difference counts only if it is still there ``settle_s`` later, once writes in flight
    have reached the index.
    """
    state = await asyncio.to_thread(gallery.state)
    collection, version = state.active_collection, state.active_model_version
    await ensure_collection(search, collection, spec)
    await embed_missing(gallery, pipeline, version)
    differing = await disagreement(gallery, search, collection, version)
    if differing:
        await asyncio.sleep(settle_s)
        differing &= await disagreement(gallery, search, collection, version)
    expected = checksum_of_ids(await asyncio.to_thread(gallery.face_ids, version))
    actual = (await search.info(collection)).checksum
    return Reconciliation(collection, expected, actual, rebuilt=False, disagreeing=len(differing))


@dataclass(frozen=True)
class Repair:
    """What :func:`repair_in_place` did: ``added`` missing faces are now in the collection
    (a few perhaps put there by an enrolment racing it), ``removed`` ids were deleted."""

    added: int
    removed: int


async def repair_in_place(gallery: Gallery, search: SearchBackend, collection: str, version: str) -> Repair:
    """Make a live collection hold exactly the database's faces with a ``version`` embedding.

    Deletes the ids the database no longer has and adds the missing ones from their
    stored embeddings, a page at a time. Never drops the collection and never touches a
    face that is in both, so every such face stays answerable throughout. Safe beside
    enrolments and deletions, which write the database first and the index after.
    """
    # The collection is listed before the database is read: an id reaches the index only
    # after its embedding row is committed, so one listed here and missing below was
    # deleted meanwhile. Face ids are never reused (AUTOINCREMENT on SQLite, a sequence
    # on PostgreSQL, a counter kept across restarts by InnoDB since MariaDB 10.2.4 and
    # MySQL 8.0), so a deleted id cannot come back as a new face that this removes.
    listed = await search.ids(collection)
    truth = await asyncio.to_thread(gallery.face_ids, version)
    extra = np.setdiff1d(listed, truth, assume_unique=True)
    missing = np.setdiff1d(truth, listed, assume_unique=True)
    removed = 0
    for start in range(0, extra.size, PAGE):
        removed += await search.delete(collection, extra[start : start + PAGE])
    added = 0
    put: list[np.ndarray] = []
    for start in range(0, missing.size, PAGE):
        # Faces deleted since the database was read have no embedding any more: skipped.
        ids, vectors = await asyncio.to_thread(gallery.embeddings_of, version, missing[start : start + PAGE])
        await put_vectors(search, collection, ids.tolist(), vectors)
        added += ids.size
        put.append(ids)
    if added:
        # A face deleted between the read of its embedding and its add (its index delete
        # done first), or whose enrolment undid itself on meeting the id this added,
        # would stay in the index: look again now that every add is done.
        gone = np.setdiff1d(np.concatenate(put), await asyncio.to_thread(gallery.face_ids, version))
        if gone.size:
            removed += await search.delete(collection, gone)
    log.info(
        "collection %s repaired from version %s: %d added, %d removed", collection, version, added, removed
    )
    return Repair(added=added, removed=removed)
