"""The enrolment quality gate against the whole running stack, with its default thresholds:
a bad face is refused with 422 and its measured reasons and changes nothing; an admin's
``?quality=off`` enrols it anyway; recognition is never gated."""

from pathlib import Path

import httpx
import pytest

from orchestrator.core.settings import QualitySettings
from tests.e2e.flows import create_person, enrol, gallery_snapshot, recognize
from tests.e2e.test_errors import assert_problem
from tests.support import augment

pytestmark = pytest.mark.integration

DEFAULTS = QualitySettings()


def refused(admin: httpx.Client, person_id: int, image: bytes, detail: str) -> list[dict]:
    """The reasons of a 422 face-quality answer, which must leave the gallery as it was."""
    before = gallery_snapshot(admin)
    answer = admin.post(f"/v1/people/{person_id}/faces", files={"file": ("face.jpg", image)})
    body = assert_problem(answer, 422, detail)
    assert body["type"] == "https://facerec.dev/problems/face-quality" and "quality=off" in body["detail"]
    assert gallery_snapshot(admin) == before
    return list(body["reasons"])


def test_a_clean_photo_is_enrolled(admin: httpx.Client, photos: Path) -> None:
    person = create_person(admin, "Clean Photo")
    face = enrol(admin, person["id"], photos / "obama.jpg")
    assert face["person_id"] == person["id"]


def test_a_heavily_blurred_face_is_refused_with_its_sharpness_then_enrolled_with_quality_off(
    admin: httpx.Client, photos: Path
) -> None:
    person = create_person(admin, "Blurred Photo")
    blurred = augment.blurred((photos / "obama.jpg").read_bytes(), 8)
    (reason,) = refused(admin, person["id"], blurred, "blurred")
    assert reason["criterion"] == "sharpness" and reason["threshold"] == DEFAULTS.min_sharpness
    assert 0 < reason["value"] < DEFAULTS.min_sharpness and f"{reason['value']:g}" in reason["message"]
    # Forced too: "Clean Photo" is the same man, and a second record of him would be refused.
    face = enrol(admin, person["id"], blurred, quality="off", force="true")
    assert admin.get(f"/v1/people/{person['id']}/faces").json()["items"][0]["face_id"] == face["face_id"]


def test_a_tiny_face_is_refused_for_its_size_then_enrolled_with_quality_off(
    admin: httpx.Client, photos: Path
) -> None:
    person = create_person(admin, "Tiny Face")
    tiny = augment.scaled((photos / "biden.jpg").read_bytes(), 0.12)
    reasons = refused(admin, person["id"], tiny, "pixels across")
    assert reasons[0]["criterion"] == "size" and reasons[0]["threshold"] == DEFAULTS.min_face_px
    assert 20 <= reasons[0]["value"] < DEFAULTS.min_face_px
    enrol(admin, person["id"], tiny, quality="off")
    # What is refused at enrolment is still recognised: only enrolment is gated.
    assert recognize(admin, tiny)["faces"][0]["matches"][0]["person_id"] == person["id"]
