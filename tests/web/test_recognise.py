"""The Recognise page in a real browser: each face of a photo boxed where it is and named."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from playwright.sync_api import expect

from tests.support.stack import Stack
from tests.web.conftest import PHONE
from tests.web.scenes import group_photo

pytestmark = pytest.mark.integration

BOXES = """(rects) => rects.map((r) => ({
  index: r.dataset.faceIndex, name: r.dataset.name, box: r.dataset.box,
  x: Number(r.getAttribute('x')), y: Number(r.getAttribute('y')),
  width: Number(r.getAttribute('width')), height: Number(r.getAttribute('height')),
}))"""
INSIDE_THE_PHOTO = """() => {
  const photo = document.getElementById('photo').getBoundingClientRect();
  return [...document.querySelectorAll('#overlay rect.box')].every((box) => {
    const drawn = box.getBoundingClientRect();
    return drawn.width > 10 && drawn.left >= photo.left - 1 && drawn.right <= photo.right + 1
      && drawn.top >= photo.top - 1 && drawn.bottom <= photo.bottom + 1;
  });
}"""


@pytest.fixture(scope="module")
def presidents(web_stack: Stack, photos: Path) -> Iterator[dict[str, int]]:
    """Obama and Biden enrolled, whoever else the gallery holds (force: others may hold them too)."""
    enrolled = {
        "Barack Obama (recognise page)": ("obama.jpg", "obama2.jpg"),
        "Joe Biden (recognise page)": ("biden.jpg",),
    }
    made: dict[str, int] = {}
    with web_stack.client() as api:
        try:
            for name, files in enrolled.items():
                photos_sent = [("files", (n, (photos / n).read_bytes(), "image/jpeg")) for n in files]
                answer = api.post(
                    "/v1/people", data={"name": name}, files=photos_sent, params={"force": "true"}
                )
                assert answer.status_code == 201, answer.text
                made[name] = answer.json()["id"]
            yield made
        finally:
            for person_id in made.values():
                api.delete(f"/v1/people/{person_id}")


@pytest.fixture
def group(photos: Path, tmp_path: Path) -> Path:
    """Obama (obama3.jpg) on the left, Biden on the right, in one JPEG."""
    path = tmp_path / "group.jpg"
    path.write_bytes(group_photo(photos))
    return path


def _recognised(page: Any, photo: Path) -> list[dict[str, Any]]:
    page.get_by_label("Choose a photo").set_input_files(str(photo))
    expect(page.locator("#summary")).to_contain_text(f"{photo.name}:")
    boxes = page.locator("#overlay rect.box")
    return sorted(boxes.evaluate_all(BOXES), key=lambda box: box["x"])


def test_a_group_photo_has_the_right_name_on_the_right_box(
    open_page: Callable[..., Any], presidents: dict[str, int], group: Path
) -> None:
    page = open_page("ada")
    page.goto("/recognise")
    left, right = _recognised(page, group)
    assert "Obama" in left["name"], left
    assert "Biden" in right["name"], right
    height, width = cv2.imread(str(group)).shape[:2]
    assert page.locator("#overlay").get_attribute("viewBox") == f"0 0 {width} {height}"
    assert left["x"] + left["width"] <= width / 2 <= right["x"], "each face's box on its own half"
    assert page.evaluate(INSIDE_THE_PHOTO), "the boxes are drawn over the photo, not beside it"
    labels = page.locator("#overlay text").all_text_contents()
    assert any(label.startswith(f"{left['index']} ") and "Obama" in label for label in labels), labels
    assert all(re.search(r" \d\.\d\d$", label) for label in labels), "each label gives the similarity"
    # The list numbers the faces as the boxes do, each with its closest people, best first.
    for box, name in ((left, "Obama"), (right, "Biden")):
        listed = page.locator(f".face-result[data-face-index='{box['index']}']")
        assert name in listed.locator("h3").inner_text()
        ranks = listed.locator("tbody tr")
        assert ranks.count() >= 2, "the top-k list holds the other people too"
        assert name in ranks.first.locator("td").nth(1).inner_text()
        similarities = [float(s) for s in ranks.locator("td:nth-child(3)").all_inner_texts()]
        assert similarities == sorted(similarities, reverse=True)
    timing = page.locator("#timing").inner_text()
    assert re.search(r"Took \d+ ms on the server.*\d+ ms round trip", timing), timing


def test_top_k_and_a_phone_screen(
    open_page: Callable[..., Any], presidents: dict[str, int], group: Path
) -> None:
    page = open_page("rex", PHONE)
    page.goto("/")
    page.get_by_label("Matches per face").fill("1")
    left, right = _recognised(page, group)
    assert "Obama" in left["name"] and "Biden" in right["name"]
    for item in page.locator(".face-result").all():
        assert item.locator("tbody tr").count() == 1
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth"), (
        "no sideways scroll on a phone"
    )
    assert page.evaluate(INSIDE_THE_PHOTO)


def test_a_photo_without_a_face_says_so(open_page: Callable[..., Any], tmp_path: Path) -> None:
    blank = tmp_path / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 180, np.uint8))
    page = open_page("ada")
    page.goto("/recognise")
    assert _recognised(page, blank) == []
    assert "wall.png: no face found in this photo." in page.locator("#summary").inner_text()
    assert page.locator(".face-result").count() == 0


def test_what_is_not_an_image_is_said_in_words(open_page: Callable[..., Any], tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo at all\n")
    page = open_page("rex")
    page.goto("/recognise")
    page.get_by_label("Choose a photo").set_input_files(str(notes))
    alert = page.locator("#problem")
    alert.wait_for()
    assert re.search(r"image", alert.inner_text(), re.IGNORECASE), alert.inner_text()
    assert page.locator("#result").is_hidden()


def test_without_a_camera_the_page_says_so_and_offers_the_device_camera(
    open_page: Callable[..., Any],
) -> None:
    page = open_page("ada")
    page.goto("/recognise")
    page.get_by_role("button", name="Use the camera").click()
    alert = page.locator("#problem")
    alert.wait_for()
    assert "camera" in alert.inner_text().lower(), alert.inner_text()
    assert page.get_by_label("Take a photo with this device").get_attribute("capture") is not None


def test_a_dropped_photo_is_recognised(
    open_page: Callable[..., Any], presidents: dict[str, int], photos: Path
) -> None:
    page = open_page("ada")
    page.goto("/recognise")
    page.locator("#drop").evaluate(
        """(zone, b64) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const dropped = new DataTransfer();
          dropped.items.add(new File([bytes], 'dropped.jpg', { type: 'image/jpeg' }));
          const drop = { dataTransfer: dropped, bubbles: true, cancelable: true };
          zone.dispatchEvent(new DragEvent('drop', drop));
        }""",
        base64.b64encode((photos / "biden.jpg").read_bytes()).decode(),
    )
    expect(page.locator("#summary")).to_contain_text("dropped.jpg: 1 face, 1 recognised.")
    assert "Biden" in (page.locator("#overlay rect.box").get_attribute("data-name") or "")
