"""People and their enrolled faces: any key reads them, an admin key writes them."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response, status

from orchestrator.api import image_body
from orchestrator.api.deps import AdmissionDep, ResourcesDep, admin_principal, current_principal
from orchestrator.api.door import is_form
from orchestrator.api.image_body import ImageUpload
from orchestrator.api.params import LeftOut, Offset, RowId
from orchestrator.api.person_body import REQUEST_BODY, EnrolledPerson, read_form, read_json
from orchestrator.api.responses import IMAGE_UPLOAD, JSON_BODY, problems
from orchestrator.api.schemas import EnrolledFace, FaceList, PersonList
from orchestrator.db.listing import PeopleQuery, PeopleSort
from orchestrator.db.tables import (
    ADDRESS_MAX,
    AGE_MAX,
    GENDER_MAX,
    NAME_MAX,
    NO_NUL,
    PersonPublic,
    PersonUpdate,
)

router = APIRouter(
    prefix="/v1", tags=["people"], dependencies=[Depends(current_principal)], responses=problems(401)
)
admin_router = APIRouter(
    prefix="/v1", tags=["people"], dependencies=[Depends(admin_principal)], responses=problems(401, 403)
)
TAKEN = {409: "the external_id belongs to another person"}
Pick = Annotated[
    Literal["largest"] | None, Query(description="enrol the largest of several faces"), LeftOut()
]
QualityGate = Annotated[
    Literal["on", "off"],
    Query(description="off: enrol each face even if it is too small, blurred, turned or uncertain"),
]
Force = Annotated[
    bool,
    Query(description="true: enrol a face even if it matches a person other than the one it is enrolled to"),
]
DUPLICATE = (
    "the face matches an enrolled face of another person at the threshold in force (type "
    "duplicate-identity, with that `person` and the `similarity`; force=true enrols it anyway)"
)
NameFilter = Annotated[
    str | None,
    Query(max_length=NAME_MAX, pattern=NO_NUL, description="the name contains it, in any case"),
    LeftOut(),
]
GenderFilter = Annotated[
    str | None,
    Query(max_length=GENDER_MAX, pattern=NO_NUL, description="the gender is it, in any case"),
    LeftOut(),
]
AddressFilter = Annotated[
    str | None,
    Query(max_length=ADDRESS_MAX, pattern=NO_NUL, description="the address contains it, in any case"),
    LeftOut(),
]
AgeBound = Annotated[int | None, Query(ge=0, le=AGE_MAX, description="inclusive"), LeftOut()]


@admin_router.post(
    "/people",
    status_code=status.HTTP_201_CREATED,
    response_model=EnrolledPerson,
    responses=problems(
        409,
        *IMAGE_UPLOAD,
        why={
            409: f"{TAKEN[409]}; or {DUPLICATE} (the detail names the file)",
            422: "the request does not validate; or a photo has no face, several without "
            "pick=largest, or one that fails the quality gate (type face-quality, with `reasons`; "
            "quality=off skips it): the detail names the file",
        },
    ),
    openapi_extra=REQUEST_BODY,
)
async def create_person(
    request: Request,
    resources: ResourcesDep,
    admission: AdmissionDep,
    pick: Pick = None,
    quality: QualityGate = "on",
    force: Force = False,
) -> Any:
    """A person from JSON; or, as multipart/form-data, a person with its photos in one call.

    The form enrols one face from each photo, all or nothing: a photo that fails (not an
    image, no face, several faces without pick=largest, the quality gate, a face of someone
    enrolled already unless force=true) fails the request with the problem its own enrolment
    would give, naming the file, and nothing is created.
    """
    if not is_form(request.headers.get("content-type")):
        created = await asyncio.to_thread(resources.gallery.create_person, await read_json(request))
        return {**created.model_dump(), "faces": []}
    person, photos = await read_form(request)
    async with admission.more(len(photos) - 1):  # the door took one for the request
        with resources.live.writing():
            return await resources.enrolment.enrol_person(
                person, photos, pick_largest=pick == "largest", check_quality=quality == "on", force=force
            )


@router.get("/people", response_model=PersonList, responses=problems(422))
async def list_people(
    resources: ResourcesDep,
    q: Annotated[
        str | None,
        Query(max_length=200, pattern=NO_NUL, description="free text: name, external id, fields, attributes"),
        LeftOut(),
    ] = None,
    name: NameFilter = None,
    gender: GenderFilter = None,
    address: AddressFilter = None,
    age_min: AgeBound = None,
    age_max: AgeBound = None,
    sort: Annotated[
        PeopleSort, Query(description="a field, descending with a leading -; ties by id, the same way")
    ] = "id",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Offset = 0,
) -> Any:
    """People matching every filter given (AND); ``q`` searches all the text at once."""
    query = PeopleQuery(
        name=name, gender=gender, address=address, age_min=age_min, age_max=age_max, sort=sort
    )
    items, total = await asyncio.to_thread(resources.gallery.list_people, q, limit, offset, query=query)
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
        409,
        *IMAGE_UPLOAD,
        why={
            409: DUPLICATE,
            422: "no face, or several faces without pick=largest; or the face fails the quality gate "
            "(type face-quality: `reasons` gives each criterion failed, its measured value and "
            "threshold; quality=off skips the gate); or the request does not validate",
        },
    ),
    openapi_extra=image_body.REQUEST_BODY,
)
async def enrol_face(
    person_id: RowId,
    upload: ImageUpload,
    resources: ResourcesDep,
    pick: Pick = None,
    quality: QualityGate = "on",
    force: Force = False,
) -> Any:
    """A face from a photo, sent as for ``POST /v1/recognize``: a form's file part or the body."""
    with resources.live.writing():
        return await resources.enrolment.enrol(
            person_id, upload.data, pick_largest=pick == "largest", check_quality=quality == "on", force=force
        )


@router.get("/people/{person_id}/faces", response_model=FaceList, responses=problems(404, 422))
async def list_faces(person_id: RowId, resources: ResourcesDep) -> Any:
    await asyncio.to_thread(resources.gallery.get_person, person_id)
    return {"items": await asyncio.to_thread(resources.gallery.list_faces, person_id)}


@admin_router.delete("/faces/{face_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404, 422))
async def delete_face(face_id: RowId, resources: ResourcesDep) -> Response:
    with resources.live.writing():
        await resources.enrolment.delete_face(face_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/faces/{face_id}/image",
    response_class=Response,
    responses={
        200: {
            "description": "the aligned 112×112 crop the face was enrolled from, as stored",
            "content": {"image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}},
        },
        **problems(404, 422),
    },
)
async def face_image(face_id: RowId, resources: ResourcesDep) -> Response:
    png = await asyncio.to_thread(resources.gallery.face_image, face_id)
    return Response(content=png, media_type="image/png")


ANALYSE_IMAGES = (enrol_face,)
"""Admitted at the door (:mod:`orchestrator.api.door`) as one image each, before their body."""
ANALYSE_IMAGES_IN_FORMS = (create_person,)
"""Admitted at the door as one image when their body is a multipart form (their other body is
JSON, which analyses nothing); the route takes the others once the form is read."""
