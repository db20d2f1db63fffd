"""Everything a request needs, opened once by the app's lifespan and held in one typed object."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from orchestrator.api.metrics import ApiMetrics
from orchestrator.cache import RecognitionCache
from orchestrator.config import Settings
from orchestrator.db.gallery import Gallery
from orchestrator.enrolment import Enrolment, Reconciliation
from orchestrator.errors import UpstreamUnavailable
from orchestrator.live_view import LiveView
from orchestrator.pipeline import FacePipeline
from orchestrator.recognition import Recognition
from orchestrator.rollout import RolloutRunner
from orchestrator.search_client import SearchClient
from orchestrator.triton.client import TritonModels


class Admission:
    """Bounds the images analysed at once; past the bound, refuse at once instead of queueing.

    Only touched from the event loop, so a plain counter is enough.
    """

    def __init__(self, limit: int, metrics: ApiMetrics) -> None:
        self.limit = limit
        self.in_flight = 0
        self.metrics = metrics

    @asynccontextmanager
    async def slot(self, images: int = 1) -> AsyncIterator[None]:
        if self.in_flight + images > self.limit:
            raise UpstreamUnavailable(
                f"busy: {self.in_flight} images in flight (limit {self.limit}); retry shortly"
            )
        self.in_flight += images
        self.metrics.in_flight.set(self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= images
            self.metrics.in_flight.set(self.in_flight)


@dataclass
class Resources:
    settings: Settings
    gallery: Gallery
    triton: TritonModels
    search: SearchClient
    cache: RecognitionCache
    pipeline: FacePipeline
    recognition: Recognition
    enrolment: Enrolment
    metrics: ApiMetrics
    admission: Admission
    live: LiveView
    reconciliation: Reconciliation
    rollouts: RolloutRunner
