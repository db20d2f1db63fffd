"""The Models page in a real browser: a rollout to a second embedder version started from the
page and followed live to ``done``, then rolled back from the page.

Rollouts load and unload versions in Triton and write the version policy into its
repository, so this module has its own: a private copy of the model store with a derived
version, its own Triton and stack. The package's shared stack is left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.modelrepo.importer import derive
from orchestrator.runtime.triton_env import TritonEnvironment
from tests.conftest import local_triton
from tests.e2e.flows import create_person, enrol
from tests.support.stack import Stack, redis_url, sqlite_url
from tests.support.stores import linked_copy
from tests.web.conftest import DESKTOP, USERS

pytestmark = pytest.mark.integration

ROLLOUT_TIMEOUT_MS = 240_000
"""Loading a version, re-embedding and draining, on a machine shared with other tests."""
RECORD_STATES = """() => {
  window.seenStates = [];
  const state = document.getElementById('rollout-state');
  new MutationObserver(() => {
    const now = state.textContent;
    if (window.seenStates[window.seenStates.length - 1] !== now) window.seenStates.push(now);
  }).observe(state, { childList: true, characterData: true, subtree: true });
}"""
"""Every state the page shows, in order: what it showed live, not only where it ended."""


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stack's data dir: its ``models/`` is the private store its Triton serves."""
    return tmp_path_factory.mktemp("models-page")


@pytest.fixture(scope="module")
def second_version(model_store: ModelStore, root: Path) -> tuple[ModelStore, str]:
    store = linked_copy(model_store, root / "models")
    return store, str(derive(store, "rotated"))


@pytest.fixture(scope="module")
def stack(
    second_version: tuple[ModelStore, str], triton_env: TritonEnvironment, root: Path
) -> Iterator[Stack]:
    with local_triton(second_version[0], triton_env, root) as triton:
        env = {"FACEREC_TRITON__METRICS_URL": triton.metrics_url, "FACEREC_ROLLOUT__BATCH": "8"}
        with Stack(root, triton, sqlite_url(root), redis_url(), api_env=env) as running:
            with running.client() as admin:
                role, password = USERS["ada"]
                made = admin.post("/v1/users", json={"username": "ada", "password": password, "role": role})
                assert made.status_code == 201, made.text
            yield running


@pytest.fixture(scope="module")
def gallery(stack: Stack, photos: Path) -> dict[str, int]:
    """A few faces, for the rollout to re-embed."""
    with stack.client() as admin:
        obama = create_person(admin, "Barack Obama")["id"]
        biden = create_person(admin, "Joe Biden")["id"]
        for person, photo in ((obama, "obama.jpg"), (obama, "obama2.jpg"), (biden, "biden.jpg")):
            enrol(admin, person, photos / photo)
    return {"obama": obama, "biden": biden}


@pytest.fixture
def admin_page(browser: Any, stack: Stack) -> Iterator[Any]:
    """A page of this module's stack, signed in as ada; an error in its script fails the test."""
    context = browser.new_context(base_url=stack.url, viewport=DESKTOP)
    errors: list[str] = []
    try:
        answer = context.request.post("/v1/auth/login", data={"username": "ada", "password": USERS["ada"][1]})
        assert answer.status == 200, answer.text()
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        yield page
    finally:
        context.close()
    assert not errors, f"errors in the page's script: {errors}"


def active_version(stack: Stack) -> str:
    with stack.client() as admin:
        version: str = admin.get("/v1/models").json()["active"]["version"]
    return version


def test_a_rollout_started_on_the_page_is_followed_live_to_done_then_rolled_back(
    admin_page: Any, stack: Stack, second_version: tuple[ModelStore, str], gallery: dict[str, int]
) -> None:
    page, new = admin_page, second_version[1]
    page.goto("/models")
    expect(page.locator("#active-version")).to_have_text("arcface version 1")
    with stack.client() as admin:  # the session's store may hold other derived versions already
        listed = [v["version"] for v in admin.get("/v1/models").json()["versions"]]
    assert {"1", new} <= set(listed)
    expect(page.locator("#versions tbody tr")).to_have_count(len(listed))
    expect(page.locator('#versions tr[data-version="1"]')).to_contain_text("active")
    expect(page.locator(f'#versions tr[data-version="{new}"]')).to_contain_text("derived")
    expect(page.locator("#no-rollout")).to_be_visible()

    page.evaluate(RECORD_STATES)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Roll out version {new}").click()
    expect(page.locator("#rollout-state")).to_have_text("done", timeout=ROLLOUT_TIMEOUT_MS)
    seen = page.evaluate("() => window.seenStates")
    assert (
        seen[-1] == "done"
        and len(seen) >= 2
        and set(seen[:-1])
        <= {
            "pending",
            "loading",
            "reembedding",
            "switching",
            "draining",
        }
    ), seen
    expect(page.locator("#rollout-what")).to_contain_text(f"Version 1 → {new}")
    assert page.locator("#rollout-progress").evaluate("(bar) => bar.value") == 100
    expect(page.locator("#rollout-steps li.past")).to_have_count(6)
    expect(page.locator("#active-version")).to_have_text(f"arcface version {new}")
    assert active_version(stack) == new
    forward = int(page.locator("#history tbody tr").first.get_attribute("data-rollout-id") or 0)

    # Shown again, the page finds the latest rollout by itself and offers its rollback.
    page.reload()
    expect(page.locator("#rollout-state")).to_have_text("done")
    page.evaluate(RECORD_STATES)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Roll back").click()
    expect(page.locator("#rollout-what")).to_contain_text(f"(rolls back rollout {forward})")
    expect(page.locator("#rollout-state")).to_have_text("done", timeout=ROLLOUT_TIMEOUT_MS)
    expect(page.locator("#rollout-what")).to_contain_text(f"Version {new} → 1")
    assert len(page.evaluate("() => window.seenStates")) >= 2, "the rollback was followed live too"
    expect(page.locator("#active-version")).to_have_text("arcface version 1")
    expect(page.locator(f'#history tr[data-rollout-id="{forward}"]')).to_contain_text("rolled back")
    expect(page.locator("#rollback")).to_be_visible()  # the rollback may itself be undone
    assert active_version(stack) == "1"

    with stack.client() as admin:
        listed = admin.get("/v1/models/rollouts").json()
    assert [(r["state"], r["to_version"]) for r in listed["items"]] == [("done", "1"), ("rolled_back", new)]


def test_a_failed_rollout_is_shown_with_its_error_in_words(
    admin_page: Any, stack: Stack, second_version: tuple[ModelStore, str], gallery: dict[str, int]
) -> None:
    page = admin_page
    page.goto("/models")
    expect(page.locator("#active-version")).to_have_text("arcface version 1")
    with stack.client() as admin:  # started elsewhere: the page finds it when shown again
        started = admin.post("/v1/models/rollouts", json={"version": "99"})
        assert started.status_code == 202, started.text
        rollout_id = started.json()["rollout_id"]
    page.reload()
    expect(page.locator("#rollout-what")).to_contain_text(f"Rollout {rollout_id}: Version 1 → 99")
    # Version 99 is in no repository: it fails, is undone, and the page says why.
    expect(page.locator("#rollout-state")).to_have_text("failed", timeout=ROLLOUT_TIMEOUT_MS)
    expect(page.locator("#rollout-error")).to_contain_text("It failed and was undone:")
    expect(page.locator("#rollout-error")).to_contain_text("99")
    expect(page.locator("#rollback")).to_be_hidden()
    expect(page.get_by_role("button", name=f"Roll out version {second_version[1]}")).to_be_enabled()
    assert active_version(stack) == "1"
