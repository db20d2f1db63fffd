"""The People and Person pages in a real browser: create with photos, filter, page, edit, delete."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.flows import create_person
from tests.web.conftest import PHONE

pytestmark = pytest.mark.integration

LISTED = "#people tbody td:first-child a"
CROPS_LOADED = """(count) => {
  const crops = [...document.querySelectorAll('#crops img')];
  return crops.length === count && crops.every((img) => img.complete && img.naturalWidth === 112);
}"""


@pytest.fixture
def token(api: httpx.Client) -> Iterator[str]:
    """A word in the names of this test's people, who are deleted after it."""
    word = f"pp{uuid.uuid4().hex[:8]}"
    yield word
    for person in api.get("/v1/people", params={"q": word, "limit": 500}).json()["items"]:
        api.delete(f"/v1/people/{person['id']}")


def test_an_admin_creates_a_person_with_two_photos_and_sees_two_crops(
    open_page: Callable[..., Any], api: httpx.Client, photos: Path, token: str
) -> None:
    page = open_page("ada")
    page.goto("/people")
    page.get_by_text("New person").click()
    form = page.locator("#create")
    form.get_by_label("Name", exact=True).fill(f"Barack Obama {token}")
    form.get_by_label("External id").fill(f"potus-44-{token}")
    form.get_by_label("Age").fill("64")
    form.get_by_label("Gender").fill("male")
    form.get_by_label("Address").fill("Washington, D.C.")
    form.get_by_label("Photos").set_input_files([str(photos / "obama.jpg"), str(photos / "obama2.jpg")])
    form.get_by_label("Enrol a face even if it matches another person").check()  # others may have him
    form.get_by_role("button", name="Create").click()
    page.wait_for_url(re.compile(r"/people/\d+$"))
    page.wait_for_function(CROPS_LOADED, arg=2)
    assert page.locator("h1").inner_text() == f"Barack Obama {token}"
    assert page.locator("dd[data-field=age]").inner_text() == "64"
    assert page.locator("dd[data-field=external_id]").inner_text() == f"potus-44-{token}"
    made = api.get(f"/v1/people/{page.url.rsplit('/', 1)[1]}").json()
    assert (made["name"], made["face_count"], made["gender"]) == (f"Barack Obama {token}", 2, "male")


