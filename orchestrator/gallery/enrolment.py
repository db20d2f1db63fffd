"""Enrolment and deletion, keeping the database (the truth) and the search index consistent.

Order of writes: the database first, then the index, then the gallery generation (which
retires cached answers). A crash between the first two leaves the index behind the
database; ``reconcile`` at start-up repairs it, and until then the answer builder drops
any hit whose face is not in the database, so an orphan is never served.

Before anything is written, a face that matches another person's at the threshold in force
is refused as a duplicate identity (an admin may force it). Once a face is in, or gone, the
score keeper brings the gallery's impostor and genuine scores up to date.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import cv2
import numpy as np

from orchestrator.clients.search import SearchServiceError
from orchestrator.clients.search_backend import SearchBackend
from orchestrator.core.errors import (
    Conflict,
    FaceCountError,
    FacerecError,
    InvalidRequest,
    QualityRejected,
    UpstreamUnavailable,
)
from orchestrator.core.settings import QualitySettings
from orchestrator.db.gallery import Gallery
from orchestrator.db.people import NewFace
from orchestrator.db.tables import GalleryStatePublic, PersonCreate
from orchestrator.gallery.duplicates import refuse_duplicates
from orchestrator.gallery.index_sync import is_duplicate, put_vectors
from orchestrator.gallery.score_keeper import ScoreKeeper
from orchestrator.pipeline import quality
from orchestrator.pipeline.calibration import DEFAULT_MATCH_THRESHOLD
from orchestrator.pipeline.face_pipeline import Analysis, FacePipeline, ModelVersions
from orchestrator.pipeline.vision.faces import Face
from orchestrator.runtime import failpoints

log = logging.getLogger(__name__)


def crop_png(crop: np.ndarray) -> bytes:
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(crop, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError("PNG encoding of an aligned crop failed")
    return buffer.tobytes()


def _only_face(analysis: Analysis, pick_largest: bool) -> Face:
    """The face to enrol from an image: its only one, or with ``pick_largest`` its largest."""
    count = len(analysis.faces)
    if count == 0:
        raise FaceCountError("no face found in the image")
    if count > 1 and not pick_largest:
        raise FaceCountError(f"{count} faces found; enrol an image with one face or pass pick=largest")
    return analysis.faces[0]


class Enrolment:
    def __init__(
        self,
        gallery: Gallery,
        search: SearchBackend,
        pipeline: FacePipeline,
        quality_gate: QualitySettings | None = None,
        *,
        scores: ScoreKeeper | None = None,
        threshold_for: Callable[[str], Awaitable[float]] | None = None,
        match_threshold: float = DEFAULT_MATCH_THRESHOLD,
    ) -> None:
        self.gallery = gallery
        self.search = search
        self.pipeline = pipeline
        self.quality_gate = quality_gate or QualitySettings()
        """What a face must meet to be enrolled (the defaults unless given)."""
        self.scores = scores
        """Checks for duplicate identities and keeps the scores; None: neither (tests of other things)."""
        self.threshold_for = threshold_for or self._fixed_threshold
        """The match threshold in force for a model version: a face of another person at or above
        it is a duplicate identity."""
        self.match_threshold = match_threshold

    async def _fixed_threshold(self, model_version: str) -> float:
        return self.match_threshold

    async def _refuse_duplicates(
        self,
        state: GalleryStatePublic,
        embeddings: np.ndarray,
        person_id: int | None,
        files: Sequence[str] = (),
    ) -> None:
        """Refuse faces [n, D] of someone other than ``person_id`` who is enrolled already."""
        if self.scores is not None:
            threshold = await self.threshold_for(state.active_model_version)
            await refuse_duplicates(
                self.scores, state.active_collection, embeddings, person_id, threshold, files
            )

    def _gate(self, face: Face, analysis: Analysis, check_quality: bool = True) -> None:
        """Refuse a face too small, blurred, turned or uncertain to enrol (an admin may skip it)."""
        if not (check_quality and self.quality_gate.enabled):
            return
        # A 112×112 crop and 5 points: well under a millisecond, not worth a hop to the pool.
        reasons = quality.check(quality.measure(face, analysis.width, analysis.height), self.quality_gate)
        if reasons:
            log.info("enrolment refused by the quality gate: %s", ", ".join(r.criterion for r in reasons))
            said = "; ".join(reason.message for reason in reasons)
            raise QualityRejected(
                f"the face is not fit to enrol: {said} (quality=off enrols it anyway)", reasons
            )

    async def enrol(
        self,
        person_id: int,
        image: bytes,
        *,
        pick_largest: bool,
        check_quality: bool = True,
        force: bool = False,
    ) -> dict[str, Any]:
        state = await asyncio.to_thread(self.gallery.state)
        await asyncio.to_thread(self.gallery.get_person, person_id)  # 404 before any work
        analysis = await self.pipeline.analyse(
            image, versions=ModelVersions(embedder=state.active_model_version)
        )
        face = _only_face(analysis, pick_largest)
        self._gate(face, analysis, check_quality)
        assert face.embedding is not None and face.crop is not None
        if not force:
            await self._refuse_duplicates(state, face.embedding[None], person_id)
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
        if self.scores is not None:
            await self.scores.enrolled(
                state.active_collection, state.active_model_version, [(stored.face_id, face.embedding)]
            )
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

    async def enrol_person(
        self,
        person: PersonCreate,
        images: Sequence[tuple[str, bytes]],
        *,
        pick_largest: bool,
        check_quality: bool = True,
        force: bool = False,
    ) -> dict[str, Any]:
        """Create a person with one face from each of ``images`` ((file name, bytes)): all or nothing.

        Every image is analysed before anything is written. The first image (in order) that
        fails (not an image, no face, several without ``pick_largest``, refused by the quality
        gate, or unless ``force`` a face of someone already enrolled) fails the request with
        the problem its own enrolment would give, its detail naming the file; then nothing is
        created. The person, the faces and their embeddings go into the database in one
        transaction, then the vectors into the index; should the index refuse them, the person
        is deleted again (its faces with it).
        """
        if not images:
            raise InvalidRequest("at least one image is needed")
        external_id = person.external_id
        # Checked before the analyses too, so an import run again skips its done rows at no cost.
        taken = external_id is not None and await asyncio.to_thread(
            self.gallery.external_id_taken, external_id
        )
        if taken:
            raise Conflict(f"external_id {external_id!r} belongs to another person")
        state = await asyncio.to_thread(self.gallery.state)
        versions = ModelVersions(embedder=state.active_model_version)
        analysed = await asyncio.gather(
            *(self.pipeline.analyse(image, versions=versions) for _, image in images), return_exceptions=True
        )
        faces = []
        for number, ((name, image), analysis) in enumerate(zip(images, analysed, strict=True), 1):
            try:
                if isinstance(analysis, BaseException):
                    raise analysis
                face = _only_face(analysis, pick_largest)
                self._gate(face, analysis, check_quality)
            except FacerecError as error:
                error.detail = f"file {number} ({name!r}): {error.detail}"
                error.args = (error.detail,)
                raise
            assert face.embedding is not None and face.crop is not None
            faces.append((face, hashlib.sha256(image).hexdigest()))
        if not force:
            embeddings = np.stack([face.embedding for face, _ in faces if face.embedding is not None])
            await self._refuse_duplicates(state, embeddings, None, [name for name, _ in images])
        crops = [face.crop for face, _ in faces if face.crop is not None]
        pngs = await asyncio.to_thread(lambda: [crop_png(crop) for crop in crops])
        stored = [
            NewFace(
                embedding=face.embedding,
                model_version=state.active_model_version,
                crop_png=png,
                image_sha256=sha256,
                quality=face.quality,
                det_score=face.det_score,
                box=[float(v) for v in face.box],
            )
            for (face, sha256), png in zip(faces, pngs, strict=True)
            if face.embedding is not None
        ]
        created, face_ids = await asyncio.to_thread(self.gallery.create_person_with_faces, person, stored)
        vectors = np.stack([face.embedding for face in stored])
        try:
            await put_vectors(self.search, state.active_collection, face_ids, vectors)
        except SearchServiceError as error:
            await self._undo_person(created.id, face_ids, state.active_collection)
            raise UpstreamUnavailable(f"search service: {error}") from error
        if self.scores is not None:
            await self.scores.enrolled(
                state.active_collection, state.active_model_version, list(zip(face_ids, vectors, strict=True))
            )
        if state.pending_model_version and state.pending_collection:
            for (face, _), face_id in zip(faces, face_ids, strict=True):
                assert face.crop is not None and face.embedding is not None
                await self._dual_write(face_id, face.crop, face.embedding, state)
        await asyncio.to_thread(self.gallery.bump_generation)
        log.info("person enrolled", extra={"person_id": created.id, "faces": len(face_ids)})
        return {
            **created.model_dump(),
            "faces": [
                {
                    "face_id": face_id,
                    "person_id": created.id,
                    "box": [round(float(v), 1) for v in face.box],
                    "det_score": round(face.det_score, 4),
                    "quality": face.quality,
                }
                for (face, _), face_id in zip(faces, face_ids, strict=True)
            ],
        }

    async def _undo_person(self, person_id: int, face_ids: list[int], collection: str) -> None:
        """Take back a person whose vectors the index refused, some of them perhaps added."""
        await asyncio.to_thread(self.gallery.delete_person, person_id)
        try:
            await self.search.delete(collection, face_ids)
        except SearchServiceError as error:
            # Their rows are gone, so answers drop these hits; reconciliation removes them.
            log.warning("index delete of %d faces from %s failed: %s", len(face_ids), collection, error)

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
            if self.scores is not None and version != state.active_model_version:
                await self.scores.enrolled(collection, version, [(face_id, vector[0])])
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
        if self.scores is not None and face_ids:
            # Per version: a rebuild's collection holds the same version's faces, scored once.
            versions = {state.active_model_version: state.active_collection}
            if state.pending_model_version and state.pending_collection:
                versions.setdefault(state.pending_model_version, state.pending_collection)
            for version, collection in versions.items():
                await self.scores.deleted(collection, version, face_ids)
        await asyncio.to_thread(self.gallery.bump_generation)

    async def delete_person(self, person_id: int) -> None:
        await self._forget(await asyncio.to_thread(self.gallery.delete_person, person_id))

    async def delete_face(self, face_id: int) -> None:
        await asyncio.to_thread(self.gallery.delete_face, face_id)
        await self._forget([face_id])
