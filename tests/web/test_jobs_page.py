"""The Jobs and Job pages in a real browser: a batch submitted, followed live to its end, its
items with their names drawn on their images; failures in words; dead letters retried."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from orchestrator.db import Gallery, make_engine
from orchestrator.db.jobs import NewItem
from tests.e2e.flows import create_person, enrol
from tests.support.stack import Stack
from tests.web.conftest import PHONE

pytestmark = pytest.mark.integration

JOB_TIMEOUT_MS = 120_000
"""A job's items wait for the worker and Triton, on a machine shared with other tests."""


@pytest.fixture(scope="module")
def presidents(web_stack: Stack, photos: Path) -> Iterator[dict[str, int]]:
    """Obama and Biden enrolled under names of this module (force: others may hold them too)."""
    tag = uuid.uuid4().hex[:6]
    with web_stack.client() as api:
        obama = create_person(api, f"Barack Obama jobs-{tag}")["id"]
        biden = create_person(api, f"Joe Biden jobs-{tag}")["id"]
        for person, photo in ((obama, "obama.jpg"), (obama, "obama2.jpg"), (biden, "biden.jpg")):
            enrol(api, person, photos / photo, force="true")
        yield {"obama": obama, "biden": biden}
        for person in (obama, biden):
            api.delete(f"/v1/people/{person}")


def submitted_job(page: Any) -> int:
    notice = page.locator("#submitted")
    expect(notice).to_be_visible(timeout=JOB_TIMEOUT_MS)
    found = re.search(r"Job (\d+) is queued", notice.inner_text())
    assert found, notice.inner_text()
    return int(found.group(1))


def error_words(problem: dict[str, Any]) -> str:
    return f"{problem['title']}: {problem['detail']}"


def test_a_recognize_job_from_the_page_ends_live_with_names_drawn_on_its_images(
    open_page: Callable[..., Any], api: httpx.Client, photos: Path, presidents: dict[str, int]
) -> None:
    page = open_page("ada")
    page.goto("/jobs")
    page.get_by_label("Priority").select_option("high")
    page.get_by_label("Images (several at once)").set_input_files(
        [photos / "obama3.jpg", photos / "biden.jpg"]
    )
    page.get_by_role("button", name="Submit the job").click()
    job_id = submitted_job(page)
    assert "2 items" in page.locator("#submitted").inner_text()

    # The list follows the job by itself, to its end.
    row = page.locator(f'#jobs tr[data-job-id="{job_id}"]')
    expect(row.locator("td.state")).to_have_text("done", timeout=JOB_TIMEOUT_MS)
    expect(row.locator(".percent")).to_have_text("100 %")
    expect(row).to_contain_text("2 done, 0 failed of 2")
    expect(row).to_contain_text("high")
    assert api.get(f"/v1/jobs/{job_id}").json()["priority"] == "high"

    page.get_by_role("link", name=f"follow job {job_id}").click()
    page.wait_for_url(f"**/jobs/{job_id}")
    expect(page.locator("#job-state")).to_have_text("done")
    expect(page.locator("#job-percent")).to_contain_text("100 %")
    expect(page.locator("#job-done")).to_have_text("2")
    items = page.locator("article.job-item")
    expect(items).to_have_count(2)
    answers = api.get(f"/v1/jobs/{job_id}/items").json()["items"]
    for card, answer, person in zip(items.all(), answers, ("Obama", "Biden"), strict=True):
        expect(card.locator(".filename")).to_have_text(answer["filename"])
        best = answer["result"]["faces"][0]["matches"][0]
        assert person in best["name"], answer  # whoever else holds the same photos
        expect(card.locator(".names")).to_contain_text(f"{best['name']} ({best['similarity']:.2f})")
        # The uploaded image, its face boxed and named where the answer put it.
        box = card.locator("figure.annotated svg rect.box.known").first
        expect(box).to_be_attached()
        x1, y1, x2, _ = answer["result"]["faces"][0]["box"]
        assert float(box.get_attribute("x") or "nan") == pytest.approx(x1)
        assert float(box.get_attribute("y") or "nan") == pytest.approx(y1)
        assert float(box.get_attribute("width") or "nan") == pytest.approx(x2 - x1)
        assert card.locator("figure.annotated svg text").first.text_content() == (
            f"{best['name']} ({best['similarity']:.2f})"
        )
        image = card.locator("figure.annotated img")
        assert image.evaluate("(img) => img.complete && img.naturalWidth") > 0
    assert page.locator("#cancel").is_hidden() and page.locator("#retry").is_hidden()


def test_a_recognize_user_can_submit_only_recognize_jobs(open_page: Callable[..., Any]) -> None:
    page = open_page("rex", viewport=PHONE)
    page.goto("/jobs")
    kinds = page.locator("#kind option")
    expect(kinds).to_have_count(1)
    assert kinds.evaluate_all("(options) => options.map((o) => o.value)") == ["recognize"]
    admin = open_page("ada")
    admin.goto("/jobs")
    assert admin.locator("#kind option").evaluate_all("(options) => options.map((o) => o.value)") == [
        "recognize",
        "enrol",
    ]


