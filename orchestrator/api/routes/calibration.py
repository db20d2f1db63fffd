"""The gallery's calibration (admin): the threshold in force, and the scores it rests on."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from orchestrator.api.deps import ResourcesDep, admin_principal
from orchestrator.api.params import LeftOut
from orchestrator.api.responses import problems
from orchestrator.api.schemas import CalibrationAnswer

router = APIRouter(
    prefix="/v1/calibration",
    tags=["calibration"],
    dependencies=[Depends(admin_principal)],
    responses=problems(401, 403),
)

SEARCH_DOWN = {503: "the search service cannot answer now; retry after Retry-After seconds"}
ModelVersion = Annotated[
    str | None,
    Query(pattern=r"^[1-9][0-9]{0,8}$", description="an arcface version (default: the active one)"),
    LeftOut(),
]


@router.get("", response_model=CalibrationAnswer, responses=problems(422))
async def calibration(resources: ResourcesDep, model_version: ModelVersion = None) -> Any:
    """Both score distributions as histograms, the threshold they set for
    ``FACEREC_MATCH__TARGET_FAR`` (or the shipped one, and why), its estimated false-accept
    and false-reject rates, and how many scores they rest on.

    The active version's is the one this replica answers with; it is read again once the
    gallery has changed, at most every ``FACEREC_MATCH__RECALIBRATE_S``.
    """
    version = model_version or (await resources.live.state()).active_model_version
    found = await resources.live.calibration(version)
    return await asyncio.to_thread(CalibrationAnswer.of, found)


@router.post(
    "/recompute",
    response_model=CalibrationAnswer,
    responses=problems(503, why=SEARCH_DOWN),
)
async def recompute(resources: ResourcesDep) -> Any:
    """Search every face of the active version again for its impostor and genuine scores, then
    answer the calibration they give. Synchronous: it answers when every score is written,
    which on a large gallery takes a while (the scores are kept up as faces come and go, so
    this is for repair or after changing ``FACEREC_MATCH__NEIGHBOURS``)."""
    state = await resources.live.state()
    await resources.scores.recompute(state.active_collection, state.active_model_version)
    # A new generation: every other worker and replica reads the new scores too, and cached
    # answers decided by the old threshold retire.
    with resources.live.writing():
        await asyncio.to_thread(resources.gallery.bump_generation)
    found = await resources.live.recalibrate(state.active_model_version)
    return await asyncio.to_thread(CalibrationAnswer.of, found)
