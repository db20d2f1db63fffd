"""A match threshold calibrated on the live gallery, for a target false-accept rate.

Every enrolled face's best similarity to a face of *another* person is an impostor score:
what a stranger as close to the gallery as that face is to its nearest other person
would score. Each person's faces' best similarity to another face of theirs is a genuine
score. Both are kept per model version (``db/face_scores.py``).

For a target false-accept rate α the threshold is the lowest at which the share of
impostor scores at or above it is at most α with 95 % confidence: the one-sided
Clopper-Pearson upper bound of k exceedances in n scores, not k / n, so a small gallery
gets a conservative threshold rather than a lucky one. Until the gallery holds enough
scores for the bound to reach α at all (n ≥ ln 0.05 / ln(1 − α), ≈ 3 / α), the shipped
calibrated threshold stands. A match's evidence is the same bound at its similarity.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal

import numpy as np

CONFIDENCE = 0.95
HISTOGRAM_BINS = 50
_ONE_SIDED_Z = {0.95: 1.6448536269514722, 0.99: 2.3263478740408408}
"""The normal quantile of a confidence: where the search for a bound starts (any start is safe)."""
_TOLERANCE = 1e-10
_BOUNDS_KEPT = 65_536


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 3e-16
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def regularized_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularised incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_fraction(b, a, 1.0 - x) / b


def far_upper_bound(exceeding: int, scores: int, confidence: float = CONFIDENCE) -> float:
    """The one-sided Clopper-Pearson upper bound of a rate seen ``exceeding`` times in ``scores``.

    The p at which seeing at most ``exceeding`` has probability 1 − ``confidence``:
    P(X ≤ k; n, p) = I_{1−p}(n − k, k + 1). Every match's evidence is one of these, so it is
    found by Newton steps from the normal approximation, kept inside a bisection bracket
    (≤ 8 evaluations where bisection alone took 60), to a relative 1e-10, from above.
    """
    if scores <= 0 or exceeding >= scores:
        return 1.0
    if exceeding == 0:  # closed form: (1 − p)^n = 1 − confidence
        return -math.expm1(math.log(1.0 - confidence) / scores)
    k, n = exceeding, scores
    a, b = n - k, k + 1
    log_beta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    z = _ONE_SIDED_Z.get(confidence, 1.6448536269514722)
    low, high = k / n, 1.0
    p = (k + 1) / n + z * math.sqrt((k + 1) * (n - k) / n) / n
    for _ in range(200):
        if not low < p < high:
            p = (low + high) / 2
        excess = regularized_beta(a, b, 1.0 - p) - (1.0 - confidence)  # falls as p grows
        if excess > 0:
            low = p
        else:
            high = p
        if high - low <= _TOLERANCE * high:
            break
        slope = math.exp(log_beta + (a - 1) * math.log1p(-p) + (b - 1) * math.log(p))
        if slope <= 0.0:  # underflow far from the root: bisect
            p = (low + high) / 2
            continue
        step = excess / slope
        # A hair past Newton's root, so the bracket closes from both sides.
        p += step + math.copysign(_TOLERANCE * p / 4, step)
    return high


def scores_needed(target_far: float, confidence: float = CONFIDENCE) -> int:
    """The fewest impostor scores with which any threshold can be certified at ``target_far``."""
    return math.ceil(math.log(1.0 - confidence) / math.log1p(-target_far))


@dataclass(frozen=True)
class Histogram:
    edges: list[float]
    counts: list[int]


def histogram(scores: np.ndarray, bins: int = HISTOGRAM_BINS) -> Histogram:
    """Counts over equal bins of cosine similarity from −1 to 1."""
    counts, edges = np.histogram(scores, bins=bins, range=(-1.0, 1.0))
    return Histogram([round(float(e), 4) for e in edges], [int(c) for c in counts])


@dataclass(frozen=True)
class GalleryCalibration:
    """The threshold in force for one model version's gallery, and what it rests on."""

    model_version: str
    target_far: float | None
    shipped_threshold: float
    impostor: np.ndarray = field(repr=False)
    """Impostor scores, ascending."""
    genuine: np.ndarray = field(repr=False)
    """Genuine scores, ascending."""
    threshold: float = 0.0
    source: Literal["gallery", "shipped"] = "shipped"
    _bounds: dict[int, float] = field(default_factory=dict, init=False, repr=False, compare=False)
    """The bound of each exceedance count asked for: matches keep asking the same few."""

    def exceeding(self, similarity: float) -> int:
        """How many impostor scores are at or above ``similarity``."""
        return int(self.impostor.size - np.searchsorted(self.impostor, similarity, side="left"))

    def far(self, similarity: float) -> float:
        """The estimated false-accept rate of a match at ``similarity`` in this gallery: the
        upper bound of the share of impostor scores at or above it (1.0 without scores)."""
        exceeding = self.exceeding(similarity)
        bound = self._bounds.get(exceeding)
        if bound is None:
            bound = far_upper_bound(exceeding, int(self.impostor.size))
            if len(self._bounds) < _BOUNDS_KEPT:
                self._bounds[exceeding] = bound
        return bound

    @cached_property
    def fingerprint(self) -> str:
        """Names the impostor scores and the threshold: what a match's evidence and decision
        rest on. Equal on every replica that read the same scores."""
        digest = hashlib.sha256(self.impostor.tobytes())
        digest.update(f"{self.threshold!r}:{self.source}".encode())
        return digest.hexdigest()[:32]

    def frr(self, threshold: float | None = None) -> float | None:
        """The share of genuine scores below ``threshold`` (this one's by default); None without any."""
        if self.genuine.size == 0:
            return None
        cut = self.threshold if threshold is None else threshold
        return float(np.searchsorted(self.genuine, cut, side="left") / self.genuine.size)


def calibrate_gallery(
    model_version: str,
    impostor: np.ndarray | list[float],
    genuine: np.ndarray | list[float],
    target_far: float | None,
    shipped_threshold: float,
) -> GalleryCalibration:
    """The threshold for ``target_far`` over these scores, or the shipped one when there is no
    target or too few scores to certify it."""
    impostors = np.sort(np.asarray(impostor, dtype=np.float64))
    genuines = np.sort(np.asarray(genuine, dtype=np.float64))
    calibration = GalleryCalibration(model_version, target_far, shipped_threshold, impostors, genuines)
    n = int(impostors.size)
    if target_far is None or n < scores_needed(target_far):
        return _with(calibration, shipped_threshold, "shipped")
    # Raising the threshold past the k-th highest score leaves k − 1 exceeding: find the most
    # exceedances the bound allows, then the threshold just above the next score down.
    allowed = 0
    high = n
    while allowed < high:  # the bound grows with k: bisect for the largest k within target
        k = (allowed + high + 1) // 2
        if far_upper_bound(k, n) <= target_far:
            allowed = k
        else:
            high = k - 1
    boundary = float(impostors[n - allowed - 1])
    return _with(calibration, float(np.nextafter(boundary, np.inf)), "gallery")


def _with(
    calibration: GalleryCalibration, threshold: float, source: Literal["gallery", "shipped"]
) -> GalleryCalibration:
    return replace(calibration, threshold=threshold, source=source)
