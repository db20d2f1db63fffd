"""Index administration (admin): the index beside the database, a rebuild, an emptied gallery.

The router has no prefix: ``DELETE /v1/people`` shares its path with the people routes, and
a 405 on that path lists the methods of both (:func:`orchestrator.api.problems.allowed_methods`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from orchestrator.api.deps import ResourcesDep, admin_principal
from orchestrator.api.responses import problems
from orchestrator.db.tables import RolloutPublic
from orchestrator.gallery.index_admin import GalleryCleared, IndexStatus, forget_everyone, index_status

router = APIRouter(tags=["index"], dependencies=[Depends(admin_principal)], responses=problems(401, 403))

SEARCH_DOWN = {503: "the search service cannot answer now; retry after Retry-After seconds"}
LOCATION = {
    "Location": {
        "description": "the rollout record to poll (a rebuild is a rollout of kind `rebuild`)",
        "required": True,
        "schema": {"type": "string"},
    }
}


@router.get("/v1/index", response_model=IndexStatus, responses=problems(503, why=SEARCH_DOWN))
async def get_index(resources: ResourcesDep) -> Any:
    """The live collection beside the database: counts, checksums, kind, memory, device."""
    return await index_status(resources.gallery, resources.search)


@router.post(
    "/v1/index/rebuild",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=RolloutPublic,
    responses={
        202: {"description": "the rebuild has begun; poll its record", "headers": LOCATION},
        **problems(409, why={409: "a rollout or rebuild is unfinished"}),
    },
)
async def rebuild_index(resources: ResourcesDep, request: Request, response: Response) -> Any:
    """Rebuild the index from the database into a new collection of the configured kind
    (``FACEREC_INDEX__*``), switched to atomically: answers keep flowing meanwhile. Follow
    it at ``GET /v1/models/rollouts/{id}`` (the ``Location``)."""
    record = await resources.rollouts.rebuild()
    response.headers["Location"] = str(
        request.app.url_path_for("get_rollout", rollout_id=str(record.rollout_id))
    )
    return record


@router.delete(
    "/v1/people",
    response_model=GalleryCleared,
    responses=problems(
        422,
        503,
        why={
            422: "confirm=all is missing (nothing is deleted), or the request does not validate",
            503: "the search service failed while emptying the index: every person is deleted "
            "already; call again to finish",
        },
    ),
)
async def delete_everyone(
    resources: ResourcesDep,
    confirm: Annotated[Literal["all"], Query(description="must be `all`: this deletes everyone")],
) -> Any:
    """Delete every person, face and vector (the live collection is emptied, not dropped)."""
    with resources.live.writing():
        return await forget_everyone(resources.gallery, resources.search)
