"""68-point landmarks on the detector's box crop, and their reduction to the 5 ArcFace points."""

from __future__ import annotations

import cv2
import numpy as np

INPUT_SIZE = 64

# 0-based indices into the 68 points (iBUG layout).
_LEFT_EYE = [37, 38, 40, 41]
_RIGHT_EYE = [43, 44, 46, 47]
_NOSE_TIP = 30
_MOUTH_LEFT = [48, 60]
_MOUTH_RIGHT = [54, 64]


def crop_rect(box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int]:
    """The landmark model's crop: the detector box clamped to the image, as x, y, w, h ≥ 1."""
    x1 = int(np.clip(np.floor(box[0]), 0, width - 1))
    y1 = int(np.clip(np.floor(box[1]), 0, height - 1))
    x2 = int(np.clip(np.ceil(box[2]), x1 + 1, width))
    y2 = int(np.clip(np.ceil(box[3]), y1 + 1, height))
    return x1, y1, x2 - x1, y2 - y1


def landmark_input(rgb: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    """[H, W, 3] uint8 RGB image and a crop → [1, 64, 64] float32 in 0..1 (x / 256), grey.

    Only the crop is turned grey: the same pixels as greying the whole image first."""
    x, y, w, h = rect
    gray = cv2.cvtColor(np.ascontiguousarray(rgb[y : y + h, x : x + w]), cv2.COLOR_RGB2GRAY)
    patch = cv2.resize(gray, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
    return (patch.astype(np.float32) / 256.0)[None]


def landmarks_in_image(output: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
    """[136] model output (x, y pairs in 0..1 of the crop) → [68, 2] float32 image pixels."""
    x, y, w, h = rect
    points = output.reshape(68, 2).astype(np.float32)
    return points * np.array([w, h], dtype=np.float32) + np.array([x, y], dtype=np.float32)


def five_points(points68: np.ndarray) -> np.ndarray:
    """[68, 2] → [5, 2]: left eye, right eye, nose tip, left and right mouth corners."""
    return np.stack(
        [
            points68[_LEFT_EYE].mean(axis=0),
            points68[_RIGHT_EYE].mean(axis=0),
            points68[_NOSE_TIP],
            points68[_MOUTH_LEFT].mean(axis=0),
            points68[_MOUTH_RIGHT].mean(axis=0),
        ]
    ).astype(np.float32)
