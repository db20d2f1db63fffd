"""Each face's impostor and genuine scores kept up to date, and a duplicate identity caught.

A face's impostor score is its best similarity to a face of another person, its genuine
score its best similarity to another face of its own person (``db/face_scores.py``), each
found among its ``neighbours`` nearest faces in the version's collection. Enrolling faces
scores them and raises their neighbours' scores where a new face beats them; deleting faces
searches again for the faces whose score came from one of them; :meth:`ScoreKeeper.recompute`
scores every face of a version from scratch: the repair, and what a rollout runs before it
switches. Similarities are the search service's inner products of unit vectors (cosine).

What is exact and what is not:

- With ``neighbours`` at least the number of faces in the collection, and an exact (flat)
  index, every search is exhaustive and the kept scores are what a recompute gives (the
  same faces; the similarities to float32 rounding, as the service may sum one query and a
  batch in other orders): a face's best other-person face either is the new face (raised)
  or was already its best, and only a face whose best was deleted can go down (searched
  again). Ties go to whichever came first, where a recompute takes the lower face id.
- With fewer neighbours, a face whose best match is beyond its nearest ``neighbours`` gets
  no score of that kind (a person with more faces than that, all closer than anyone else,
  has no impostor score), and a new face raises only the faces among its own neighbours,
  though it may beat the score of a face farther away. An approximate index (ivf, hnsw)
  may miss neighbours likewise.
- Enrolments at the same moment (on two replicas, or two requests on one) may not see each
  other: each searches before the other's vector is in the index, or raises the other's
  score before that row is written; a recompute's page written over a raise that landed
  after its search undoes that raise likewise. Scores are then lower than the truth until
  the next recompute.
- A face the index lost, or one whose keeping failed (the search service or the database
  briefly away: logged, never failing the enrolment or deletion), is mended by a recompute.
- The duplicate check sees the faces of the collection as it is: an enrolment of the same
  person under two names at the same moment passes both checks.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from orchestrator.clients.search_backend import SearchBackend
from orchestrator.db.face_scores import FaceScoreRow, ScoreRaise
from orchestrator.db.gallery import Gallery
from orchestrator.db.tables import PersonSummary
from search_service.schema import MAX_K, Hit

log = logging.getLogger(__name__)

BATCH = 256
"""Faces searched per call when faces are scored again: the search stays well within its timeout."""


def best_of(face_id: int, hits: Sequence[Hit], owners: dict[int, int]) -> FaceScoreRow:
    """A face's scores from its hits (best first): the first hit of another person, and of its own."""
    mine = owners[face_id]
    impostor: Hit | None = None
    genuine: Hit | None = None
    for hit in hits:
        if hit.id == face_id or hit.id not in owners:  # itself, or a face deleted meanwhile
            continue
        if owners[hit.id] == mine:
            genuine = genuine or hit
        else:
            impostor = impostor or hit
        if impostor and genuine:
            break
    return FaceScoreRow(
        face_id=face_id,
        impostor=impostor.score if impostor else None,
        impostor_face_id=impostor.id if impostor else None,
        genuine=genuine.score if genuine else None,
        genuine_face_id=genuine.id if genuine else None,
    )


