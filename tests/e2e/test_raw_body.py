"""The image as the whole request body, beside the multipart form, on the whole running stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.flows import gallery_snapshot, make_gallery
from tests.e2e.test_errors import assert_problem
from tests.e2e.test_log_and_stats import logged
from tests.support import augment

pytestmark = pytest.mark.integration

LIMIT = 8 * 1024 * 1024
"""The stack's FACEREC_API__MAX_BODY_BYTES (:mod:`tests.support.stack`)."""


@pytest.fixture(scope="module")
def people(admin: httpx.Client, photos: Path) -> dict:
    return make_gallery(admin, photos)


def as_body(client: httpx.Client, path: str, data: Any, content_type: str, **params: Any) -> httpx.Response:
    return client.post(path, content=data, headers={"content-type": content_type}, params=params)


def best(answer: dict[str, Any]) -> tuple[int, float]:
    """The person and similarity of the best match of the answer's only face."""
    (face,) = answer["faces"]
    assert face["decision"] == "match", face
    return face["matches"][0]["person_id"], face["matches"][0]["similarity"]


def test_a_jpeg_body_is_recognised_as_the_same_bytes_in_a_form_are(admin, people, photos: Path) -> None:
    data = (photos / "obama3.jpg").read_bytes()
    # top_k differs, so that neither answer is the other's from the cache.
    raw = as_body(admin, "/v1/recognize", data, "image/jpeg", top_k=4)
    form = admin.post("/v1/recognize", files={"file": ("obama3.jpg", data)}, params={"top_k": 3})
    assert raw.status_code == 200 and form.status_code == 200, (raw.text, form.text)
    from_body, from_form = raw.json(), form.json()
    assert from_body["cached"] is False and from_form["cached"] is False
    (person, similarity), (form_person, form_similarity) = best(from_body), best(from_form)
    assert person == form_person == people["obama"]["id"]
    assert similarity == pytest.approx(form_similarity, abs=1e-4)
    assert from_body["faces"][0]["box"] == pytest.approx(from_form["faces"][0]["box"], abs=1e-3)
    # The log names the form's file; a body has no file name.
    ids = {raw.headers["x-request-id"], form.headers["x-request-id"]}
    entries = logged(admin, ids)
    assert entries.keys() == ids
    assert entries[raw.headers["x-request-id"]]["filename"] is None
    assert entries[raw.headers["x-request-id"]]["status"] == "ok"
    assert entries[form.headers["x-request-id"]]["filename"] == "obama3.jpg"


def test_png_and_sniffed_bodies_on_recognize_detect_and_enrol(admin, people, photos: Path) -> None:
    biden = (photos / "biden.jpg").read_bytes()
    png = augment.encode(augment.read_rgb(biden), ".png")
    recognised = as_body(admin, "/v1/recognize", png, "image/png")
    assert recognised.status_code == 200, recognised.text
    assert best(recognised.json())[0] == people["biden"]["id"]
    # application/octet-stream: the bytes say what they are.
    sniffed = as_body(admin, "/v1/recognize", augment.reencoded(biden, 85), "application/octet-stream")
    assert sniffed.status_code == 200, sniffed.text
    assert best(sniffed.json())[0] == people["biden"]["id"]

    detected = as_body(admin, "/v1/detect", png, "image/png", max_faces=1)
    assert detected.status_code == 200, detected.text
    (face,) = detected.json()["faces"]
    assert face["box"] == pytest.approx(recognised.json()["faces"][0]["box"], abs=1e-3)

    before = len(admin.get(f"/v1/people/{people['biden']['id']}/faces").json()["items"])
    enrolled = as_body(
        admin, f"/v1/people/{people['biden']['id']}/faces", augment.scaled(biden, 0.8), "image/jpeg"
    )
    assert enrolled.status_code == 201, enrolled.text
    assert enrolled.json()["person_id"] == people["biden"]["id"]
    after = admin.get(f"/v1/people/{people['biden']['id']}/faces").json()["items"]
    assert len(after) == before + 1 and enrolled.json()["face_id"] in {f["face_id"] for f in after}


def chunks(total: int, size: int = 1024 * 1024) -> Iterator[bytes]:
    """A JPEG's first bytes and then zeros, ``total`` bytes, with no Content-Length."""
    yield b"\xff\xd8\xff\xe0"
    sent = 4
    while sent < total:
        chunk = bytes(min(size, total - sent))
        sent += len(chunk)
        yield chunk


def test_bodies_that_are_not_usable_images_are_refused(admin, people, photos: Path) -> None:
    jpeg = (photos / "obama3.jpg").read_bytes()
    before = gallery_snapshot(admin)
    obama = people["obama"]["id"]
    for path in ("/v1/recognize", "/v1/detect", f"/v1/people/{obama}/faces"):
        text = as_body(admin, path, b"a photo of Obama", "text/plain")
        assert "text/plain" in assert_problem(text, 415, "not an image")["detail"]
        assert_problem(as_body(admin, path, b"", "image/jpeg"), 400, "the body is empty")
        # The declared type says an image; the bytes are sniffed, as a form's file part is.
        assert_problem(as_body(admin, path, b"this is text, not a photo", "image/jpeg"), 415, "not a JPEG")
        assert_problem(as_body(admin, path, jpeg[: len(jpeg) // 2], "image/jpeg"), 400, "truncated")
        too_large = as_body(admin, path, jpeg + bytes(LIMIT), "image/jpeg")
        assert_problem(too_large, 413, "limit")
        streamed = as_body(admin, path, chunks(LIMIT + 1024 * 1024), "image/jpeg")
        assert "content-length" not in streamed.request.headers
        assert_problem(streamed, 413, "limit")
    assert gallery_snapshot(admin) == before
