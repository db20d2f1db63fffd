"""The embedder's versions as Triton has them, and the active one."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, status

from orchestrator.api.deps import ResourcesDep, admin_key
from orchestrator.api.params import RowId
from orchestrator.api.responses import JSON_BODY, problems
from orchestrator.api.schemas import ModelsAnswer, NewRollout
from orchestrator.db.tables import RolloutPublic
from orchestrator.pipeline.face_pipeline import EMBEDDER

router = APIRouter(
    prefix="/v1/models", tags=["models"], dependencies=[Depends(admin_key)], responses=problems(401, 403)
)
UNFINISHED = "another rollout is unfinished"


@router.get("", response_model=ModelsAnswer, responses=problems(503, why={503: "Triton cannot answer now"}))
async def models(resources: ResourcesDep) -> Any:
    state = await asyncio.to_thread(resources.gallery.state)
    index = await resources.triton.repository_index()
    versions = sorted(
        (
            {"version": m["version"], "state": m.get("state", "UNKNOWN")}
            for m in index
            if m["name"] == EMBEDDER and m.get("version")
        ),
        key=lambda v: int(v["version"]),
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
