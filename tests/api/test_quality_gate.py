"""The enrolment route's quality switch and its 422 ``face-quality`` problem, in-process.

The gate itself runs on real photos in ``tests/integration/test_quality.py`` and end to end
in ``tests/e2e/test_quality_gate.py``; here the enrolment is a stand-in that refuses.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import httpx
import pytest

from orchestrator.core.errors import QualityReason, QualityRejected
from orchestrator.core.resources import Resources
from orchestrator.gallery.enrolment import Enrolment
from tests.api.conftest import Api, assert_problem
from tests.api.fakes import png
from tests.api.test_spec import operations, spec_of

pytestmark = pytest.mark.unit

REASONS = [
    QualityReason("sharpness", 9.4, 25.0, "the face is blurred: sharpness 9.4, under 25"),
    QualityReason("size", 41.0, 64.0, "the face is 41 pixels across, under 64"),
]


class RefusingEnrolment:
    """Refuses every face on quality unless told to skip the gate; remembers what it was told."""

    def __init__(self) -> None:
        self.told: list[bool] = []

    async def enrol(self, person_id: int, image: bytes, **options: Any) -> dict[str, Any]:
        check = options["check_quality"]
        self.told.append(check)
        if check:
            raise QualityRejected("the face is not fit to enrol", REASONS)
        return {
            "face_id": 7,
            "person_id": person_id,
            "box": [1.0, 2.0, 3.0, 4.0],
            "det_score": 0.9,
            "quality": 0.1,
        }


@pytest.fixture
def refusing(api: Api) -> RefusingEnrolment:
    enrolment = RefusingEnrolment()
    resources: Resources = api.app.state.resources
    api.app.state.resources = replace(resources, enrolment=cast(Enrolment, enrolment))
    return enrolment


async def enrol(admin: httpx.AsyncClient, api: Api, **params: str) -> httpx.Response:
    return await admin.post(
        f"/v1/people/{api.seeded.person_id}/faces",
        files={"file": ("f.png", png(), "image/png")},
        params=params,
    )


async def test_a_refused_face_is_a_face_quality_problem_with_each_reason(
    api: Api, admin: httpx.AsyncClient, refusing: RefusingEnrolment
) -> None:
    body = assert_problem(await enrol(admin, api), 422, "not fit to enrol")
    assert body["type"] == "https://facerec.dev/problems/face-quality"
    assert body["reasons"] == [
        {"criterion": "sharpness", "value": 9.4, "threshold": 25.0, "message": REASONS[0].message},
        {"criterion": "size", "value": 41.0, "threshold": 64.0, "message": REASONS[1].message},
    ]
    problem = (await spec_of(api))["components"]["schemas"]["Problem"]
    assert body.keys() <= problem["properties"].keys()
    assert refusing.told == [True]


async def test_quality_off_skips_the_gate_and_anything_else_is_invalid(
    api: Api, admin: httpx.AsyncClient, refusing: RefusingEnrolment
) -> None:
    assert (await enrol(admin, api, quality="off")).status_code == 201
    assert (await enrol(admin, api, quality="on")).status_code == 422
    invalid = assert_problem(await enrol(admin, api, quality="maybe"), 422)
    assert invalid["errors"][0]["loc"] == ["query", "quality"] and "reasons" not in invalid
    assert refusing.told == [False, True]


async def test_the_spec_declares_the_switch_and_the_reasons(api: Api) -> None:
    spec = await spec_of(api)
    operation = operations(spec)[("POST", "/v1/people/{person_id}/faces")]
    (quality,) = [p for p in operation["parameters"] if p["name"] == "quality"]
    assert quality["in"] == "query" and not quality["required"]
    assert quality["schema"]["enum"] == ["on", "off"] and quality["schema"]["default"] == "on"
    assert "reasons" in operation["responses"]["422"]["description"]
    schemas = spec["components"]["schemas"]
    reasons = schemas["Problem"]["properties"]["reasons"]
    assert reasons["items"] == {"$ref": "#/components/schemas/FailedCriterion"}
    assert set(schemas["FailedCriterion"]["required"]) == {"criterion", "value", "threshold", "message"}
    assert schemas["Criterion"]["enum"] == ["size", "sharpness", "yaw", "pitch", "det_score"]
