"""Liveness and readiness (a real check of every dependency) for anyone; details for any key.

The details add the process and the machine (psutil) and this replica's recent requests per
route, from the in-memory statistics of :class:`orchestrator.stats.minutes.RequestMinutes`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from orchestrator.api.deps import MetricsDep, ResourcesDep, current_principal
from orchestrator.api.responses import problems
from orchestrator.api.schemas import DetailedHealth, Liveness, Readiness
from orchestrator.core.resources import Resources
from orchestrator.pipeline.face_pipeline import DETECTOR, EMBEDDER, LANDMARKS
from orchestrator.stats.host import host_state
from orchestrator.stats.inference import HEALTH_FIELDS, triton_statistics
from orchestrator.stats.minutes import RequestMinutes
from search_service.checksum import checksum_of_ids

log = logging.getLogger(__name__)
router = APIRouter(prefix="/health", tags=["health"])
"""No key: what orchestrators and load balancers probe."""
keyed_router = APIRouter(
    prefix="/health", tags=["health"], dependencies=[Depends(current_principal)], responses=problems(401)
)


async def _check(name: str, probe: Any) -> tuple[str, bool, str]:
    try:
        await asyncio.wait_for(probe, timeout=3.0)
        return name, True, "ok"
    except Exception as error:  # a failed dependency is an answer here, not an error
        return name, False, f"{type(error).__name__}: {error}"[:300]


def _database_up(resources: Resources) -> None:
    with resources.gallery.engine.connect() as connection:
        connection.execute(text("SELECT 1"))


async def _triton_ready(resources: Resources) -> None:
    state = await asyncio.to_thread(resources.gallery.state)
    wanted = [(DETECTOR, "1"), (LANDMARKS, "1"), (EMBEDDER, state.active_model_version)]
    ready = await asyncio.gather(*(resources.triton.is_ready(m, v) for m, v in wanted))
    missing = [f"{m} v{v}" for (m, v), ok in zip(wanted, ready, strict=True) if not ok]
    if missing:
        raise RuntimeError(f"not ready: {', '.join(missing)}")


async def readiness(resources: Resources) -> dict[str, dict[str, Any]]:
    checks = await asyncio.gather(
        _check("triton", _triton_ready(resources)),
        _check("search", resources.search.health()),
        _check("database", asyncio.to_thread(_database_up, resources)),
    )
    return {name: {"ok": ok, "detail": detail} for name, ok, detail in checks}


@router.get("", response_model=Liveness)
async def health() -> dict[str, str]:
    """The process answers: liveness, under the short name seed 000's clients call."""
    return {"status": "ok"}


@router.get("/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "a dependency is not ready"}},
)
async def ready(resources: ResourcesDep, request: Request) -> JSONResponse:
    if request.app.state.draining.active:
        # At once, without the dependencies' round trips: the balancer must learn it first.
        checks = {"shutdown": {"ok": False, "detail": "draining before a stop"}}
    else:
        checks = await readiness(resources)
        checks["shutdown"] = {"ok": True, "detail": "ok"}
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse(
        {"status": "ok" if ok else "unavailable", "checks": checks}, status_code=200 if ok else 503
    )


def _recent_routes(minutes: RequestMinutes) -> dict[str, Any]:
    seconds, routes = minutes.recent()
    return {"window_s": round(seconds, 1), "items": [route.model_dump() for route in routes]}


@keyed_router.get(
    "/detailed",
    response_model=DetailedHealth,
    responses={503: {"model": DetailedHealth, "description": "a dependency is not ready"}},
)
async def detailed(resources: ResourcesDep, metrics: MetricsDep) -> JSONResponse:
    checks, (process, machine) = await asyncio.gather(
        readiness(resources), host_state(resources.settings.data_dir)
    )
    state = await asyncio.to_thread(resources.gallery.state)
    details: dict[str, Any] = {
        "checks": checks,
        "process": process.model_dump(),
        "machine": machine.model_dump(),
        "routes": _recent_routes(metrics.minutes),
        "model": {"name": EMBEDDER, "active_version": state.active_model_version},
        "gallery": {"generation": state.generation, "collection": state.active_collection},
        "cache": resources.cache.state(),
        "startup_reconciliation": {
            "rebuilt": resources.reconciliation.rebuilt,
            "database_checksum": resources.reconciliation.database_checksum,
        },
    }
    try:
        ids = await asyncio.to_thread(resources.gallery.face_ids, state.active_model_version)
        info = await resources.search.info(state.active_collection)
        database_checksum = checksum_of_ids(ids)
        details["gallery"].update(
            faces=len(ids),
            database_checksum=database_checksum,
            index_checksum=info.checksum,
            index_count=info.count,
            in_agreement=database_checksum == info.checksum,
        )
        metrics.faces.set(len(ids))
    except Exception as error:  # reported, not raised: this page must answer while degraded
        details["gallery"]["error"] = f"{type(error).__name__}: {error}"[:300]
    try:
        models = triton_statistics(await resources.triton.statistics())
        details["triton"] = [model.model_dump(include=HEALTH_FIELDS) for model in models]
    except Exception as error:
        details["triton"] = {"error": f"{type(error).__name__}: {error}"[:300]}
    ok = all(c["ok"] for c in checks.values())
    return JSONResponse({"status": "ok" if ok else "degraded", **details}, status_code=200 if ok else 503)
