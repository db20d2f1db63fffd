"""Recognise, verify and detect: the pipeline, batched searches, and the cache.

Recognition decides with the threshold in force for the active model version: the
request's, else the gallery's calibrated one (``LiveView.calibration``); each match carries
its false-accept rate in that gallery. Verify compares two images, not an image with the
gallery, so its default stays the shipped pairwise threshold (``FACEREC_MATCH_THRESHOLD``):
the gallery's is set on each face's *best* impostor score among all of it, a stricter
measure than one pair's.
"""

from __future__ import annotations

import hashlib
import logging
import time

import numpy as np

from orchestrator.clients.search import SearchServiceError
from orchestrator.core.errors import UpstreamUnavailable
from orchestrator.db.tables import GalleryStatePublic
from orchestrator.gallery.calibration import GalleryCalibration
from orchestrator.gallery.live_view import LiveView
from orchestrator.pipeline.face_pipeline import FacePipeline, ModelVersions
from orchestrator.recognition.answers import (
    DetectAnswer,
    ImageRecognition,
    RecognizeAnswer,
    RecognizedFace,
    ThresholdSource,
    VerifyAnswer,
    detected_face,
    person_matches,
    recognized_face,
)
from orchestrator.recognition.cache import RecognitionCache
from orchestrator.recognition.log_writer import Origin, RecognitionLogWriter, answered, failed
from orchestrator.recognition.search_batching import SearchBatcher
from orchestrator.stats.tally import count_recognition

log = logging.getLogger(__name__)

FACE_HITS_PER_PERSON = 4
"""Face hits fetched per requested person, so one person's many faces don't crowd out others."""
MAX_FACE_HITS = 256


class Recognition:
    def __init__(
        self,
        live: LiveView,
        search: SearchBatcher,
        pipeline: FacePipeline,
        cache: RecognitionCache,
        recognition_log: RecognitionLogWriter,
        pair_threshold: float,
    ) -> None:
        self.live = live
        self.search = search
        self.pipeline = pipeline
        self.cache = cache
        self.recognition_log = recognition_log
        self.pair_threshold = pair_threshold
        """Verify's default: the shipped threshold, calibrated on pairs."""

    async def recognize(
        self,
        image: bytes,
        *,
        top_k: int,
        threshold: float | None,
        max_faces: int | None,
        origin: Origin,
    ) -> RecognizeAnswer:
        """Recognise every face of one image; logged as ``origin`` says, answered or failed."""
        started = time.perf_counter()
        image_sha256 = hashlib.sha256(image).hexdigest()
        version = ""
        try:
            state = await self.live.state()
            version = state.active_model_version
            calibration = await self.live.calibration(version)
            source: ThresholdSource = calibration.source if threshold is None else "request"
            threshold = calibration.threshold if threshold is None else threshold
            params = {
                "gallery": state.gallery_id,
                "top_k": top_k,
                "threshold": threshold,
                "max_faces": max_faces,
                # Names the scores every match's evidence rests on: a recalibration retires
                # the answers made before it, as a new generation does.
                "calibration": calibration.fingerprint,
            }
            key = self.cache.key(image_sha256, params, version, state.generation)
            found = await self.cache.get(key)
            cached = found is not None
            if found is None:
                found = await self._recognize(image, state, calibration, top_k, threshold, max_faces)
                await self.cache.set(key, found)
            answer = RecognizeAnswer(
                faces=found.faces,
                model_version=found.model_version,
                threshold=threshold,
                threshold_source=source,
                took_ms=round((time.perf_counter() - started) * 1000, 2),
                cached=cached,
            )
        except Exception as error:
            took_ms = round((time.perf_counter() - started) * 1000, 2)
            self.recognition_log.add(failed(origin, image_sha256, error, took_ms, version))
            raise
        count_recognition(len(answer.faces), cached)
        self.recognition_log.add(answered(origin, image_sha256, answer))
        return answer

    async def _recognize(
        self,
        image: bytes,
        state: GalleryStatePublic,
        calibration: GalleryCalibration,
        top_k: int,
        threshold: float,
        max_faces: int | None,
    ) -> ImageRecognition:
        version = state.active_model_version
        analysis = await self.pipeline.analyse(
            image, max_faces=max_faces, versions=ModelVersions(embedder=version)
        )
        faces: list[RecognizedFace] = []
        if analysis.faces:
            queries = np.stack([f.embedding for f in analysis.faces if f.embedding is not None])
            k = min(top_k * FACE_HITS_PER_PERSON, MAX_FACE_HITS)
            try:
                hits = await self.search.search(state.active_collection, queries, k)
            except SearchServiceError as error:
                raise UpstreamUnavailable(f"search service: {error}") from error
            owners = await self.live.owners([h.id for row in hits for h in row])
            faces = [
                recognized_face(face, person_matches(row, owners, top_k, calibration), threshold)
                for face, row in zip(analysis.faces, hits, strict=True)
            ]
        return ImageRecognition(faces=faces, model_version=version)

    async def verify(self, first: bytes, second: bytes, threshold: float | None) -> VerifyAnswer:
        threshold = self.pair_threshold if threshold is None else threshold
        state = await self.live.state()
        versions = ModelVersions(embedder=state.active_model_version)
        similarity = await self.pipeline.compare_largest((first, second), ("file1", "file2"), versions)
        return VerifyAnswer(
            similarity=similarity,
            match=similarity >= threshold,
            threshold=threshold,
            model_version=state.active_model_version,
        )

    async def detect(self, image: bytes, max_faces: int | None) -> DetectAnswer:
        analysis = await self.pipeline.analyse(image, embed=False, max_faces=max_faces)
        return DetectAnswer(faces=[detected_face(face) for face in analysis.faces])