def test_a_refused_creation_is_said_in_words_and_creates_nobody(
    open_page: Callable[..., Any], api: httpx.Client, tmp_path: Path, token: str
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    page = open_page("ada")
    page.goto("/people")
    page.get_by_text("New person").click()
    form = page.locator("#create")
    form.get_by_role("button", name="Create").click()
    assert form.get_by_role("alert").inner_text() == "A person needs a name."
    form.get_by_label("Name", exact=True).fill(f"Nobody {token}")
    form.get_by_label("Photos").set_input_files(str(notes))
    form.get_by_role("button", name="Create").click()
    alert = form.get_by_role("alert")
    expect(alert).to_contain_text("notes.txt")
    assert "image" in alert.inner_text().lower()
    assert page.url.endswith("/people")
    assert api.get("/v1/people", params={"q": token}).json()["total"] == 0


def test_people_are_filtered_by_age_and_paged_with_the_view_in_the_url(
    open_page: Callable[..., Any], api: httpx.Client, token: str
) -> None:
    ages = {"Ann": 39, "Bea": 40, "Cal": 47, "Dot": 60, "Eve": 61, "Fay": None}
    for first, age in ages.items():
        create_person(api, f"{first} {token}", age=age)
    page = open_page("ada")
    page.goto("/people")
    filters = page.get_by_role("search")
    filters.get_by_label("Name contains").fill(token)
    filters.get_by_label("Age from").fill("40")
    filters.get_by_label("Age to").fill("60")
    filters.get_by_role("button", name="Search").click()
    expect(page.locator("#count")).to_have_text("Showing 1–3 of 3")
    assert page.locator(LISTED).all_inner_texts() == [f"Bea {token}", f"Cal {token}", f"Dot {token}"]
    assert "age_min=40" in page.url and "age_max=60" in page.url and f"name={token}" in page.url

    page.reload()  # the view is the URL's
    expect(page.locator("#count")).to_have_text("Showing 1–3 of 3")
    assert filters.get_by_label("Age from").input_value() == "40"

    page.goto(f"/people?name={token}&limit=2")
    expect(page.locator("#count")).to_have_text("Showing 1–2 of 6")
    assert page.locator("#previous").is_hidden()
    page.get_by_role("link", name="Next").click()
    expect(page.locator("#count")).to_have_text("Showing 3–4 of 6")
    assert page.locator(LISTED).all_inner_texts() == [f"Cal {token}", f"Dot {token}"]
    assert "offset=2" in page.url
    page.go_back()
    expect(page.locator("#count")).to_have_text("Showing 1–2 of 6")
    page.go_forward()
    expect(page.locator("#count")).to_have_text("Showing 3–4 of 6")

    page.goto(f"/people?name={token}&age_min=61&age_max=40")
    expect(page.locator("#problem")).to_contain_text('"Age from" (61) is above "Age to" (40)')


def test_a_person_is_edited_given_photos_stripped_of_a_face_and_deleted(
    open_page: Callable[..., Any], api: httpx.Client, photos: Path, tmp_path: Path, token: str
) -> None:
    joe = create_person(api, f"Joe Biden {token}", age=80)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    page = open_page("ada")
    page.goto(f"/people/{joe['id']}")
    expect(page.locator("#face-count")).to_have_text("No face enrolled yet. Add photos below.")

    page.get_by_role("button", name="Edit").click()
    editor = page.locator("#editor")
    editor.get_by_label("Age").fill("81")
    editor.get_by_label("Address").fill("Wilmington")
    editor.get_by_role("button", name="Save").click()
    expect(page.locator("dd[data-field=address]")).to_have_text("Wilmington")
    assert editor.is_hidden()
    assert api.get(f"/v1/people/{joe['id']}").json()["age"] == 81

    add = page.locator("#add")
    add.get_by_label("Photos").set_input_files([str(photos / "biden.jpg"), str(notes)])
    add.get_by_label("Enrol a face even if it matches another person").check()
    add.get_by_role("button", name="Add photos").click()
    expect(add.locator("#add-results li")).to_have_count(2)
    assert add.locator("li[data-file='biden.jpg']").get_attribute("data-outcome") == "enrolled"
    refused = add.locator("li[data-file='notes.txt']")
    assert refused.get_attribute("data-outcome") == "refused"
    assert "image" in refused.inner_text().lower(), refused.inner_text()
    page.wait_for_function(CROPS_LOADED, arg=1)

    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("#crops").get_by_role("button", name=re.compile(r"Delete face \d+")).click()
    expect(page.locator("#face-count")).to_have_text("No face enrolled yet. Add photos below.")
    assert api.get(f"/v1/people/{joe['id']}/faces").json()["items"] == []

    page.get_by_role("button", name="Delete person").click()
    dialog = page.locator("#confirm-delete")
    expect(dialog).to_contain_text(f"Joe Biden {token} will be removed from the gallery")
    dialog.get_by_role("button", name="Keep").click()
    assert api.get(f"/v1/people/{joe['id']}").status_code == 200
    page.get_by_role("button", name="Delete person").click()
    dialog.get_by_role("button", name="Delete").click()
    page.wait_for_url("**/people")
    assert api.get(f"/v1/people/{joe['id']}").status_code == 404


def test_no_such_person_is_said_in_words(open_page: Callable[..., Any]) -> None:
    page = open_page("rex")
    page.goto("/people/987654321")
    expect(page.locator("#problem")).to_have_text(
        "No such person: there is no person 987654321 in the gallery."
    )
    assert page.locator("h1").inner_text() == "No such person"
    assert page.locator("#found").is_hidden()


def test_a_recognize_user_sees_no_admin_controls_and_is_refused_writes(
    open_page: Callable[..., Any], api: httpx.Client, token: str
) -> None:
    someone = create_person(api, f"Visible {token}", age=50)
    page = open_page("rex")
    page.goto(f"/people?q={token}")
    expect(page.locator(LISTED)).to_have_text([f"Visible {token}"])
    assert page.locator("#create").count() == 0 and page.get_by_text("New person").count() == 0
    page.goto(f"/people/{someone['id']}")
    expect(page.locator("h1")).to_have_text(f"Visible {token}")
    for name in ("Edit", "Delete person", "Add photos"):
        assert page.get_by_role("button", name=name).count() == 0, name
    refused = page.evaluate(
        """async () => {
          try { await facerec.api('POST', '/v1/people', { json: { name: 'Sneaked in' } }); return 'created'; }
          catch (error) { return error.status; }
        }"""
    )
    assert refused == 403
    assert api.get("/v1/people", params={"q": "Sneaked in"}).json()["total"] == 0


def test_the_people_pages_fit_a_phone(open_page: Callable[..., Any], api: httpx.Client, token: str) -> None:
    someone = create_person(api, f"Phone {token}", age=33, address="A long address, " * 6)
    page = open_page("ada", PHONE)
    page.goto(f"/people?q={token}")
    expect(page.locator(LISTED)).to_have_text([f"Phone {token}"])
    page.get_by_text("New person").click()
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    page.goto(f"/people/{someone['id']}")
    expect(page.locator("#face-count")).to_have_text("No face enrolled yet. Add photos below.")
    page.get_by_role("button", name="Edit").click()
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
