"""The web app in a real browser: Debian's chromium driven by Playwright against a real stack.

One stack for the package (Triton, search service, Redis as cache and broker, a job worker,
SQLite), with two users: ``ada`` (admin) and ``rex`` (recognize). Each test gets a fresh
browser context; a page error (an uncaught exception in the page's script) fails the test.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis
from playwright.sync_api import Browser, BrowserContext, Page, ViewportSize, sync_playwright

from orchestrator.runtime.triton_server import TritonServer
from tests.conftest import unavailable
from tests.support.stack import Stack, redis_url, sqlite_url

CHROMIUM = os.environ.get("FACEREC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    # As root in a container there is no user namespace for chromium's sandbox.
    "--no-sandbox",
    "--disable-gpu",
    # Without these chromium dials Google's hosts at start, which this machine's network refuses.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
USERS = {"ada": ("admin", "ada-password-1"), "rex": ("recognize", "rex-password-1")}
DESKTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(scope="package")
def web_stack(triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    broker = redis_url()
    queues = redis.Redis.from_url(broker)
    for key in [*queues.scan_iter("facerec.jobs.*"), "unacked", "unacked_index"]:
        queues.delete(key)  # messages an earlier run left
    root = tmp_path_factory.mktemp("web")
    with Stack(root, triton_server, os.environ.get("DATABASE_URL") or sqlite_url(root), broker) as running:
        with running.client() as admin:
            for username, (role, password) in USERS.items():
                user = {"username": username, "password": password, "role": role}
                made = admin.post("/v1/users", json=user)
                assert made.status_code == 201, made.text
        worker = running.job_worker("web-worker", concurrency=4).start().wait_ready()
        try:
            yield running
        finally:
            worker.stop()


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).is_file() and not shutil.which(CHROMIUM):
        unavailable(f"no chromium at {CHROMIUM} (Debian's package chromium; `make tools` installs it)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def open_page(browser: Browser, web_stack: Stack) -> Iterator[Callable[..., Page]]:
    """``open_page(user=None, viewport=DESKTOP)``: a page in a new context, signed in as
    ``user`` through the API (the sign-in form has a test of its own)."""
    contexts: list[BrowserContext] = []
    errors: list[str] = []

    def opened(user: str | None = None, viewport: ViewportSize = DESKTOP) -> Page:
        context = browser.new_context(base_url=web_stack.url, viewport=viewport)
        contexts.append(context)
        if user is not None:
            answer = context.request.post(
                "/v1/auth/login", data={"username": user, "password": USERS[user][1]}
            )
            assert answer.status == 200, answer.text()
        page = context.new_page()
        page.set_default_timeout(30_000)
        page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
        return page

    yield opened
    for context in contexts:
        context.close()
    assert not errors, f"errors in the pages' scripts: {errors}"


@pytest.fixture
def api(web_stack: Stack) -> Iterator[httpx.Client]:
    """The admin key's client, to set up and check what the pages did."""
    with web_stack.client() as client:
        yield client
