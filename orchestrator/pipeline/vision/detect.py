"""Detector pre- and post-processing for UltraFace RFB-320.

The detector sees the whole image stretched to 320×240 (as it was trained); its boxes come
back decoded, in corner form, normalised to 0..1, so they map back to any image size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

INPUT_WIDTH, INPUT_HEIGHT = 320, 240


@dataclass(frozen=True)
class DetectParams:
    score_threshold: float = 0.7
    iou_threshold: float = 0.4
    min_size: float = 20.0
    """Boxes whose shorter side (in image pixels) is below this are dropped."""
    max_faces: int = 32


@dataclass(frozen=True)
class Detection:
    box: np.ndarray
    """[4] float32 x1, y1, x2, y2 in pixels of the decoded image."""
    score: float

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


def detector_input(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 RGB → [3, 240, 320] float32, (x − 127) / 128."""
    resized = cv2.resize(rgb, (INPUT_WIDTH, INPUT_HEIGHT), interpolation=cv2.INTER_LINEAR)
    return ((resized.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1).copy()


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one [4] box against [N, 4] boxes (corner form) → [N]."""
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9))


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """Greedy non-maximum suppression; [N, 4] boxes, [N] scores → kept indices, best first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[iou(boxes[best], boxes[rest]) <= iou_threshold]
    return keep


def detections(
    scores: np.ndarray, boxes: np.ndarray, width: int, height: int, params: DetectParams
) -> list[Detection]:
    """[P, 2] class scores and [P, 4] normalised boxes of one image → faces, largest first."""
    face_scores = scores[:, 1]
    candidates = np.flatnonzero(face_scores >= params.score_threshold)
    if candidates.size == 0:
        return []
    scale = np.array([width, height, width, height], dtype=np.float32)
    pixel_boxes = np.clip(boxes[candidates] * scale, 0, scale)
    kept_scores = face_scores[candidates]
    found = [
        Detection(box=pixel_boxes[i].astype(np.float32), score=float(kept_scores[i]))
        for i in nms(pixel_boxes, kept_scores, params.iou_threshold)
    ]
    found = [d for d in found if min(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= params.min_size]
    found.sort(key=lambda d: d.area, reverse=True)
    return found[: params.max_faces]
