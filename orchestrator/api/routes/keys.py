"""API keys: created by admins, shown once, stored hashed."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Depends, Response, status

from orchestrator.api.deps import ResourcesDep, admin_principal
from orchestrator.api.params import RowId
from orchestrator.api.responses import JSON_BODY, problems
from orchestrator.api.schemas import CreatedKey, KeyList, NewKey

router = APIRouter(
    prefix="/v1/keys", tags=["keys"], dependencies=[Depends(admin_principal)], responses=problems(401, 403)
)


@router.post(
    "", status_code=status.HTTP_201_CREATED, response_model=CreatedKey, responses=problems(*JSON_BODY)
)
async def create_key(body: NewKey, resources: ResourcesDep) -> Any:
    with resources.live.writing():  # the new key works here at once
        public, plaintext = await asyncio.to_thread(resources.gallery.create_key, body.name, body.role)
    return {**public.model_dump(), "key": plaintext}


@router.get("", response_model=KeyList)
async def list_keys(resources: ResourcesDep) -> Any:
    return {"items": await asyncio.to_thread(resources.gallery.list_keys)}


@router.delete("/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404, 409, 422))
async def revoke_key(key_id: RowId, resources: ResourcesDep) -> Response:
    with resources.live.writing():
        await asyncio.to_thread(resources.gallery.revoke_key, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
