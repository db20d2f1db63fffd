"""The recognition answers (API.md), one pydantic model each, built from pipeline faces and search hits.

These models are the answers' one definition: the service returns them, the cache keeps
them, the routes declare them as their response models. Rounding happens here, so a
cached answer and a fresh one are the same JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, SupportsFloat

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.db.tables import PersonSummary
from orchestrator.gallery.calibration import GalleryCalibration
from orchestrator.pipeline.vision.faces import Face
from search_service.schema import Hit

Box = list[float]
ThresholdSource = Literal["gallery", "shipped", "request"]


class Match(BaseModel):
    person_id: int
    name: str
    face_id: int
    similarity: float = Field(description="cosine similarity in [-1, 1]")
    far: float = Field(
        ge=0,
        le=1,
        description="the estimated false-accept rate of this similarity in this gallery: the 95 % upper "
        "bound of the share of impostor scores at or above it (1 without any), rounded up to two "
        "significant digits",
    )
    person: PersonSummary = Field(description="the person's public fields, as when the answer was made")


class DetectedFace(BaseModel):
    box: Box = Field(description="x1, y1, x2, y2 in pixels of the image as sent")
    det_score: float
    landmarks: list[list[float]] = Field(description="eyes, nose tip, mouth corners: [[x, y] × 5]")


class RecognizedFace(DetectedFace):
    quality: float = Field(description="0..1: detection score × size × sharpness")
    decision: Literal["match", "unknown"]
    matches: list[Match] = Field(description="best first, one per person")


class ImageRecognition(BaseModel):
    """What recognising one image found: the part of an answer that the cache keeps."""

    faces: list[RecognizedFace] = Field(description="largest face first")
    model_version: str


class RecognizeAnswer(ImageRecognition):
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
                            {
                                "person_id": 1,
                                "name": "Barack Obama",
                                "face_id": 3,
                                "similarity": 0.69,
                                "far": 0.00012,
                                "person": {
                                    "id": 1,
                                    "name": "Barack Obama",
                                    "external_id": "P-0044",
                                    "age": 64,
                                    "gender": "male",
                                    "address": "Washington, D.C.",
                                    "attributes": {"role": "president"},
                                },
                            }
                        ],
                    }
                ],
                "model_version": "1",
                "threshold": 0.4137,
                "threshold_source": "gallery",
                "took_ms": 142.5,
                "cached": False,
            }
        }
    )
    threshold: float = Field(description="the similarity at and above which a face matched")
    threshold_source: ThresholdSource = Field(
        description="request: the request's `threshold`; gallery: calibrated on this gallery for "
        "FACEREC_MATCH__TARGET_FAR; shipped: FACEREC_MATCH_THRESHOLD (no target, or too few scores yet)"
    )
    took_ms: float
    cached: bool


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


def best_matches(answer: ImageRecognition) -> list[Match]:
    """The best match of each face that matched, in the answer's face order."""
    return [face.matches[0] for face in answer.faces if face.decision == "match" and face.matches]


def _round(values: Iterable[SupportsFloat], digits: int = 1) -> list[float]:
    return [round(float(v), digits) for v in values]


def detected_face(face: Face) -> DetectedFace:
    points = [] if face.points5 is None else [_round(p) for p in face.points5]
    return DetectedFace(box=_round(face.box), det_score=round(face.det_score, 4), landmarks=points)


def evidence(far: float) -> float:
    """A false-accept rate rounded up to two significant digits: still an upper bound."""
    if far <= 0.0 or far >= 1.0:
        return min(max(far, 0.0), 1.0)
    unit = 10.0 ** (math.floor(math.log10(far)) - 1)
    # The tolerance keeps a rate that is already round (0.012 as 0.01200000001) from going up a step.
    return min(1.0, float(f"{math.ceil(far / unit - 1e-9) * unit:.2g}"))


def person_matches(
    hits: Sequence[Hit],
    owners: Mapping[int, PersonSummary],
    top_k: int,
    calibration: GalleryCalibration,
) -> list[Match]:
    """Best face per person, best first, each with its evidence in ``calibration``'s gallery;
    hits whose face is gone from the database are dropped.

    Dropping unknown ids is what keeps an index entry orphaned by a crash from ever being
    served, before the start-up reconciliation removes it.
    """
    best: dict[int, tuple[PersonSummary, float, int]] = {}
    for hit in hits:
        owner = owners.get(hit.id)
        if owner is not None and owner.id not in best:
            best[owner.id] = (owner, round(hit.score, 4), hit.id)
    kept = sorted(best.values(), key=lambda found: (-found[1], found[0].id))[:top_k]
    return [
        Match(
            person_id=owner.id,
            name=owner.name,
            face_id=face_id,
            similarity=similarity,
            far=evidence(calibration.far(similarity)),
            person=owner,
        )
        for owner, similarity, face_id in kept
    ]


def recognized_face(face: Face, matches: list[Match], threshold: float) -> RecognizedFace:
    decision: Literal["match", "unknown"] = (
        "match" if matches and matches[0].similarity >= threshold else "unknown"
    )
    return RecognizedFace(
        **dict(detected_face(face)), quality=face.quality, decision=decision, matches=matches
    )