def test_a_submission_without_files_and_a_corrupt_image_are_said_in_words(
    open_page: Callable[..., Any], api: httpx.Client
) -> None:
    page = open_page("ada", viewport=PHONE)
    page.goto("/jobs")
    page.get_by_role("button", name="Submit the job").click()
    expect(page.locator("#submit-problem")).to_have_text(
        "Choose one or more images, or a zip archive, first."
    )

    corrupt = {
        "name": "broken.jpg",
        "mimeType": "image/jpeg",
        "buffer": b"\xff\xd8\xff\xe0 not really a photo",
    }
    page.get_by_label("Images (several at once)").set_input_files([corrupt])
    page.get_by_role("button", name="Submit the job").click()
    job_id = submitted_job(page)
    expect(page.locator("#submit-problem")).to_be_hidden()

    page.goto(f"/jobs/{job_id}")
    card = page.locator("article.job-item").first
    expect(card.locator(".badge")).to_have_text("failed", timeout=JOB_TIMEOUT_MS)
    expect(page.locator("#job-failed")).to_have_text("1")
    (item,) = api.get(f"/v1/jobs/{job_id}/items").json()["items"]
    assert item["state"] == "failed" and item["error"]["status"] == 400, item
    expect(card.locator(".item-error")).to_have_text(error_words(item["error"]))
    expect(card.locator("figure")).to_have_count(0)  # no picture of a failed item
    expect(page.locator("#retry")).to_be_visible()

    # Filtered by state: the failed item is there, no done one.
    page.get_by_label("State").select_option("done")
    expect(page.locator("#items")).to_contain_text("No items here.")
    page.get_by_label("State").select_option("failed")
    expect(page.locator("article.job-item")).to_have_count(1)


def test_a_dead_letter_is_listed_with_its_error_and_retried_to_done(
    open_page: Callable[..., Any],
    api: httpx.Client,
    web_stack: Stack,
    photos: Path,
    presidents: dict[str, int],
) -> None:
    # An item dead after its retries (a service away each time) is made as a worker would
    # leave it: claimed, then ended dead; its job's retry then runs it on the real worker.
    gallery = Gallery(make_engine(web_stack.database_url))
    try:
        image = (photos / "obama3.jpg").read_bytes()
        job = gallery.create_job(
            "recognize", "normal", "user:ada", {}, [NewItem("obama3.jpg", [("obama3.jpg", image)])]
        )
        assert gallery.claim_item(job.job_id, 0, "a-worker-of-the-test") is not None
        problem = {"title": "Upstream unavailable", "detail": "Triton did not answer in 60 s", "status": 503}
        assert gallery.finish_item(job.job_id, 0, "dead", duration_ms=60_000.0, error=problem)
    finally:
        gallery.engine.dispose()

    page = open_page("ada")
    page.goto("/jobs")
    letter = page.locator(f'#dead tr[data-job-id="{job.job_id}"]')
    expect(letter.locator("td.error")).to_have_text("Upstream unavailable: Triton did not answer in 60 s")
    expect(page.locator(f'#jobs tr[data-job-id="{job.job_id}"] td.state')).to_have_text("failed")
    letter.get_by_role("button", name=f"Retry job {job.job_id} item 0").click()

    row = page.locator(f'#jobs tr[data-job-id="{job.job_id}"]')
    expect(row.locator("td.state")).to_have_text("done", timeout=JOB_TIMEOUT_MS)
    expect(row.locator(".percent")).to_have_text("100 %")
    expect(letter).to_have_count(0)
    (item,) = api.get(f"/v1/jobs/{job.job_id}/items").json()["items"]
    assert (item["state"], item["error"]) == ("done", None)
    assert "Obama" in (item["recognised"] or ""), item


def test_an_unfinished_job_is_cancelled_from_its_page(
    open_page: Callable[..., Any], api: httpx.Client, web_stack: Stack, photos: Path
) -> None:
    # Stored without its messages: no worker takes it before the sweep for lost messages
    # (30 s), so it is still queued when the button is pressed.
    gallery = Gallery(make_engine(web_stack.database_url))
    try:
        image = (photos / "biden.jpg").read_bytes()
        items = [NewItem(f"biden-{n}.jpg", [(f"biden-{n}.jpg", image)]) for n in range(3)]
        job = gallery.create_job("recognize", "low", "user:ada", {}, items)
    finally:
        gallery.engine.dispose()

    page = open_page("ada", viewport=PHONE)
    page.goto(f"/jobs/{job.job_id}")
    expect(page.locator("#job-state")).to_have_text("queued")
    expect(page.locator("#job-live")).to_contain_text("updating")
    expect(page.locator("article.job-item .badge")).to_have_text(["queued"] * 3)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel the job").click()
    expect(page.locator("#job-state")).to_have_text("cancelled")
    expect(page.locator("article.job-item .badge")).to_have_text(["cancelled"] * 3)
    expect(page.locator("#cancel")).to_be_hidden()
    assert api.get(f"/v1/jobs/{job.job_id}").json()["state"] == "cancelled"
