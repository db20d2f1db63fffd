"""Request and answer models that only the HTTP API has, with the examples shown in /docs.

The recognition answers are defined once, by the recognition layer, and imported here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.db.tables import ApiKeyPublic, FacePublic, PersonPublic
from orchestrator.recognition.answers import Box, RecognizeAnswer


class BatchAnswer(BaseModel):
    results: list[RecognizeAnswer | dict[str, Any]] = Field(
        description="one answer per image in order, or a problem object for an image that failed"
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
    name: str = Field(min_length=1, max_length=100)
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
