"""Prometheus metrics on a per-app registry (never the process-global one).

Request counts and latency per route template, query vectors searched per collection,
vectors per collection and collections whose device copy is lost (read from the collections
at scrape time), and the device the shard searches on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _PerCollectionCollector(Collector):
    def __init__(
        self, name: str, documentation: str, values: Callable[[], Iterable[tuple[str, int]]]
    ) -> None:
        self._name = name
        self._documentation = documentation
        self._values = values

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=["collection"])
        for collection, value in self._values():
            family.add_metric([collection], value)
        yield family


class Metrics:
    def __init__(
        self,
        counts: Callable[[], Iterable[tuple[str, int]]],
        lost_copies: Callable[[], Iterable[tuple[str, int]]] = lambda: (),
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "facerec_search_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "facerec_search_request_seconds",
            "HTTP request latency by route template",
            ["method", "route"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.queries = Counter(
            "facerec_search_queries",
            "Query vectors searched per collection",
            ["collection"],
            registry=self.registry,
        )
        self.device = Gauge(
            "facerec_search_device_info",
            "1 on the device this shard searches on: cpu or gpu:N (cpu when gpu-or-cpu fell back)",
            ["device"],
            registry=self.registry,
        )
        self.registry.register(
            _PerCollectionCollector("facerec_search_vectors", "Vectors per collection", counts)
        )
        self.registry.register(
            _PerCollectionCollector(
                "facerec_search_device_copy_lost",
                "1 while a collection's device copy could not be rebuilt (its searches answer 503, "
                "or run on the CPU with gpu-or-cpu)",
                lost_copies,
            )
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Pure ASGI middleware timing each request under its route template."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            # The router stores the matched route in the shared scope; using its
            # template keeps label cardinality bounded.
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)