class ScoreKeeper:
    def __init__(
        self, gallery: Gallery, search: SearchBackend, neighbours: int, *, batch: int = BATCH
    ) -> None:
        self.gallery = gallery
        self.search = search
        self.neighbours = neighbours
        self.k = min(neighbours + 1, MAX_K)
        """Hits asked per face: its neighbours, and itself, found first."""
        self.batch = batch

    async def check_duplicate(
        self, collection: str, embedding: np.ndarray, person_id: int | None, threshold: float
    ) -> tuple[PersonSummary, float] | None:
        """The best face at or above ``threshold`` of a person other than ``person_id`` (None: a new
        person, so anyone): that person and the similarity. Search errors propagate."""
        (found,) = await self.check_duplicates(collection, embedding[None], person_id, threshold)
        return found

    async def check_duplicates(
        self, collection: str, embeddings: np.ndarray, person_id: int | None, threshold: float
    ) -> list[tuple[PersonSummary, float] | None]:
        """:meth:`check_duplicate` for each of ``embeddings`` [n, D], in one search."""
        hits = await self.search.search(collection, embeddings, self.k)
        close = {hit.id for row in hits for hit in row if hit.score >= threshold}
        owners = await asyncio.to_thread(self.gallery.face_owners, sorted(close)) if close else {}
        return [
            next(
                (
                    (owners[hit.id], hit.score)
                    for hit in row
                    if hit.score >= threshold and hit.id in owners and owners[hit.id].id != person_id
                ),
                None,
            )
            for row in hits
        ]

    async def _score(
        self, collection: str, ids: Sequence[int], vectors: np.ndarray
    ) -> tuple[list[FaceScoreRow], list[list[Hit]], dict[int, int]]:
        """The scores of faces ``ids`` with embeddings ``vectors`` [n, D] (faces gone are left out),
        with their hits and the owner of every face among them."""
        hits = await self.search.search(collection, vectors, self.k)
        seen = set(ids) | {hit.id for row in hits for hit in row}
        owners = await asyncio.to_thread(self.gallery.person_ids_of, sorted(seen))
        rows = [
            best_of(face_id, row, owners) for face_id, row in zip(ids, hits, strict=True) if face_id in owners
        ]
        return rows, hits, owners

    async def enrolled(
        self, collection: str, model_version: str, faces: Sequence[tuple[int, np.ndarray]]
    ) -> None:
        """New faces (face id, embedding [D]), already in the database and ``collection``: their
        scores, and their neighbours' raised where a new face beats them. Never raises."""
        if not faces:
            return
        ids = [int(face_id) for face_id, _ in faces]
        try:
            rows, hits, owners = await self._score(collection, ids, np.stack([vector for _, vector in faces]))
            new = set(ids)
            raises = [
                ScoreRaise(
                    hit.id, "genuine" if owners[hit.id] == owners[face_id] else "impostor", hit.score, face_id
                )
                for face_id, row in zip(ids, hits, strict=True)
                if face_id in owners
                for hit in row
                # A new face's own row already counts the other new faces.
                if hit.id not in new and hit.id in owners
            ]
            await asyncio.to_thread(self.gallery.put_face_scores, model_version, rows)
            await asyncio.to_thread(self.gallery.raise_face_scores, model_version, raises)
        except Exception as error:  # bookkeeping: the enrolment stands, a recompute mends it
            log.warning(
                "scores of %d new faces in version %s not kept (a recompute mends them): %s",
                len(ids),
                model_version,
                error,
                exc_info=True,
            )

    async def deleted(self, collection: str, model_version: str, face_ids: Sequence[int]) -> None:
        """Faces gone from the database and ``collection``: the faces whose score came from one
        of them are searched again. Never raises."""
        if not face_ids:
            return
        try:
            affected = await asyncio.to_thread(self.gallery.faces_scored_against, model_version, face_ids)
            gone = {int(face_id) for face_id in face_ids}
            await self._rescore(collection, model_version, [face for face in affected if face not in gone])
        except Exception as error:  # bookkeeping: the deletion stands, a recompute mends it
            log.warning(
                "scores against %d deleted faces in version %s not recomputed (a recompute mends them): %s",
                len(face_ids),
                model_version,
                error,
                exc_info=True,
            )

    async def _rescore(self, collection: str, model_version: str, face_ids: Sequence[int]) -> int:
        scored = 0
        for start in range(0, len(face_ids), self.batch):
            ids, vectors = await asyncio.to_thread(
                self.gallery.embeddings_of, model_version, face_ids[start : start + self.batch]
            )
            if ids.size:
                rows, _, _ = await self._score(collection, ids.tolist(), vectors)
                await asyncio.to_thread(self.gallery.put_face_scores, model_version, rows)
                scored += len(rows)
        return scored

    async def recompute(self, collection: str, model_version: str) -> int:
        """Score every face of ``model_version`` again, from its stored embedding, against
        ``collection``; returns how many were scored. Errors propagate.

        A page of faces at a time, each page's rows replaced at once: the scores in force stay
        whole throughout, the old ones where the walk has not come yet.
        """
        after, scored = 0, 0
        while True:
            ids, vectors = await asyncio.to_thread(self.gallery.embeddings, model_version, after, self.batch)
            if not ids.size:
                break
            after = int(ids[-1])
            rows, _, _ = await self._score(collection, ids.tolist(), vectors)
            await asyncio.to_thread(self.gallery.put_face_scores, model_version, rows)
            scored += len(rows)
        log.info("scores of version %s recomputed in %s: %d faces", model_version, collection, scored)
        return scored
