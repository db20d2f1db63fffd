"""API keys: created by admins, shown once, stored hashed."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Response, status

from orchestrator.api.deps import AdminKey, ResourcesDep
from orchestrator.api.schemas import CreatedKey, KeyList, NewKey

router = APIRouter(tags=["keys"])


@router.post("/v1/keys", status_code=status.HTTP_201_CREATED, response_model=CreatedKey)
async def create_key(body: NewKey, resources: ResourcesDep, key: AdminKey) -> Any:
    public, plaintext = await asyncio.to_thread(resources.gallery.create_key, body.name, body.role)
    return {**public.model_dump(), "key": plaintext}


@router.get("/v1/keys", response_model=KeyList)
async def list_keys(resources: ResourcesDep, key: AdminKey) -> Any:
    return {"items": await asyncio.to_thread(resources.gallery.list_keys)}


@router.delete("/v1/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(key_id: int, resources: ResourcesDep, key: AdminKey) -> Response:
    with resources.live.writing():
        await asyncio.to_thread(resources.gallery.revoke_key, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
