"""Detector post-processing, landmark reduction and alignment: pure numpy, checked exactly."""

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator.pipeline.vision import align, detect, landmarks

pytestmark = pytest.mark.unit


def brute_force_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    kept: list[int] = []
    for i in sorted(range(len(scores)), key=lambda k: (-scores[k], k)):
        if all(detect.iou(boxes[j], boxes[i : i + 1])[0] <= threshold for j in kept):
            kept.append(i)
    return kept


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 40), st.integers(0, 10_000), st.floats(0.1, 0.9))
def test_nms_equals_brute_force(n: int, seed: int, threshold: float) -> None:
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 100, (n, 2))
    sizes = rng.uniform(5, 40, (n, 2))
    boxes = np.concatenate([corners, corners + sizes], axis=1)
    scores = rng.uniform(0, 1, n)
    assert detect.nms(boxes, scores, threshold) == brute_force_nms(boxes, scores, threshold)


def test_detections_threshold_scale_and_order() -> None:
    scores = np.array([[0, 0.99], [0, 0.95], [0, 0.5], [0, 0.9]], np.float32)
    boxes = np.array(
        [[0.1, 0.1, 0.3, 0.4], [0.11, 0.1, 0.31, 0.4], [0.5, 0.5, 0.9, 0.9], [0.5, 0.1, 0.9, 0.8]],
        np.float32,
    )
    found = detect.detections(scores, boxes, 640, 480, detect.DetectParams(score_threshold=0.7))
    # Box 1 overlaps box 0 and is suppressed; box 2 is below the threshold; largest first.
    assert [round(d.score, 2) for d in found] == [0.9, 0.99]
    np.testing.assert_allclose(found[0].box, [320, 48, 576, 384], atol=1e-3)


def test_detector_input_layout_and_normalisation() -> None:
    rgb = np.zeros((480, 640, 3), np.uint8)
    rgb[..., 0] = 255
    x = detect.detector_input(rgb)
    assert x.shape == (3, 240, 320) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], 1.0)
    np.testing.assert_allclose(x[1], -127 / 128)


def test_five_points_use_the_documented_landmarks() -> None:
    points = np.arange(136, dtype=np.float32).reshape(68, 2)
    five = landmarks.five_points(points)
    np.testing.assert_allclose(five[0], points[[37, 38, 40, 41]].mean(axis=0))
    np.testing.assert_allclose(five[1], points[[43, 44, 46, 47]].mean(axis=0))
    np.testing.assert_allclose(five[2], points[30])
    np.testing.assert_allclose(five[3], (points[48] + points[60]) / 2)
    np.testing.assert_allclose(five[4], (points[54] + points[64]) / 2)


def test_landmark_crop_round_trip() -> None:
    rect = landmarks.crop_rect(np.array([-5.0, 10.2, 50.0, 90.0]), 40, 200)
    assert rect == (0, 10, 40, 80)
    output = np.tile([0.5, 0.25], 68)
    points = landmarks.landmarks_in_image(output, rect)
    np.testing.assert_allclose(points[0], [20, 30])
    patch = landmarks.landmark_input(np.full((200, 40, 3), 128, np.uint8), rect)
    assert patch.shape == (1, 64, 64)
    np.testing.assert_allclose(patch, 0.5)


@settings(max_examples=80, deadline=None)
@given(st.floats(-np.pi, np.pi), st.floats(0.2, 5.0), st.floats(-300, 300), st.floats(-300, 300))
def test_similarity_transform_recovers_a_known_similarity(
    angle: float, scale: float, tx: float, ty: float
) -> None:
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = align.ARCFACE_TEMPLATE * 1.7 + 20
    dst = src @ rotation.T + [tx, ty]
    matrix = align.similarity_transform(src, dst)
    np.testing.assert_allclose(matrix[:, :2], rotation, atol=1e-6)
    np.testing.assert_allclose(matrix[:, 2], [tx, ty], atol=1e-4)


def test_similarity_transform_agrees_with_opencv_on_noisy_points() -> None:
    rng = np.random.default_rng(7)
    src = align.ARCFACE_TEMPLATE * 2.3 + 40 + rng.normal(0, 3, (5, 2))
    ours = align.similarity_transform(src, align.ARCFACE_TEMPLATE)
    theirs, _ = cv2.estimateAffinePartial2D(src, align.ARCFACE_TEMPLATE, method=cv2.LMEDS)
    mapped_ours = src @ ours[:, :2].T + ours[:, 2]
    mapped_theirs = src @ theirs[:, :2].T + theirs[:, 2]
    # Least squares: never worse than OpenCV's robust fit on the same points.
    residual = lambda m: np.square(m - align.ARCFACE_TEMPLATE).sum()  # noqa: E731
    assert residual(mapped_ours) <= residual(mapped_theirs) + 1e-9


def test_align_puts_the_points_on_the_template() -> None:
    rgb = np.zeros((400, 400, 3), np.uint8)
    points = align.ARCFACE_TEMPLATE * 2 + 100
    for x, y in points.astype(int):
        cv2.circle(rgb, (x, y), 3, (255, 255, 255), -1)
    crop = align.align(rgb, points.astype(np.float32))
    assert crop.shape == (112, 112, 3)
    for x, y in align.ARCFACE_TEMPLATE.round().astype(int):
        assert crop[y, x].min() > 200
    x = align.embedder_input(crop[None])
    assert x.shape == (1, 3, 112, 112)
