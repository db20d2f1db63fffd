"""People who may be enrolled twice (admin): pairs whose faces match each other.

Registered before the people routes: ``/v1/people/duplicates`` would otherwise be taken for
``/v1/people/{person_id}`` and refused as an id that is not a number. For the same reason the
methods that template has and this path has not answer 405 here, from a hidden route.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, status
from starlette.exceptions import HTTPException

from orchestrator.api.deps import ResourcesDep, admin_principal
from orchestrator.api.params import Offset
from orchestrator.api.responses import problems
from orchestrator.api.schemas import DuplicateList
from orchestrator.db.store import MAX_PAGE

router = APIRouter(
    prefix="/v1/people",
    tags=["people"],
    dependencies=[Depends(admin_principal)],
    responses=problems(401, 403),
)


@router.get("/duplicates", response_model=DuplicateList, responses=problems(422))
async def duplicates(
    resources: ResourcesDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Offset = 0,
) -> Any:
    """Pairs of people with faces that match each other at the threshold in force for the
    active version (``GET /v1/calibration``), best similarity first, each pair once with the
    two faces that give it."""
    state = await resources.live.state()
    version = state.active_model_version
    threshold = await resources.live.threshold(version)
    items, total = await asyncio.to_thread(
        resources.gallery.duplicate_pairs, version, threshold, limit, offset
    )
    return {"items": items, "total": total}


@router.api_route("/duplicates", methods=["PATCH", "DELETE"], include_in_schema=False)
async def not_a_person() -> None:
    """Not ``PATCH``/``DELETE /v1/people/{person_id}`` of a person called "duplicates"."""
    raise HTTPException(status.HTTP_405_METHOD_NOT_ALLOWED)
