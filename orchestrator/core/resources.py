"""Everything the service needs, opened once by the app's lifespan and held in one typed object.

The HTTP layer's own objects (metrics, admission) live on the app, not here: nothing below
``api/`` knows about HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass

from celery import Celery

from orchestrator.clients.search_backend import SearchBackend
from orchestrator.clients.triton import TritonModels
from orchestrator.core.settings import Settings
from orchestrator.db.gallery import Gallery
from orchestrator.gallery.enrolment import Enrolment
from orchestrator.gallery.index_sync import Reconciliation
from orchestrator.gallery.live_view import LiveView
from orchestrator.gallery.rollout import RolloutRunner
from orchestrator.gallery.score_keeper import ScoreKeeper
from orchestrator.pipeline.face_pipeline import FacePipeline
from orchestrator.recognition.cache import RecognitionCache
from orchestrator.recognition.service import Recognition


@dataclass
class Resources:
    settings: Settings
    gallery: Gallery
    triton: TritonModels
    search: SearchBackend
    cache: RecognitionCache
    pipeline: FacePipeline
    recognition: Recognition
    enrolment: Enrolment
    live: LiveView
    reconciliation: Reconciliation
    rollouts: RolloutRunner
    scores: ScoreKeeper
    jobs: Celery | None = None
    """Where jobs' items are sent; None without a broker (no ``REDIS_URL``)."""
