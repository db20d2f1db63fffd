"""Users, managed by admins: people who sign in to the web UI (machines keep API keys).

The last admin user is kept: deleting or demoting it is refused with 409, whoever asks, so
the web app always has an admin once it has had one (see :mod:`orchestrator.db.accounts`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Response, status

from orchestrator.accounts.users import add_user, change_user
from orchestrator.api.deps import CurrentPrincipal, ResourcesDep, admin_principal
from orchestrator.api.params import RowId
from orchestrator.api.responses import JSON_BODY, problems
from orchestrator.api.schemas import NewUser, UserChange, UserList
from orchestrator.db.account_tables import UserPublic

router = APIRouter(
    prefix="/v1/users", tags=["users"], dependencies=[Depends(admin_principal)], responses=problems(401, 403)
)

LAST_ADMIN = "the user is the last admin user"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=UserPublic,
    responses=problems(409, *JSON_BODY, why={409: "the username is taken"}),
)
async def create_user(body: NewUser, resources: ResourcesDep) -> Any:
    return await asyncio.to_thread(add_user, resources.gallery, body.username, body.password, body.role)


@router.get("", response_model=UserList)
async def list_users(resources: ResourcesDep) -> Any:
    return {"items": await asyncio.to_thread(resources.gallery.list_users)}


@router.patch(
    "/{user_id}",
    response_model=UserPublic,
    responses=problems(404, 409, *JSON_BODY, why={409: f"{LAST_ADMIN}, whom the new role would demote"}),
)
async def update_user(
    user_id: RowId, body: UserChange, principal: CurrentPrincipal, resources: ResourcesDep
) -> Any:
    """Change a user's role or password. A role holds from the user's next request (sessions
    are read on each one); a new password ends the user's sessions, but the asking admin's
    own when it changes its own password. A body with neither changes nothing and answers
    the user as it is."""
    own = principal.session_id if principal.kind == "user" and principal.id == user_id else None
    return await asyncio.to_thread(
        change_user, resources.gallery, user_id, role=body.role, password=body.password, keep_session=own
    )


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(404, 409, 422, why={409: LAST_ADMIN}),
)
async def delete_user(user_id: RowId, resources: ResourcesDep) -> Response:
    """Delete the user; its sessions end with it, on every replica at once."""
    await asyncio.to_thread(resources.gallery.delete_user, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
