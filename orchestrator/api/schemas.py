"""Answer and request models of the HTTP API, with the examples shown in /docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.db.tables import ApiKeyPublic, FacePublic, PersonPublic

Box = list[float]


class Match(BaseModel):
    person_id: int
    name: str
    face_id: int
    similarity: float = Field(description="cosine similarity in [-1, 1]")


class DetectedFace(BaseModel):
    box: Box = Field(description="x1, y1, x2, y2 in pixels of the image as sent")
    det_score: float
    landmarks: list[list[float]] = Field(description="eyes, nose tip, mouth corners: [[x, y] × 5]")


class RecognizedFace(DetectedFace):
    quality: float = Field(description="0..1: detection score × size × sharpness")
    decision: Literal["match", "unknown"]
    matches: list[Match] = Field(description="best first, one per person")


class RecognizeAnswer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "faces": [
                    {
                        "box": [383.0, 90.0, 603.0, 405.0],
                        "det_score": 0.9998,
                        "landmarks": [
                            [450.1, 220.3],
                            [540.2, 219.8],
                            [497.0, 270.5],
                            [458.4, 330.1],
                            [535.6, 329.0],
                        ],
                        "quality": 0.97,
                        "decision": "match",
                        "matches": [
                            {"person_id": 1, "name": "Barack Obama", "face_id": 3, "similarity": 0.69}
                        ],
                    }
                ],
                "model_version": "1",
                "took_ms": 142.5,
                "cached": False,
            }
        }
    )
    faces: list[RecognizedFace] = Field(description="largest face first")
    model_version: str
    took_ms: float
    cached: bool


class BatchAnswer(BaseModel):
    results: list[RecognizeAnswer | dict[str, Any]] = Field(
        description="one answer per image in order, or a problem object for an image that failed"
    )


class VerifyAnswer(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {"similarity": 0.69, "match": True, "threshold": 0.38, "model_version": "1"}
        }
    )
    similarity: float
    match: bool
    threshold: float
    model_version: str


class DetectAnswer(BaseModel):
    faces: list[DetectedFace]


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
