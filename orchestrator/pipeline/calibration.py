"""The match threshold, and how it is measured.

``calibrate`` takes cosine similarities of genuine pairs (same person) and impostor pairs
(different people) and returns the threshold halfway across the gap between them when the
sets separate, else the equal-error point. ``DEFAULT_MATCH_THRESHOLD`` is what it gave on
the real photos and augmentations in ``tests/integration/test_calibration.py`` (the README shows the
measured numbers); that test re-measures it on every run and fails if the shipped value
no longer separates the pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_MATCH_THRESHOLD = 0.38


@dataclass(frozen=True)
class Calibration:
    threshold: float
    min_genuine: float
    max_impostor: float
    false_accept_rate: float
    false_reject_rate: float


def rates(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> tuple[float, float]:
    """(false accept rate, false reject rate) at ``threshold`` (a match is score ≥ threshold)."""
    return float(np.mean(impostor >= threshold)), float(np.mean(genuine < threshold))


def calibrate(genuine: Sequence[float], impostor: Sequence[float]) -> Calibration:
    g = np.asarray(genuine, dtype=np.float64)
    i = np.asarray(impostor, dtype=np.float64)
    if g.size == 0 or i.size == 0:
        raise ValueError("calibration needs genuine and impostor pairs")
    if g.min() > i.max():
        threshold = float((g.min() + i.max()) / 2)
    else:
        candidates = np.unique(np.concatenate([g, i]))
        errors = [abs(np.subtract(*rates(g, i, t))) for t in candidates]
        threshold = float(candidates[int(np.argmin(errors))])
    far, frr = rates(g, i, threshold)
    return Calibration(threshold, float(g.min()), float(i.max()), far, frr)
