"""Enrolment quality: measures of one face, and the criteria it must meet to enter the gallery.

What AWS Rekognition's ``QualityFilter`` does at indexing: a face that is too small, blurred,
turned away or uncertain makes a poor gallery template (every later probe is compared with
it), so enrolment refuses it and says why. Recognition is not gated. Pure: everything is
measured from what the pipeline already filled in a :class:`Face`; the thresholds were
measured on the test photos and their degradations (``python -m loadtests.quality``, the
README's "Quality gate").

**Size** is the shorter side of the detector's box in pixels of the image as sent: the box
does not shrink when the head turns, so a turned face fails on pose, not also on size.

**Sharpness** is the variance of the Laplacian of the aligned 112×112 crop, over the part of
the crop that lies inside the image. At the crop's scale, blur is measured relative to the
face (what the embedder sees): a 1-pixel blur of a 250-pixel face costs nothing, though it
wipes out the Laplacian at the original scale. A face cut by the image border is warped with
black beyond the border, and that edge would count as detail, hence the mask.

**Pose** is read from the 5 points (eyes, nose tip, mouth corners) against a mean face:
the ArcFace template (the shape every crop is aligned to, so "frontal" means "like the
template"), made left-right symmetric, given depth from the generic head model of OpenCV's
head-pose examples (nose tip 0.43 eye distances in front of the eyes, mouth corners 0.03).
In the face's own frame (eye line horizontal, eye midpoint at 0), the nose tip lies a
fraction ``r`` of the way down from the eye line to the mouth line, and ``s`` eye distances
sideways of the line through the eye and mouth midpoints. The mean face tilted by pitch φ
(about the ears' axis), then turned by yaw θ (about the camera's vertical) and projected
orthographically gives, with ``N = y_nose − r·y_mouth`` and ``D = z_nose − r·z_mouth`` in the
template's coordinates:

- pitch: ``tan φ = N / D``: tilted up, the nose climbs towards the eye line (``r`` falls);
- yaw: ``tan θ = s / hypot(N, D)``.

Exact for the mean face (to ±60° in ``tests/unit/test_quality.py``, at any roll, size and place).
Real faces differ from the mean (a smile or an open mouth moves the mouth corners) and the
landmark model errs: the frontal-looking test photos read −22…+18° of yaw and −18…+26° of
pitch, so the bounds are loose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np

from orchestrator.core.errors import QualityReason as Reason
from orchestrator.core.settings import QualitySettings as Thresholds
from orchestrator.pipeline.vision.align import ARCFACE_TEMPLATE, CROP_SIZE, similarity_transform
from orchestrator.pipeline.vision.faces import Face

__all__ = ["MEAN_FACE", "Criterion", "Measures", "Pose", "Reason", "Thresholds", "check", "measure"]


def _mean_face() -> np.ndarray:
    """[5, 3]: the ArcFace template made left-right symmetric, in eye distances (eye midpoint
    at 0, x right, y down), with depth z towards the camera (eyes 0, nose tip 0.43, mouth
    corners 0.03)."""
    t = ARCFACE_TEMPLATE
    eye_distance = float(t[1, 0] - t[0, 0])
    eye_y, mouth_y = (t[0, 1] + t[1, 1]) / 2, (t[3, 1] + t[4, 1]) / 2
    half_mouth = (t[4, 0] - t[3, 0]) / 2
    flat = np.array(
        [
            [-eye_distance / 2, eye_y],
            [eye_distance / 2, eye_y],
            [0.0, t[2, 1]],
            [-half_mouth, mouth_y],
            [half_mouth, mouth_y],
        ]
    )
    flat[:, 1] -= eye_y
    depth = np.array([0.0, 0.0, 0.43, 0.03, 0.03])
    return np.column_stack([flat / eye_distance, depth])


MEAN_FACE = _mean_face()
_MEAN_NOSE, _MEAN_MOUTH = MEAN_FACE[2], (MEAN_FACE[3] + MEAN_FACE[4]) / 2

_ERODE = np.ones((5, 5), np.uint8)
"""The Laplacian reaches one crop pixel: stay two inside the part taken from the image."""


class Criterion(StrEnum):
    SIZE = "size"
    SHARPNESS = "sharpness"
    YAW = "yaw"
    PITCH = "pitch"
    DETECTION = "det_score"


@dataclass(frozen=True)
class Pose:
    yaw_deg: float
    """Positive: the nose points towards the image's right."""
    pitch_deg: float
    """Positive: the face is tilted up (chin raised)."""


@dataclass(frozen=True)
class Measures:
    face_px: float
    """Shorter side of the detector's box, pixels of the image as sent."""
    sharpness: float
    """Variance of the Laplacian of the aligned crop, inside the image."""
    yaw_deg: float
    pitch_deg: float
    det_score: float


