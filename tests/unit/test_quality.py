"""The enrolment quality measures and criteria: the pose estimator against a turned mean face,
the sharpness mask at the image's edge, and each criterion at its bound."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.core.settings import QualitySettings, Settings
from orchestrator.pipeline import quality
from orchestrator.pipeline.quality import MEAN_FACE, Criterion, Measures, head_pose
from orchestrator.pipeline.vision import align
from orchestrator.pipeline.vision.faces import Face

pytestmark = pytest.mark.unit

angles = st.floats(-60, 60)
"""Degrees; past about 60° a real landmark model no longer finds the far eye anyway."""


def rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """[3, 3]: tilt (about the ears' axis), then turn (about the camera's vertical), then roll in
    the image; x right, y down, z towards the camera."""
    y, p, r = (math.radians(a) for a in (yaw_deg, pitch_deg, roll_deg))
    turn = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    tilt = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    roll = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return roll @ turn @ tilt


def photographed(
    yaw: float, pitch: float, roll: float = 0.0, scale: float = 100.0, at: tuple[float, float] = (320, 240)
) -> np.ndarray:
    """[5, 2] image points of the mean face so turned, projected orthographically."""
    return (MEAN_FACE @ rotation(yaw, pitch, roll).T)[:, :2] * scale + np.array(at)


def mirrored(points5: np.ndarray) -> np.ndarray:
    """The same face seen in a mirror: x negated, left and right swapped."""
    flipped = points5 * np.array([-1.0, 1.0])
    return flipped[[1, 0, 2, 4, 3]]


def test_the_template_itself_is_frontal() -> None:
    pose = head_pose(align.ARCFACE_TEMPLATE)
    assert abs(pose.yaw_deg) < 0.5 and abs(pose.pitch_deg) < 0.1


@settings(max_examples=300, deadline=None)
@given(
    angles,
    angles,
    st.floats(-180, 180),
    st.floats(5, 2000),
    st.tuples(st.floats(-1e4, 1e4), st.floats(-1e4, 1e4)),
)
def test_a_turned_mean_face_gives_back_its_yaw_and_pitch(
    yaw: float, pitch: float, roll: float, scale: float, at: tuple[float, float]
) -> None:
    """Exact, whatever the roll, size and place of the face in the image."""
    pose = head_pose(photographed(yaw, pitch, roll, scale, at))
    assert pose.yaw_deg == pytest.approx(yaw, abs=0.02)
    assert pose.pitch_deg == pytest.approx(pitch, abs=0.02)


@settings(max_examples=200, deadline=None)
@given(angles, angles)
def test_a_mirror_turns_the_other_way_and_tilts_the_same(yaw: float, pitch: float) -> None:
    points = photographed(yaw, pitch)
    pose, seen_in_mirror = head_pose(points), head_pose(mirrored(points))
    assert seen_in_mirror.yaw_deg == pytest.approx(-pose.yaw_deg, abs=0.02)
    assert seen_in_mirror.pitch_deg == pytest.approx(pose.pitch_deg, abs=0.02)


@settings(max_examples=200, deadline=None)
@given(st.floats(-40, 40), st.floats(-40, 40), st.integers(0, 2**32 - 1))
def test_landmarks_off_by_two_percent_of_the_eye_distance_move_the_pose_a_few_degrees(
    yaw: float, pitch: float, seed: int
) -> None:
    """What a landmark model's error does: each point moved by up to 2 % of the eye distance
    (2 pixels on a face 100 pixels between the eyes) moves the estimates by at most 5° (3.6°
    was the worst of 20,000 draws)."""
    points = photographed(yaw, pitch, scale=100.0)
    rng = np.random.default_rng(seed)
    nudged = points + rng.uniform(-2.0, 2.0, points.shape) / math.sqrt(2)
    a, b = head_pose(points), head_pose(nudged)
    assert abs(a.yaw_deg - b.yaw_deg) <= 5 and abs(a.pitch_deg - b.pitch_deg) <= 5


@settings(max_examples=100, deadline=None)
@given(st.floats(-50, 50), st.floats(0.5, 20))
def test_more_turn_reads_as_more_yaw(yaw: float, more: float) -> None:
    assert head_pose(photographed(yaw + more, 10)).yaw_deg > head_pose(photographed(yaw, 10)).yaw_deg


def test_signs_name_the_directions() -> None:
    turned_right, tilted_up = head_pose(photographed(30, 0)), head_pose(photographed(0, 30))
    assert turned_right.yaw_deg > 0 and tilted_up.pitch_deg > 0
    # Tilted up, the nose tip climbs towards the eye line.
    assert photographed(0, 30)[2, 1] < photographed(0, 0)[2, 1]


@pytest.mark.parametrize(
    "points",
    [np.zeros((5, 2)), np.array([[10, 10], [20, 10], [15, 5], [10, 0], [20, 0]], float)],
    ids=["all-in-one-point", "mouth-above-the-eyes"],
)
def test_no_face_geometry_reads_as_frontal_rather_than_failing(points: np.ndarray) -> None:
    assert head_pose(points) == quality.Pose(0.0, 0.0)


def face_at(points5: np.ndarray, image: np.ndarray) -> Face:
    crop = align.align(image, points5)
    box = np.array([*points5.min(axis=0) - 30, *points5.max(axis=0) + 30], np.float32)
    return Face(box=box, det_score=0.99, points5=points5.astype(np.float32), crop=crop)


def textured(height: int = 480, width: int = 640, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_a_face_well_inside_the_image_is_measured_over_all_its_crop() -> None:
    inside = quality.inside_image(photographed(0, 0, at=(320, 200)), 640, 480)
    assert inside.all()


def test_the_black_beyond_the_edge_of_the_image_is_not_sharpness() -> None:
    """A face cut by the left edge: the warp fills the crop with black there, an edge that the
    Laplacian would count as detail in a face blurred beyond use."""
    flat = np.full((480, 640, 3), 128, np.uint8)
    points = photographed(0, 0, at=(20, 200))  # the left eye is outside the image
    face = face_at(points, flat)
    assert face.crop is not None
    inside = quality.inside_image(points, 640, 480)
    assert 0.2 < inside.mean() < 0.9 and not inside[:, 0].any() and inside[:, -1].all()
    assert quality.sharpness(face.crop) > 100  # the edge
    assert quality.sharpness(face.crop, inside) == 0.0
    measures = quality.measure(face, 640, 480)
    assert measures.sharpness == 0.0
    # The same face in a detailed image is sharp where it lies inside.
    assert quality.measure(face_at(points, textured()), 640, 480).sharpness > 1000


def test_blur_lowers_the_sharpness() -> None:
    image = textured()
    points = photographed(0, 0, at=(320, 200))
    values = [
        quality.measure(
            face_at(points, cv2.GaussianBlur(image, (0, 0), s) if s else image), 640, 480
        ).sharpness
        for s in (0, 1, 2, 4)
    ]
    assert values == sorted(values, reverse=True) and values[-1] < values[0] / 100


def test_the_measures_of_a_face() -> None:
    points = photographed(20, -10, at=(320, 200))
    face = face_at(points, textured())
    face.box = np.array([100, 50, 180.5, 250], np.float32)
    face.det_score = 0.987654
    measures = quality.measure(face, 640, 480)
    assert measures.face_px == 80.5 and measures.det_score == 0.9877
    assert measures.yaw_deg == pytest.approx(20, abs=0.02) and measures.pitch_deg == pytest.approx(
        -10, abs=0.02
    )
    with pytest.raises(ValueError, match="after alignment"):
        quality.measure(Face(box=face.box, det_score=0.9), 640, 480)


GOOD = Measures(face_px=200.0, sharpness=800.0, yaw_deg=10.0, pitch_deg=-5.0, det_score=0.999)
BOUNDS = QualitySettings(
    min_face_px=64, min_sharpness=25, max_yaw_deg=35, max_pitch_deg=35, min_det_score=0.9
)


def test_a_good_face_and_one_exactly_at_every_bound_pass() -> None:
    assert quality.check(GOOD, BOUNDS) == []
    at_bounds = Measures(face_px=64, sharpness=25, yaw_deg=-35, pitch_deg=35, det_score=0.9)
    assert quality.check(at_bounds, BOUNDS) == []


@pytest.mark.parametrize(
    ("changes", "criterion", "value", "threshold", "said"),
    [
        ({"face_px": 41.5}, Criterion.SIZE, 41.5, 64, "41.5 pixels across, under 64"),
        ({"sharpness": 7.3}, Criterion.SHARPNESS, 7.3, 25, "blurred: sharpness 7.3, under 25"),
        ({"yaw_deg": -48.2}, Criterion.YAW, -48.2, 35, "turned 48° towards the image's left"),
        ({"yaw_deg": 40.0}, Criterion.YAW, 40.0, 35, "towards the image's right"),
        ({"pitch_deg": 51.0}, Criterion.PITCH, 51.0, 35, "tilted 51° up"),
        ({"pitch_deg": -36.0}, Criterion.PITCH, -36.0, 35, "tilted 36° down"),
        ({"det_score": 0.82}, Criterion.DETECTION, 0.82, 0.9, "score 0.82, under 0.9"),
    ],
)
def test_each_failed_criterion_is_one_reason_with_its_value_and_bound(
    changes: dict[str, float], criterion: Criterion, value: float, threshold: float, said: str
) -> None:
    measures = Measures(**{**GOOD.__dict__, **changes})
    (reason,) = quality.check(measures, BOUNDS)
    assert (reason.criterion, reason.value, reason.threshold) == (criterion, value, threshold)
    assert said in reason.message


def test_every_failed_criterion_is_given_in_a_fixed_order() -> None:
    bad = Measures(face_px=20, sharpness=3, yaw_deg=70, pitch_deg=-60, det_score=0.75)
    assert [r.criterion for r in quality.check(bad, BOUNDS)] == list(Criterion)


def test_the_thresholds_are_settings_of_their_own_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACEREC_QUALITY__MIN_FACE_PX", "80")
    monkeypatch.setenv("FACEREC_QUALITY__MAX_YAW_DEG", "25.5")
    monkeypatch.setenv("FACEREC_QUALITY__ENABLED", "false")
    gate = Settings().quality
    assert (gate.min_face_px, gate.max_yaw_deg, gate.enabled) == (80, 25.5, False)
    assert gate.min_sharpness == QualitySettings().min_sharpness
    monkeypatch.setenv("FACEREC_QUALITY__MIN_DET_SCORE", "1.5")
    with pytest.raises(ValueError, match="min_det_score"):
        Settings()
