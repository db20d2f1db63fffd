"""The embedder's versions in Triton's repository, loaded or not, and the active one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status

from orchestrator.api.deps import ResourcesDep, admin_principal
from orchestrator.api.params import Offset, RowId
from orchestrator.api.responses import JSON_BODY, problems
from orchestrator.api.schemas import ModelsAnswer, NewRollout, RolloutPage
from orchestrator.db.tables import RolloutPublic
from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.modelrepo.records import VersionRecord, describe, inferred_source
from orchestrator.pipeline.face_pipeline import EMBEDDER

router = APIRouter(
    prefix="/v1/models",
    tags=["models"],
    dependencies=[Depends(admin_principal)],
    responses=problems(401, 403),
)
UNFINISHED = "another rollout is unfinished"


def _on_disk(repository: Path) -> tuple[dict[int, VersionRecord], set[int]]:
    """The embedder's version directories with their records, and the store's derived versions."""
    store = ModelStore.containing(repository)
    derived = store.derived_versions() if store else set()
    return describe(repository / EMBEDDER, derived), derived


def _state(triton_state: str | None) -> str:
    # UNLOADING and UNKNOWN serve nothing new either.
    return triton_state if triton_state in ("READY", "LOADING") else "UNAVAILABLE"


@router.get("", response_model=ModelsAnswer, responses=problems(503, why={503: "Triton cannot answer now"}))
async def models(resources: ResourcesDep) -> Any:
    """Every embedder version in Triton's repository, loaded or not, with where it came from."""
    state = await asyncio.to_thread(resources.gallery.state)
    index = await resources.triton.repository_index()
    on_disk, derived = await asyncio.to_thread(_on_disk, resources.settings.triton_repository)
    loaded = {
        int(m["version"]): m.get("state")
        for m in index
        if m["name"] == EMBEDDER and str(m.get("version", "")).isdigit()
    }
    versions = []
    # A version Triton reports without its directory here: this process sees another repository.
    for version in sorted(on_disk.keys() | loaded.keys()):
        record = on_disk.get(version)
        versions.append(
            {
                "version": str(version),
                "state": _state(loaded.get(version)),
                "source": record.source if record else inferred_source(version, derived),
                "created_at": record.created_at if record else None,
                "origin": record.origin if record else None,
            }
        )
    return {"active": {"name": EMBEDDER, "version": state.active_model_version}, "versions": versions}


@router.post(
    "/rollouts",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RolloutPublic,
    responses=problems(409, *JSON_BODY, why={409: f"that version is already active, or {UNFINISHED}"}),
)
async def start_rollout(body: NewRollout, resources: ResourcesDep) -> Any:
    """Switch the embedder to ``version`` under traffic; follow it at GET …/rollouts/{id}."""
    return await resources.rollouts.start(body.version)


@router.get("/rollouts", response_model=RolloutPage, responses=problems(422))
async def list_rollouts(
    resources: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=100, description="rollouts per page")] = 20,
    offset: Offset = 0,
) -> Any:
    """Every rollout, rebuild and rollback, newest first: the first is the latest, whether it
    is still running or has ended (so a page shown again finds what to follow)."""
    rollouts, total = await asyncio.to_thread(resources.gallery.list_rollouts, limit, offset)
    return RolloutPage(items=rollouts, total=total)


@router.get("/rollouts/{rollout_id}", response_model=RolloutPublic, responses=problems(404, 422))
async def get_rollout(rollout_id: RowId, resources: ResourcesDep) -> Any:
    return await asyncio.to_thread(resources.gallery.get_rollout, rollout_id)


@router.post(
    "/rollouts/{rollout_id}/rollback",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RolloutPublic,
    responses=problems(404, 409, 422, why={409: f"the rollout is not done, or {UNFINISHED}"}),
)
async def rollback(rollout_id: RowId, resources: ResourcesDep) -> Any:
    """Reverse a finished rollout (the same procedure, back to its old version)."""
    return await resources.rollouts.rollback(rollout_id)