def head_pose(points5: np.ndarray) -> Pose:
    """[5, 2] eyes, nose tip, mouth corners (image pixels, y down) → yaw and pitch in degrees."""
    p = np.asarray(points5, dtype=np.float64)
    eyes, mouth = (p[0] + p[1]) / 2, (p[3] + p[4]) / 2
    across = p[1] - p[0]
    eye_distance = float(np.hypot(*across))
    if eye_distance < 1e-6:
        return Pose(0.0, 0.0)
    # The face's own frame: x along the eye line, y perpendicular to it (down the face).
    u = across / eye_distance
    v = np.array([-u[1], u[0]])
    nose_x, nose_y = (p[2] - eyes) @ u, (p[2] - eyes) @ v
    mouth_x, mouth_y = (mouth - eyes) @ u, (mouth - eyes) @ v
    if mouth_y < 1e-6:  # mouth at or above the eyes: no face geometry to read
        return Pose(0.0, 0.0)
    r = nose_y / mouth_y
    # The mean face's nose against its eye-mouth midline at the same r: N down, D in front.
    drop = _MEAN_NOSE[1] - r * _MEAN_MOUTH[1]
    depth = _MEAN_NOSE[2] - r * _MEAN_MOUTH[2]
    sideways = (nose_x - r * mouth_x) / eye_distance
    pitch = math.degrees(math.atan2(drop, depth))
    yaw = math.degrees(math.atan2(sideways, math.hypot(drop, depth)))
    return Pose(round(yaw, 2), round(pitch, 2))


def inside_image(points5: np.ndarray, width: int, height: int) -> np.ndarray:
    """[112, 112] bool: the crop's pixels that the alignment took from inside the image.

    ``points5`` and the size in the same coordinates (those of the image as sent: the
    similarity warp does not depend on the scale the image was decoded at).
    """
    matrix = similarity_transform(points5, ARCFACE_TEMPLATE)
    # One pixel in from the edge: bilinear sampling there already mixes in the black beyond.
    right, bottom = width - 1, height - 1
    corners = np.array([[1, 1], [right, 1], [right, bottom], [1, bottom]], dtype=np.float64)
    mapped = corners @ matrix[:, :2].T + matrix[:, 2]
    mask = np.zeros((CROP_SIZE, CROP_SIZE), np.uint8)
    cv2.fillConvexPoly(mask, np.round(mapped * 16).astype(np.int32), 1, lineType=cv2.LINE_8, shift=4)
    return cv2.erode(mask, _ERODE, borderType=cv2.BORDER_CONSTANT, borderValue=1).astype(bool)


def sharpness(crop: np.ndarray, inside: np.ndarray | None = None) -> float:
    """Variance of the Laplacian of the gray [112, 112, 3] RGB crop, over ``inside`` (all if None)."""
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    laplacian = cv2.Laplacian(gray, cv2.CV_64F)
    values = laplacian if inside is None else laplacian[inside]
    return float(values.var()) if values.size > 1 else 0.0


def measure(face: Face, width: int, height: int) -> Measures:
    """The measures of an aligned face found in an image of ``width`` × ``height`` (as sent)."""
    if face.points5 is None or face.crop is None:
        raise ValueError("a face is measured after alignment: it has no landmarks or crop")
    pose = head_pose(face.points5)
    side = float(min(face.box[2] - face.box[0], face.box[3] - face.box[1]))
    return Measures(
        face_px=round(side, 1),
        sharpness=round(sharpness(face.crop, inside_image(face.points5, width, height)), 1),
        yaw_deg=pose.yaw_deg,
        pitch_deg=pose.pitch_deg,
        det_score=round(face.det_score, 4),
    )


def check(measures: Measures, thresholds: Thresholds) -> list[Reason]:
    """Every criterion the face fails, with its measured value and threshold; empty if none."""
    m, t = measures, thresholds
    reasons: list[Reason] = []
    if m.face_px < t.min_face_px:
        reasons.append(
            Reason(
                Criterion.SIZE,
                m.face_px,
                t.min_face_px,
                f"the face is {m.face_px:g} pixels across, under {t.min_face_px:g}",
            )
        )
    if m.sharpness < t.min_sharpness:
        reasons.append(
            Reason(
                Criterion.SHARPNESS,
                m.sharpness,
                t.min_sharpness,
                f"the face is blurred: sharpness {m.sharpness:g}, under {t.min_sharpness:g}",
            )
        )
    if abs(m.yaw_deg) > t.max_yaw_deg:
        side = "right" if m.yaw_deg > 0 else "left"
        reasons.append(
            Reason(
                Criterion.YAW,
                m.yaw_deg,
                t.max_yaw_deg,
                f"the face is turned {abs(m.yaw_deg):.0f}° towards the image's {side}, "
                f"more than {t.max_yaw_deg:g}°",
            )
        )
    if abs(m.pitch_deg) > t.max_pitch_deg:
        way = "up" if m.pitch_deg > 0 else "down"
        reasons.append(
            Reason(
                Criterion.PITCH,
                m.pitch_deg,
                t.max_pitch_deg,
                f"the face is tilted {abs(m.pitch_deg):.0f}° {way}, more than {t.max_pitch_deg:g}°",
            )
        )
    if m.det_score < t.min_det_score:
        reasons.append(
            Reason(
                Criterion.DETECTION,
                m.det_score,
                t.min_det_score,
                f"the detector is unsure this is a face: score {m.det_score:g}, under {t.min_det_score:g}",
            )
        )
    return reasons
