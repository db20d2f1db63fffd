"""Every page at desktop and phone width: no script error, nothing wider than a phone, every
control named for a screen reader and reachable by keyboard.

Each view is also saved as a PNG: into a temporary dir, or into ``FACEREC_SCREENSHOTS_DIR``
when it is set (``make screenshots`` writes the README's pictures under ``docs/screenshots``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.flows import create_person, enrol
from tests.support.stack import Stack
from tests.web.conftest import DESKTOP, PHONE
from tests.web.scenes import group_photo, wait_for_job

pytestmark = pytest.mark.integration

UNNAMED_CONTROLS = """() => [...document.querySelectorAll(
    'input:not([type=hidden]), select, textarea, button, a[href]')]
  .filter((node) => node.getClientRects().length > 0)
  .filter((node) => {
    const named = (node.labels && node.labels.length > 0) || node.getAttribute('aria-label')
      || node.getAttribute('aria-labelledby') || node.getAttribute('title')
      || (node.textContent || '').trim() || (node.type === 'submit' && node.value);
    return !named;
  })
  .map((node) => node.outerHTML.slice(0, 120))"""
UNDESCRIBED_IMAGES = """() => [...document.querySelectorAll('img')]
  .filter((image) => !image.hasAttribute('alt')).map((image) => image.outerHTML.slice(0, 120))"""
OVERFLOW = "() => document.documentElement.scrollWidth - window.innerWidth"


@pytest.fixture(scope="module")
def scene(
    web_stack: Stack, photos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """People with faces, a finished job and a group photo: pages with something on them."""
    with web_stack.client() as api:
        yield from _scene(api, photos, tmp_path_factory)


def _scene(
    api: httpx.Client, photos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    ann = create_person(api, "Barack Obama", age=62, gender="male", address="Chicago")
    joe = create_person(api, "Joe Biden", age=83, gender="male", address="Wilmington")
    for person, photo in ((ann, "obama.jpg"), (ann, "obama2.jpg"), (joe, "biden.jpg")):
        enrol(api, person["id"], photos / photo, force="true")  # other modules enrol them too
    files = [("files", (n, (photos / n).read_bytes(), "image/jpeg")) for n in ("obama3.jpg", "biden.jpg")]
    job = api.post("/v1/jobs", data={"kind": "recognize", "priority": "high"}, files=files)
    assert job.status_code == 202, job.text
    wait_for_job(api, job.json()["job_id"])
    group = tmp_path_factory.mktemp("scene") / "group.jpg"
    group.write_bytes(group_photo(photos))
    yield {"person": ann["id"], "job": job.json()["job_id"], "group": group}
    for person in (ann, joe):
        api.delete(f"/v1/people/{person['id']}")


def _views(scene: dict[str, Any]) -> list[tuple[str, str | None, str]]:
    """(name, user, path) of every page."""
    return [
        ("login", None, "/login"),
        ("recognise", "ada", "/recognise"),
        ("people", "ada", "/people"),
        ("person", "ada", f"/people/{scene['person']}"),
        ("jobs", "ada", "/jobs"),
        ("job", "ada", f"/jobs/{scene['job']}"),
        ("models", "ada", "/models"),
        ("dashboard", "ada", "/dashboard"),
        ("users", "ada", "/users"),
        ("account", "rex", "/account"),
    ]


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wanted = os.environ.get("FACEREC_SCREENSHOTS_DIR")
    folder = Path(wanted) if wanted else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize("width", ["desktop", "phone"])
def test_every_page_fits_names_its_controls_and_is_pictured(
    open_page: Callable[..., Any], scene: dict[str, Any], screenshots: Path, width: str
) -> None:
    viewport = DESKTOP if width == "desktop" else PHONE
    for name, user, path in _views(scene):
        page = open_page(user, viewport)
        answer = page.goto(path)
        assert answer is not None and answer.status == 200, (path, answer and answer.status)
        page.wait_for_load_state("networkidle")
        if name == "recognise":
            page.locator("input[type=file]").first.set_input_files(str(scene["group"]))
            page.locator("[data-face-index]").first.wait_for()
        assert page.locator("h1").count() >= 1, path
        assert page.evaluate(UNNAMED_CONTROLS) == [], f"{path}: controls without a name"
        assert page.evaluate(UNDESCRIBED_IMAGES) == [], f"{path}: images without alt"
        if width == "phone":
            assert page.evaluate(OVERFLOW) <= 1, f"{path} is wider than a phone"
        page.screenshot(path=str(screenshots / f"{name}-{width}.png"), full_page=True)
        problems = page.locator("#problem")
        assert problems.is_hidden(), f"{path}: {problems.inner_text()}"


def test_the_menu_is_reached_by_keyboard_in_order(open_page: Callable[..., Any]) -> None:
    page = open_page("ada")
    page.goto("/people")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.goto("/people")
    visited = []
    for _ in range(10):
        page.keyboard.press("Tab")
        visited.append(page.evaluate("document.activeElement.textContent.trim()"))
    menu = ["Recognise", "People", "Jobs", "Models", "Dashboard", "Users"]
    assert visited[: 2 + len(menu)] == ["Skip to content", "facerec", *menu]
