"""People and their enrolled faces: any key reads them, an admin key writes them."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response, UploadFile, status

from orchestrator.api.deps import ResourcesDep, admin_key, current_key
from orchestrator.api.params import LeftOut, Offset, RowId
from orchestrator.api.responses import IMAGE_UPLOAD, JSON_BODY, problems
from orchestrator.api.schemas import EnrolledFace, FaceList, PersonList
from orchestrator.db.tables import NO_NUL, PersonCreate, PersonPublic, PersonUpdate

router = APIRouter(
    prefix="/v1", tags=["people"], dependencies=[Depends(current_key)], responses=problems(401)
)
admin_router = APIRouter(
    prefix="/v1", tags=["people"], dependencies=[Depends(admin_key)], responses=problems(401, 403)
)
TAKEN = {409: "the external_id belongs to another person"}


@admin_router.post(
    "/people",
    status_code=status.HTTP_201_CREATED,
    response_model=PersonPublic,
    responses=problems(409, *JSON_BODY, why=TAKEN),
)
async def create_person(body: PersonCreate, resources: ResourcesDep) -> Any:
    return await asyncio.to_thread(resources.gallery.create_person, body)


@router.get("/people", response_model=PersonList, responses=problems(422))
async def list_people(
    resources: ResourcesDep,
    q: Annotated[
        str | None,
        Query(max_length=200, pattern=NO_NUL, description="matches name, external id, attributes"),
        LeftOut(),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> Any:
    items, total = await asyncio.to_thread(resources.gallery.list_people, q, limit, offset)
    return {"items": items, "total": total}


@router.get("/people/{person_id}", response_model=PersonPublic, responses=problems(404, 422))
async def get_person(person_id: RowId, resources: ResourcesDep) -> Any:
    return await asyncio.to_thread(resources.gallery.get_person, person_id)


@admin_router.patch(
    "/people/{person_id}", response_model=PersonPublic, responses=problems(404, 409, *JSON_BODY, why=TAKEN)
)
async def update_person(person_id: RowId, body: PersonUpdate, resources: ResourcesDep) -> Any:
    with resources.live.writing():
        return await asyncio.to_thread(resources.gallery.update_person, person_id, body)


@admin_router.delete(
    "/people/{person_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404, 422)
)
async def delete_person(person_id: RowId, resources: ResourcesDep) -> Response:
    with resources.live.writing():
        await resources.enrolment.delete_person(person_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@admin_router.post(
    "/people/{person_id}/faces",
    status_code=status.HTTP_201_CREATED,
    response_model=EnrolledFace,
    responses=problems(
        404,
        *IMAGE_UPLOAD,
        why={422: "no face, or several faces without pick=largest; or the request does not validate"},
    ),
)
async def enrol_face(
    person_id: RowId,
    file: UploadFile,
    resources: ResourcesDep,
    pick: Annotated[
        Literal["largest"] | None, Query(description="enrol the largest of several faces"), LeftOut()
    ] = None,
) -> Any:
    image = await file.read()
    with resources.live.writing():
        return await resources.enrolment.enrol(person_id, image, pick_largest=pick == "largest")


@router.get("/people/{person_id}/faces", response_model=FaceList, responses=problems(404, 422))
async def list_faces(person_id: RowId, resources: ResourcesDep) -> Any:
    await asyncio.to_thread(resources.gallery.get_person, person_id)
    return {"items": await asyncio.to_thread(resources.gallery.list_faces, person_id)}


@admin_router.delete("/faces/{face_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404, 422))
async def delete_face(face_id: RowId, resources: ResourcesDep) -> Response:
    with resources.live.writing():
        await resources.enrolment.delete_face(face_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


ANALYSE_IMAGES = (enrol_face,)
"""Admitted at the door (:mod:`orchestrator.api.door`) as one image each, before their body."""
