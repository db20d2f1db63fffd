"""The enrolment quality gate on real photos through the real Triton, with its default thresholds.

``python -m loadtests.quality`` measures the same on more degradations; the README's "Quality
gate" has its table.
"""

from pathlib import Path

import cv2
import pytest

from orchestrator.clients.triton import TritonModels
from orchestrator.core.settings import QualitySettings
from orchestrator.pipeline import quality
from orchestrator.pipeline.face_pipeline import FacePipeline
from tests.support import augment
from tests.support.photos import IMAGES

pytestmark = pytest.mark.integration

DEFAULTS = QualitySettings()
PHOTOS = sorted(IMAGES)


async def measures_of(pipeline: FacePipeline, data: bytes) -> quality.Measures:
    analysis = await pipeline.analyse(data, embed=False)
    assert analysis.faces, "no face found"
    return quality.measure(analysis.faces[0], analysis.width, analysis.height)


async def test_every_test_photo_and_its_mild_degradations_pass(triton: TritonModels, photos: Path) -> None:
    pipeline = FacePipeline(triton)
    for name in PHOTOS:
        data = (photos / name).read_bytes()
        for label, image in [
            ("clean", data),
            ("JPEG q50", augment.reencoded(data, 50)),
            ("scale ×0.5", augment.scaled(data, 0.5)),
            ("blur σ2", augment.blurred(data, 2)),
        ]:
            measures = await measures_of(pipeline, image)
            assert quality.check(measures, DEFAULTS) == [], (name, label, measures)


async def test_a_heavily_blurred_face_is_refused_for_sharpness_alone(
    triton: TritonModels, photos: Path
) -> None:
    """Partial faces too: the black the warp puts beyond the image's edge is not detail."""
    pipeline = FacePipeline(triton)
    for name in PHOTOS:
        measures = await measures_of(pipeline, augment.blurred((photos / name).read_bytes(), 8))
        (reason,) = quality.check(measures, DEFAULTS)
        assert reason.criterion == "sharpness" and reason.value < DEFAULTS.min_sharpness, (name, measures)


async def test_a_tiny_face_is_refused_for_its_size(triton: TritonModels, photos: Path) -> None:
    pipeline = FacePipeline(triton)
    for name in ["obama.jpg", "obama2.jpg", "biden.jpg"]:
        measures = await measures_of(pipeline, augment.scaled((photos / name).read_bytes(), 0.1))
        reasons = quality.check(measures, DEFAULTS)
        assert [r.criterion for r in reasons][:1] == ["size"], (name, measures)
        assert reasons[0].value == measures.face_px < DEFAULTS.min_face_px


async def test_a_mirrored_photo_reads_as_turned_the_other_way(triton: TritonModels, photos: Path) -> None:
    """The pose estimate on real landmarks: the sign of yaw follows the face. The landmark
    model is not mirror-symmetric, so the sizes differ by up to 10° (biden: +18°, −8°)."""
    pipeline = FacePipeline(triton)
    for name in ["obama2.jpg", "obama3.jpg", "biden.jpg"]:  # the most turned of the photos
        data = (photos / name).read_bytes()
        mirrored = augment.encode(cv2.flip(augment.read_rgb(data), 1), params=[cv2.IMWRITE_JPEG_QUALITY, 95])
        pose, other_way = await measures_of(pipeline, data), await measures_of(pipeline, mirrored)
        assert abs(pose.yaw_deg) > 8 and pose.yaw_deg * other_way.yaw_deg < 0, (name, pose, other_way)
        assert abs(pose.yaw_deg + other_way.yaw_deg) < 14 and abs(pose.pitch_deg - other_way.pitch_deg) < 14


async def test_a_face_turned_far_is_refused_for_yaw(triton: TritonModels, photos: Path) -> None:
    pipeline = FacePipeline(triton)
    for name in ["obama.jpg", "obama3.jpg", "biden.jpg"]:
        data = (photos / name).read_bytes()
        analysis = await pipeline.analyse(data, embed=False)
        points5 = analysis.faces[0].points5
        assert points5 is not None
        measures = await measures_of(pipeline, augment.turned(data, points5, 55))
        assert [r.criterion for r in quality.check(measures, DEFAULTS)] == ["yaw"], (name, measures)
        assert measures.yaw_deg > DEFAULTS.max_yaw_deg
