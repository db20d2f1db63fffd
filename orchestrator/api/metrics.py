"""Prometheus metrics of one app instance (its own registry, never the global one), and the
per-minute request statistics that ``GET /v1/stats`` sums across replicas."""

from __future__ import annotations

import time

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrator.jobs.metrics import JobMetrics
from orchestrator.stats.minutes import RequestMinutes
from orchestrator.stats.tally import tallying

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
"""Methods counted by name; any other token a client sends counts as OTHER, so that a label
or a statistics row cannot be made per request."""


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # What the global registry has by default: CPU, memory, file descriptors, GC, Python.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.minutes = RequestMinutes()
        """This replica's requests per minute and route (``/v1/stats``, ``/health/detailed``)."""
        self.requests = Counter(
            "facerec_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "facerec_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "facerec_images_in_flight", "Images being analysed now.", registry=self.registry
        )
        self.pixel_bytes = Gauge(
            "facerec_decoded_pixel_bytes",
            "Bytes of the pixel budget reserved by the images being analysed now.",
            registry=self.registry,
        )
        self.faces = Gauge(
            "facerec_gallery_faces", "Faces in the gallery (at the last check).", registry=self.registry
        )
        self.jobs = JobMetrics(self.registry)


class MetricsMiddleware:
    """Counts and times every request under its route template (``/v1/people/{person_id}``).

    The router records the matched route in the (shared) scope, so it is read afterwards.
    Each request also lands in its minute's statistics, with the faces and cache hits its
    recognitions counted in the tally open around it.
    """

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tallying() as tally:
            try:
                await self.app(scope, receive, send_status)
            finally:
                seconds = time.perf_counter() - started
                template = getattr(scope.get("route"), "path", None)
                method = scope["method"] if scope["method"] in METHODS else "OTHER"
                route = "unmatched" if template is None else str(template)
                self.metrics.requests.labels(route, method, str(status)).inc()
                self.metrics.latency.labels(route, method).observe(seconds)
                self.metrics.minutes.observe(
                    route if template is None else f"{method} {route}",
                    status,
                    seconds * 1000,
                    faces=tally.faces,
                    cache_hits=tally.cache_hits,
                )
