"""Request and answer models that only the HTTP API has, with the examples shown in /docs.

The recognition answers are defined once, by the recognition layer, and imported here.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from orchestrator.db.tables import NAME_PATTERN, ApiKeyPublic, FacePublic, PersonPublic
from orchestrator.recognition.answers import Box, RecognizeAnswer


class ProblemDetails(BaseModel):
    """The RFC 9457 members: what went wrong, in words for the caller."""

    type: str = Field(description="URI naming the kind of problem")
    title: str = Field(description="the same for every problem of this type")
    status: int = Field(ge=400, le=599, description="the HTTP status")
    detail: str = Field(description="what happened this time")


class InvalidField(BaseModel):
    loc: list[str | int] = Field(description="where: body, query, path or header, then the field")
    msg: str
    type: str


class Problem(ProblemDetails):
    """Every error answer of the API, as ``application/problem+json``."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "type": "https://facerec.dev/problems/not-found",
                "title": "Not found",
                "status": 404,
                "detail": "person 42 not found",
                "request_id": "3f1c0e5a9b6d4b7e8a2c1d0f9e8b7a6c",
            }
        }
    )
    request_id: str = Field(description="the X-Request-ID of the request, to find it in the logs")
    errors: list[InvalidField] | SkipJsonSchema[None] = Field(
        default=None, description="on a 422 for a request that does not validate: each field at fault"
    )


class BatchAnswer(BaseModel):
    results: list[RecognizeAnswer | ProblemDetails] = Field(
        description="one answer per image in order, or the problem of an image that failed"
    )


class EnrolledFace(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "face_id": 3,
                "person_id": 1,
                "box": [383.0, 90.0, 603.0, 405.0],
                "det_score": 0.9998,
                "quality": 0.97,
            }
        }
    )
    face_id: int
    person_id: int
    box: Box
    det_score: float
    quality: float


class PersonList(BaseModel):
    items: list[PersonPublic]
    total: int


class FaceList(BaseModel):
    items: list[FacePublic]


class NewKey(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"name": "kiosk-3", "role": "recognize"}})
    # The gallery applies the pattern's rule (clean_name), in words.
    name: str = Field(min_length=1, max_length=100, json_schema_extra={"pattern": NAME_PATTERN})
    role: Literal["admin", "recognize"]


class CreatedKey(ApiKeyPublic):
    key: str = Field(description="the key itself; shown only in this answer")


class KeyList(BaseModel):
    items: list[ApiKeyPublic]


class NewRollout(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"version": "2"}})
    version: str = Field(pattern=r"^[1-9][0-9]{0,8}$", description="the arcface version to switch to")


class ModelVersion(BaseModel):
    version: str
    state: str


class ActiveModel(BaseModel):
    name: str
    version: str


class ModelsAnswer(BaseModel):
    active: ActiveModel
    versions: list[ModelVersion]


class DependencyCheck(BaseModel):
    ok: bool
    detail: str = Field(description='"ok", or what failed')


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, DependencyCheck] = Field(description="triton, search, database, shutdown")


class DetailedHealth(BaseModel):
    """Readiness and what this replica knows: model, gallery, cache, Triton's statistics."""

    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "degraded"]
    checks: dict[str, DependencyCheck]
