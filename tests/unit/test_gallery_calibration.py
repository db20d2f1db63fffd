"""The gallery-calibrated threshold's arithmetic: the confidence bound, and the threshold it sets."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orchestrator.gallery.calibration import (
    CONFIDENCE,
    calibrate_gallery,
    far_upper_bound,
    histogram,
    regularized_beta,
    scores_needed,
)

pytestmark = pytest.mark.unit


def binomial_cdf(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


@pytest.mark.parametrize(("k", "n"), [(0, 10), (0, 100), (1, 100), (5, 100), (10, 1000), (50, 400)])
def test_the_bound_is_where_seeing_so_few_becomes_unlikely(k: int, n: int) -> None:
    bound = far_upper_bound(k, n)
    assert bound > k / n
    # Clopper-Pearson: at the bound, k or fewer exceedances have probability 1 − confidence.
    assert binomial_cdf(k, n, bound) == pytest.approx(1 - CONFIDENCE, abs=1e-6)


def test_the_bound_without_scores_or_with_all_exceeding_is_one() -> None:
    assert far_upper_bound(0, 0) == 1.0 and far_upper_bound(7, 7) == 1.0


def test_scores_needed_is_the_first_count_whose_empty_bound_reaches_the_target() -> None:
    for target in (0.02, 1e-3, 1e-4):
        n = scores_needed(target)
        assert far_upper_bound(0, n) <= target < far_upper_bound(0, n - 1)
    assert scores_needed(1e-4) == 29956  # ≈ 3 / target, the rule of three


def scores(seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(0.1, 0.08, 5000), rng.normal(0.6, 0.1, 2000)


@pytest.mark.parametrize("target", [0.05, 0.01, 0.002])
def test_the_threshold_is_the_lowest_whose_bound_holds_the_target(target: float) -> None:
    impostor, genuine = scores()
    calibration = calibrate_gallery("1", impostor, genuine, target, 0.38)
    assert calibration.source == "gallery"
    assert calibration.far(calibration.threshold) <= target
    # The next impostor score down would make one exceedance more, past the target.
    below = impostor[impostor < calibration.threshold].max()
    assert calibration.far(float(below)) > target
    assert calibration.frr() == pytest.approx(float(np.mean(genuine < calibration.threshold)))


def test_too_few_scores_keep_the_shipped_threshold() -> None:
    impostor, genuine = scores()
    for target in (None, 1e-4):  # 5,000 scores cannot certify 1e-4
        calibration = calibrate_gallery("1", impostor, genuine, target, 0.38)
        assert (calibration.source, calibration.threshold) == ("shipped", 0.38)
    empty = calibrate_gallery("1", [], [], 0.01, 0.38)
    assert (empty.threshold, empty.far(0.9), empty.frr()) == (0.38, 1.0, None)


def test_histogram_counts_every_score_in_equal_bins() -> None:
    impostor, _ = scores()
    drawn = histogram(impostor, bins=20)
    assert len(drawn.edges) == 21 and drawn.edges[0] == -1.0 and drawn.edges[-1] == 1.0
    assert sum(drawn.counts) == impostor.size


@pytest.mark.parametrize(("k", "n"), [(1, 10**6), (10, 10**6), (5000, 10**4), (9999, 10**4), (3, 7)])
def test_the_bound_is_found_from_above_in_large_galleries_too(k: int, n: int) -> None:
    bound = far_upper_bound(k, n)
    at_most_k = regularized_beta(n - k, k + 1, 1.0 - bound)  # P(X ≤ k; n, bound)
    assert at_most_k == pytest.approx(1 - CONFIDENCE, rel=1e-4)
    assert at_most_k <= 1 - CONFIDENCE  # at or above the root: still an upper bound


def test_the_fingerprint_names_the_scores_and_the_threshold() -> None:
    impostor, genuine = scores()
    one = calibrate_gallery("1", impostor, genuine, 0.01, 0.38)
    assert one.fingerprint == calibrate_gallery("1", impostor[::-1], genuine[:10], 0.01, 0.38).fingerprint
    moved = impostor.copy()
    moved[0] += 1e-9
    assert calibrate_gallery("1", moved, genuine, 0.01, 0.38).fingerprint != one.fingerprint
    shipped = calibrate_gallery("1", impostor, genuine, None, 0.38)
    assert shipped.fingerprint != one.fingerprint  # the same scores, another threshold
    assert one.far(0.3) == one.far(0.3) == far_upper_bound(one.exceeding(0.3), impostor.size)
