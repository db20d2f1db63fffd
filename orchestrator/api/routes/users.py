"""Users, managed by admins: people who sign in to the web UI (machines keep API keys)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Response, status

from orchestrator.accounts.users import add_user
from orchestrator.api.deps import ResourcesDep, admin_principal
from orchestrator.api.params import RowId
from orchestrator.api.responses import JSON_BODY, problems
from orchestrator.api.schemas import NewUser, UserList
from orchestrator.db.account_tables import UserPublic

router = APIRouter(
    prefix="/v1/users", tags=["users"], dependencies=[Depends(admin_principal)], responses=problems(401, 403)
)


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


@router.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404, 422))
async def delete_user(user_id: RowId, resources: ResourcesDep) -> Response:
    """Delete the user; its sessions end with it, on every replica at once."""
    await asyncio.to_thread(resources.gallery.delete_user, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
