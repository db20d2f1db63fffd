"""Admission: how many images are analysed at once, refused at once past the bound."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from orchestrator.api.metrics import ApiMetrics
from orchestrator.core.errors import UpstreamUnavailable


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
