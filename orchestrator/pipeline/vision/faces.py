"""The face record that the pipeline fills stage by stage, and an image's analysis."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SHARPNESS_FULL = 100.0
"""Laplacian variance of an aligned crop at and above which sharpness costs no quality."""


@dataclass
class Face:
    box: np.ndarray
    """[4] float32 x1, y1, x2, y2 in pixels of the image as sent (orientation applied)."""
    det_score: float
    landmarks68: np.ndarray | None = None
    """[68, 2] float32, same coordinates as ``box``."""
    points5: np.ndarray | None = None
    """[5, 2] float32: eyes, nose tip, mouth corners."""
    crop: np.ndarray | None = None
    """[112, 112, 3] uint8 RGB, aligned to the ArcFace template."""
    sharpness: float = 0.0
    embedding: np.ndarray | None = field(default=None, repr=False)
    """[D] float32, L2-normalised."""

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))

    @property
    def quality(self) -> float:
        """0..1: detection confidence × face size (full at 112 px) × sharpness of the crop."""
        side = float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))
        size = min(1.0, side / 112.0)
        sharp = min(1.0, self.sharpness / SHARPNESS_FULL)
        return round(self.det_score * size * sharp, 4)


@dataclass
class Analysis:
    faces: list[Face]
    """Largest first; coordinates in the image as sent."""
    width: int
    height: int
    timings_ms: dict[str, float] = field(default_factory=dict)
