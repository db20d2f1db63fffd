import pytest

from orchestrator.pipeline.calibration import calibrate

pytestmark = pytest.mark.unit


def test_separable_scores_put_the_threshold_in_the_middle_of_the_gap() -> None:
    c = calibrate([0.6, 0.9, 0.7], [0.1, 0.2, -0.1])
    assert c.threshold == pytest.approx(0.4)
    assert (c.false_accept_rate, c.false_reject_rate) == (0.0, 0.0)


def test_overlapping_scores_use_the_equal_error_point() -> None:
    c = calibrate([0.3, 0.5, 0.6, 0.7], [0.1, 0.2, 0.35, 0.55])
    assert c.false_accept_rate == pytest.approx(c.false_reject_rate)
    with pytest.raises(ValueError):
        calibrate([], [0.1])
