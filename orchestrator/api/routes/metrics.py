"""Prometheus metrics of this instance, for the scraper: no key, not in the API docs."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orchestrator.api.deps import MetricsDep

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
async def prometheus_metrics(metrics: MetricsDep) -> Response:
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
