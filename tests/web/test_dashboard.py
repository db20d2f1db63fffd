"""The dashboard in a real browser: its figures follow what the service does, without a reload;
a failed refresh is shown as stale, in words; it fits a phone."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from orchestrator.pipeline.face_pipeline import EMBEDDER
from tests.e2e.flows import create_person, enrol
from tests.web.conftest import PHONE

pytestmark = pytest.mark.integration

OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"
WIDER = """() => [...document.querySelectorAll('body *')]
  .filter((node) => node.getBoundingClientRect().right > window.innerWidth + 0.5)
  .map((node) => `${node.tagName.toLowerCase()}#${node.id}.${node.className}`).slice(0, 8)"""


def count(text: str) -> int:
    """A figure as the page writes it ("1,234 inferences") read back as a number."""
    digits = re.sub(r"[^\d]", "", text.split(" ")[0])
    assert digits, f"no figure in {text!r}"
    return int(digits)


def wait_for_count(page: Any, selector: str, least: int) -> None:
    """Until the figure at the start of the element's text is at least ``least``."""
    page.wait_for_function(
        """([selector, least]) => {
          const node = document.querySelector(selector);
          return node !== null && Number(node.textContent.trim().split(" ")[0].replace(/\\D/g, "")) >= least;
        }""",
        arg=[selector, least],
    )


def opened(open_page: Callable[..., Any], **options: Any) -> Any:
    page = open_page("ada", **options)
    page.goto("/dashboard")
    expect(page.locator("#fresh-state")).to_have_text("live")
    return page


def recognize(api: httpx.Client, photo: Path) -> None:
    answer = api.post("/v1/recognize", files={"file": (photo.name, photo.read_bytes(), "image/jpeg")})
    assert answer.status_code == 200, answer.text


def test_the_figures_follow_the_service_live(
    open_page: Callable[..., Any], api: httpx.Client, photos: Path
) -> None:
    page = opened(open_page)
    workers = page.locator("#tile-workers")
    expect(workers.locator(".value")).to_have_text(re.compile(r"^[1-9]\d* of [1-9]\d*$"))
    expect(workers).to_contain_text(re.compile(r"web-worker: \d+ of 4 slots busy"))
    queues = re.compile(r"high \d+ · normal \d+ · low \d+")
    expect(page.locator("#tile-queues .dash-detail")).to_have_text(queues)
    inferences_shown = f'#triton [data-model="{EMBEDDER} v1"] .dash-inferences'
    embedder = page.locator(f'#triton [data-model="{EMBEDDER} v1"]')
    faces = count(page.locator("#tile-faces .value").inner_text())
    people = count(page.locator("#tile-people .value").inner_text())
    inferences = count(embedder.locator(".dash-inferences").inner_text())
    shown_at = page.locator("#refreshed").inner_text()

    person = create_person(api, "Dashboard Watcher")
    try:
        enrol(api, person["id"], photos / "biden.jpg", force="true")
        for _ in range(2):  # the second from the cache: the enrolment made a new generation
            recognize(api, photos / "obama2.jpg")

        expect(page.locator("#tile-faces .value")).to_have_text(f"{faces + 1:,}")
        expect(page.locator("#tile-people .value")).to_have_text(f"{people + 1:,}")
        expect(page.locator("#refreshed")).not_to_have_text(shown_at)
        wait_for_count(page, inferences_shown, inferences + 2)  # the enrolment's and a recognition's
        expect(embedder.locator(".value")).to_have_text(re.compile(r"^\d+(\.\d+)?$"))  # a batch size now
        expect(page.locator("#routes")).to_contain_text("POST /v1/recognize")
        expect(page.locator("#routes")).to_contain_text("POST /v1/people/{person_id}/faces")
        wait_for_count(page, "#tile-cache .dash-detail", 1)  # the repeated image, from the cache
        assert "/v1/stats" not in page.locator("#routes").inner_text(), "the page's own polls are not counted"
        expect(page.locator("#chart-rate svg title")).to_contain_text("last 30 minutes")
        assert page.url.endswith("/dashboard"), "no reload, no navigation"
    finally:  # the other pages' tests recognise this photo as Biden
        api.delete(f"/v1/people/{person['id']}")


def test_a_failed_refresh_shows_stale_figures_and_says_why(open_page: Callable[..., Any]) -> None:
    page = opened(open_page)
    faces = page.locator("#tile-faces .value").inner_text()
    page.route("**/v1/stats/live*", lambda route: route.abort("connectionrefused"))
    expect(page.locator("#fresh-state")).to_have_text("stale")
    expect(page.get_by_role("alert")).to_contain_text("the service did not answer")
    expect(page.locator("#refreshed")).to_contain_text("last refreshed at")
    assert page.locator("#tile-faces .value").inner_text() == faces, "the last figures stay, marked stale"
    page.unroute("**/v1/stats/live*")
    expect(page.locator("#fresh-state")).to_have_text("live")
    expect(page.locator("#problem")).to_be_hidden()


def test_the_dashboard_fits_a_phone(open_page: Callable[..., Any]) -> None:
    page = opened(open_page, viewport=PHONE)
    expect(page.locator("#chart-p99 svg")).to_be_visible()
    expect(page.locator("#tile-workers .value")).not_to_have_text("—")
    assert page.evaluate(OVERFLOW) <= 0, f"the page scrolls sideways at phone width: {page.evaluate(WIDER)}"
    box = page.locator("#tile-rate").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
