"""One person under two names, against the whole stack with real photos: refused with 409 naming
the first, enrolled when an admin forces it; and the scores the calibration counts kept meanwhile."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.db import Gallery, make_engine
from tests.e2e.flows import create_person, enrol, gallery_snapshot
from tests.e2e.test_errors import assert_problem
from tests.support.stack import Stack

pytestmark = pytest.mark.integration

DUPLICATE = "https://facerec.dev/problems/duplicate-identity"


@pytest.fixture(scope="module")
def obama(admin: httpx.Client, photos: Path) -> dict[str, Any]:
    person = create_person(admin, "Barack Obama", external_id="potus-44")
    enrol(admin, person["id"], photos / "obama.jpg")
    return person


@pytest.fixture(scope="module")
def gallery(stack: Stack) -> Iterator[Gallery]:
    """The stack's own database, read beside it."""
    engine = make_engine(stack.database_url)
    yield Gallery(engine)
    engine.dispose()


def enrol_person(client: httpx.Client, name: str, *photos: Path, **params: str) -> httpx.Response:
    files = [("files", (photo.name, photo.read_bytes(), "image/jpeg")) for photo in photos]
    return client.post("/v1/people", data={"name": name}, files=files, params=params)


def refused_naming(answer: httpx.Response, person: dict[str, Any]) -> dict[str, Any]:
    problem = assert_problem(answer, 409, f"'{person['name']}' (person {person['id']})")
    assert problem["type"] == DUPLICATE and "force=true" in problem["detail"]
    assert problem["person"]["id"] == person["id"] and problem["person"]["external_id"] == "potus-44"
    assert 0.38 <= problem["similarity"] <= 1.0
    return problem


def test_the_same_person_under_a_second_name_is_refused_naming_the_first(
    admin: httpx.Client, obama: dict[str, Any], photos: Path
) -> None:
    before = gallery_snapshot(admin)
    problem = refused_naming(
        enrol_person(admin, "Barry Soetoro", photos / "biden.jpg", photos / "obama2.jpg"), obama
    )
    assert "file 2 ('obama2.jpg')" in problem["detail"]
    assert gallery_snapshot(admin) == before

    someone = create_person(admin, "Someone Else")
    before = gallery_snapshot(admin)
    refused = admin.post(
        f"/v1/people/{someone['id']}/faces", files={"file": ("o.jpg", (photos / "obama2.jpg").read_bytes())}
    )
    refused_naming(refused, obama)
    assert gallery_snapshot(admin) == before
    assert admin.delete(f"/v1/people/{someone['id']}").status_code == 204


def test_another_photo_of_the_same_person_to_that_person_is_fine(
    admin: httpx.Client, obama: dict[str, Any], photos: Path
) -> None:
    face = enrol(admin, obama["id"], photos / "obama3.jpg")
    assert face["person_id"] == obama["id"]
    biden = enrol_person(admin, "Joe Biden", photos / "biden.jpg")
    assert biden.status_code == 201, biden.text


def test_an_admin_may_force_a_second_name(
    admin: httpx.Client, obama: dict[str, Any], photos: Path, gallery: Gallery
) -> None:
    forced = enrol_person(admin, "Barry Soetoro", photos / "obama2.jpg", force="true")
    assert forced.status_code == 201, forced.text
    twin = create_person(admin, "Obama's Twin")
    face = enrol(admin, twin["id"], photos / "obama2.jpg", force="true")
    assert face["person_id"] == twin["id"]
    # The kept scores count these faces of one person under three names as impostors.
    pairs, total = gallery.duplicate_pairs("1", 0.38, limit=10, offset=0)
    named = {frozenset(person.name for person in pair.people) for pair in pairs}
    assert frozenset({"Barry Soetoro", "Obama's Twin"}) in named and total == len(pairs) >= 2
    assert any("Barack Obama" in pair for pair in named)
    impostor, genuine = gallery.score_distribution("1")
    faces = sum(
        len(admin.get(f"/v1/people/{p['id']}/faces").json()["items"])
        for p in admin.get("/v1/people").json()["items"]
    )
    assert len(impostor) == faces and len(genuine) >= 2
