"""``POST /v1/people``'s two bodies: a person as JSON, or a person with photos as a multipart form.

FastAPI reads one kind of body per route, so this route reads its own, chosen by the
request's content type, and answers as FastAPI would for the JSON one (422 with ``errors``
for a body that does not validate, each ``loc`` starting with ``body``; 400 for one that
cannot be parsed). The spec describes both (:data:`REQUEST_BODY`).
"""

from __future__ import annotations

import email.message
import json
from typing import Annotated, Any

from fastapi import Request, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetJsonSchemaHandler, Json, ValidationError
from pydantic import StringConstraints as Text
from pydantic.json_schema import JsonDict, SkipJsonSchema
from pydantic_core import CoreSchema
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from orchestrator.api.schemas import EnrolledFace
from orchestrator.db.tables import (
    ADDRESS_MAX,
    AGE,
    AGE_MAX,
    ATTRIBUTES,
    GENDER_MAX,
    NAME_MAX,
    NO_NUL,
    Attributes,
    PersonCreate,
    PersonName,
    PersonPublic,
    clean_address,
    clean_external_id,
    clean_gender,
)

MAX_PHOTOS = 16
"""Photos per one-call enrolment, as images per recognition batch."""
MAX_FORM_FILES = 64
"""File parts the form parser takes: past MAX_PHOTOS up to here a 422 says why, beyond it a 400."""
FORM = "multipart/form-data"
REF = "#/components/schemas/"


EXAMPLE: JsonDict = {
    "id": 1,
    "name": "Barack Obama",
    "external_id": "P-0044",
    "age": 64,
    "gender": "male",
    "address": "Washington, D.C.",
    "attributes": {"role": "president"},
    "face_count": 1,
    "created_at": "2026-12-10T09:30:00.123456Z",
    "faces": [
        {
            "face_id": 3,
            "person_id": 1,
            "box": [383.0, 90.0, 603.0, 405.0],
            "det_score": 0.9998,
            "quality": 0.97,
        }
    ],
}


class EnrolledPerson(PersonPublic):
    """A new person, with the faces enrolled from its photos (none when made from JSON)."""

    # SQLModel types its models' config as its own TypedDict, which ConfigDict is not.
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"example": EXAMPLE})  # type: ignore[assignment]
    faces: list[EnrolledFace] = Field(description="one per photo, in the order sent")


class JsonPart:
    """Marks a form part holding JSON text (``Annotated[Json[T], JsonPart()]``).

    The spec gives the part the JSON value's own schema: OpenAPI sends a form part of an
    object type as ``application/json``, which is what the server reads.
    """

    def __get_pydantic_json_schema__(self, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> Any:
        schema = handler(core_schema)
        return schema.get("contentSchema", schema)


# Optional form fields are left out rather than null: a form cannot say null.
_ExternalId = Annotated[str, Text(max_length=NAME_MAX), Field(json_schema_extra={"pattern": NO_NUL})]
_Gender = Annotated[str, Text(max_length=GENDER_MAX), Field(json_schema_extra={"pattern": NO_NUL})]
_Address = Annotated[str, Text(max_length=ADDRESS_MAX), Field(json_schema_extra={"pattern": NO_NUL})]


class PersonForm(BaseModel):
    """The multipart form: the JSON body's fields as form fields, and the photos as ``files``."""

    name: PersonName
    external_id: Annotated[_ExternalId | SkipJsonSchema[None], AfterValidator(clean_external_id)] = None
    # Lax, unlike the JSON body's: a form field is the text "42".
    age: Annotated[int, Field(ge=0, le=AGE_MAX)] | SkipJsonSchema[None] = Field(default=None, description=AGE)
    gender: Annotated[_Gender | SkipJsonSchema[None], AfterValidator(clean_gender)] = None
    address: Annotated[_Address | SkipJsonSchema[None], AfterValidator(clean_address)] = None
    attributes: Annotated[Json[Attributes], JsonPart()] = Field(
        default_factory=dict, description=ATTRIBUTES + "; as JSON text"
    )
    files: list[UploadFile] = Field(
        min_length=1, max_length=MAX_PHOTOS, description="the photos, each with one face (see pick)"
    )

    def person(self) -> PersonCreate:
        return PersonCreate(
            name=self.name,
            external_id=self.external_id,
            age=self.age,
            gender=self.gender,
            address=self.address,
            attributes=self.attributes,
        )


REQUEST_MODELS = (PersonCreate, PersonForm)
"""Put in the spec's components, where :data:`REQUEST_BODY` refers."""
REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": REF + "PersonCreate"}},
            FORM: {
                "schema": {"$ref": REF + "PersonForm"},
                "encoding": {"attributes": {"contentType": "application/json"}},
            },
        },
    }
}
"""The route's ``openapi_extra``: a person as JSON, or a person and its photos as a form."""


def _media_type(content_type: str | None) -> str:
    message = email.message.Message()
    message["content-type"] = content_type or ""
    return message.get_content_type() if content_type else ""


def _invalid(error: ValidationError) -> RequestValidationError:
    return RequestValidationError(
        [{**item, "loc": ("body", *item["loc"])} for item in error.errors(include_url=False)]
    )


async def read_json(request: Request) -> PersonCreate:
    """The JSON body as FastAPI reads one: a missing or other content type is not JSON."""
    media_type = _media_type(request.headers.get("content-type"))
    body = await request.body()
    value: Any = None
    if body and (not media_type or media_type == "application/json" or media_type.endswith("+json")):
        try:
            value = json.loads(body)
        except json.JSONDecodeError as error:
            raise RequestValidationError(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", error.pos),
                        "msg": "JSON decode error",
                        "input": {},
                        "ctx": {"error": error.msg},
                    }
                ]
            ) from None
        except ValueError:  # not UTF-8 (or -16, -32)
            raise HTTPException(400, "There was an error parsing the body") from None
    elif body:
        value = body  # another content type: not an object, so a 422 as for any JSON route
    if value is None:
        raise RequestValidationError([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
    try:
        return PersonCreate.model_validate(value)
    except ValidationError as error:
        raise _invalid(error) from None


async def read_form(request: Request) -> tuple[PersonCreate, list[tuple[str, bytes]]]:
    """The form: the person, and its photos as (file name, bytes) in the order sent."""
    try:
        form = await request.form(max_files=MAX_FORM_FILES)
    except MultiPartException as error:
        raise HTTPException(400, f"There was an error parsing the body: {error.message}") from None
    try:
        fields: dict[str, Any] = {name: form.get(name) for name in PersonForm.model_fields if name in form}
        fields["files"] = form.getlist("files")
        try:
            parsed = PersonForm.model_validate(fields)
        except ValidationError as error:
            raise _invalid(error) from None
        photos = [
            (upload.filename or f"files[{index}]", await upload.read())
            for index, upload in enumerate(parsed.files)
        ]
    finally:
        await form.close()  # the spooled uploads: FastAPI closes only the forms it reads itself
    return parsed.person(), photos
