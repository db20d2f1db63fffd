"""People and their enrolled faces: any key reads them, an admin key writes them."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response, UploadFile, status

from orchestrator.api.deps import AdmissionDep, ResourcesDep, admin_key, current_key
from orchestrator.api.params import Offset, RowId
from orchestrator.api.schemas import EnrolledFace, FaceList, PersonList
from orchestrator.db.tables import PersonCreate, PersonPublic, PersonUpdate

router = APIRouter(prefix="/v1", tags=["people"], dependencies=[Depends(current_key)])
admin_router = APIRouter(prefix="/v1", tags=["people"], dependencies=[Depends(admin_key)])


@admin_router.post("/people", status_code=status.HTTP_201_CREATED, response_model=PersonPublic)
async def create_person(body: PersonCreate, resources: ResourcesDep) -> Any:
    return await asyncio.to_thread(resources.gallery.create_person, body)


@router.get("/people", response_model=PersonList)
async def list_people(
    resources: ResourcesDep,
    q: Annotated[
        str | None, Query(max_length=200, description="matches name, external id, attributes")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> Any:
    items, total = await asyncio.to_thread(resources.gallery.list_people, q, limit, offset)
    return {"items": items, "total": total}


@router.get("/people/{person_id}", response_model=PersonPublic)
async def get_person(person_id: RowId, resources: ResourcesDep) -> Any:
    return await asyncio.to_thread(resources.gallery.get_person, person_id)


@admin_router.patch("/people/{person_id}", response_model=PersonPublic)
async def update_person(person_id: RowId, body: PersonUpdate, resources: ResourcesDep) -> Any:
    with resources.live.writing():
        return await asyncio.to_thread(resources.gallery.update_person, person_id, body)


@admin_router.delete("/people/{person_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_person(person_id: RowId, resources: ResourcesDep) -> Response:
    with resources.live.writing():
        await resources.enrolment.delete_person(person_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@admin_router.post(
    "/people/{person_id}/faces",
    status_code=status.HTTP_201_CREATED,
    response_model=EnrolledFace,
    responses={422: {"description": "no face, or several faces without pick=largest"}},
)
async def enrol_face(
    person_id: RowId,
    file: UploadFile,
    resources: ResourcesDep,
    admission: AdmissionDep,
    pick: Annotated[
        Literal["largest"] | None, Query(description="enrol the largest of several faces")
    ] = None,
) -> Any:
    image = await file.read()
    async with admission.slot():
        with resources.live.writing():
            return await resources.enrolment.enrol(person_id, image, pick_largest=pick == "largest")


@router.get("/people/{person_id}/faces", response_model=FaceList)
async def list_faces(person_id: RowId, resources: ResourcesDep) -> Any:
    await asyncio.to_thread(resources.gallery.get_person, person_id)
    return {"items": await asyncio.to_thread(resources.gallery.list_faces, person_id)}


@admin_router.delete("/faces/{face_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_face(face_id: RowId, resources: ResourcesDep) -> Response:
    with resources.live.writing():
        await resources.enrolment.delete_face(face_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
