"""Admission: how many images are analysed at once, refused at once past the bound."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from orchestrator.api.metrics import ApiMetrics
from orchestrator.core.errors import UpstreamUnavailable


class Admission:
    """Bounds the images analysed at once; past the bound, refuse at once instead of queueing.

    The door (:mod:`orchestrator.api.door`) takes one image for every request to a route
    that analyses images, before its body is read; a route that analyses more than one per
    request (a batch, verify) takes the others with :meth:`more` once it knows how many.
    Only touched from the event loop, so a plain counter is enough.
    """

    def __init__(self, limit: int, metrics: ApiMetrics) -> None:
        self.limit = limit
        self.in_flight = 0
        self.metrics = metrics

    def take(self, images: int = 1) -> None:
        """Count ``images`` more in flight, or raise ``UpstreamUnavailable`` (503) past the limit."""
        if self.in_flight + images > self.limit:
            raise UpstreamUnavailable(
                f"busy: {self.in_flight} images in flight (limit {self.limit}); retry shortly"
            )
        self.in_flight += images
        self.metrics.in_flight.set(self.in_flight)

    def release(self, images: int = 1) -> None:
        self.in_flight -= images
        self.metrics.in_flight.set(self.in_flight)

    @asynccontextmanager
    async def more(self, images: int) -> AsyncIterator[None]:
        """``images`` more for the block, beyond the one the door took for the request."""
        self.take(images)
        try:
            yield
        finally:
            self.release(images)
