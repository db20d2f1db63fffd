"""The orchestrator in-process: the real app, middleware, auth and SQLite gallery, no lifespan.

``httpx.ASGITransport`` runs no lifespan events, so nothing here opens a client to Triton,
the search service or Redis: the resources the lifespan would build are set by hand, with
the fakes of :mod:`tests.api.fakes` where a server would be needed. Each test gets its own
database, a copy of one migrated and seeded once, so a test may delete freely.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts

from orchestrator.accounts.users import add_user
from orchestrator.api.app import create_app
from orchestrator.clients.search import SearchClient
from orchestrator.clients.triton import TritonModels
from orchestrator.core.resources import Resources
from orchestrator.core.settings import ApiSettings, Settings
from orchestrator.db import Gallery, default_database_url, make_engine, migrate
from orchestrator.db.jobs import NewItem
from orchestrator.db.tables import PersonCreate
from orchestrator.gallery.enrolment import Enrolment
from orchestrator.gallery.index_sync import Reconciliation
from orchestrator.gallery.live_view import LiveView
from orchestrator.gallery.rollout import RolloutRunner
from orchestrator.gallery.score_keeper import ScoreKeeper
from orchestrator.jobs.queue import make_celery
from orchestrator.pipeline.face_pipeline import FacePipeline
from orchestrator.recognition.cache import RecognitionCache
from orchestrator.recognition.service import Recognition
from search_service.checksum import checksum_of_ids
from tests.api.fakes import (
    BOX,
    BrokenRecognition,
    Enrolled,
    FakeEnrolment,
    FakeRecognition,
    FakeRollouts,
    FakeSearch,
    FakeTriton,
    png,
)

ADMIN_KEY = "frk_in-process-admin-key-0123456789"
PASSWORD = "correct horse battery"
"""The password of every seeded user."""
MAX_BODY_BYTES = 16 * 1024
PROBLEM_JSON = "application/problem+json"


def served_routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, path template) of every route the app serves, included routers flattened.

    HEAD is left out: Starlette adds it to every GET route by itself.
    """
    return sorted(
        (method, str(context.path))
        for context in iter_route_contexts(app.routes)
        if context.path is not None
        for method in context.methods or ()
        if method != "HEAD"
    )


def raw_header(name: str, value: str | bytes) -> dict[bytes, bytes]:
    """One header; bytes are sent as they are, so a test can send what no client library would."""
    return {name.encode(): value if isinstance(value, bytes) else value.encode("ascii")}


def make_settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, api=ApiSettings(max_body_bytes=MAX_BODY_BYTES))


@dataclass(frozen=True)
class Seeded:
    """What every test's gallery starts with; path parameters are filled from it."""

    admin_key: str
    recognize_key: str
    spare_key: str
    """A recognize key that a test may revoke (DELETE /v1/keys/{key_id} names it)."""
    person_id: int
    face_id: int
    spare_key_id: int
    rollout_id: int
    job_id: int
    admin_user: str
    recognize_user: str
    spare_user_id: int
    """A recognize user that a test may delete (DELETE /v1/users/{user_id} names it)."""

    def path(self, template: str) -> str:
        return template.format(
            person_id=self.person_id,
            face_id=self.face_id,
            key_id=self.spare_key_id,
            rollout_id=self.rollout_id,
            job_id=self.job_id,
            index=0,
            user_id=self.spare_user_id,
        )


@dataclass
class Api:
    """The app under test and what its gallery was seeded with."""

    app: FastAPI
    seeded: Seeded

    def client(self, key: str | bytes | None = None) -> httpx.AsyncClient:
        """A client of the app, sending ``key`` as its X-API-Key (bytes: sent as they are)."""
        headers = {} if key is None else raw_header("X-API-Key", key)
        # A server error comes back as the 500 a real client would get (its stack is in the
        # captured log), not as the exception itself.
        transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
        return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)

    @asynccontextmanager
    async def session(self, username: str, password: str = PASSWORD) -> AsyncIterator[httpx.AsyncClient]:
        """A client signed in as the user: its cookies kept, its CSRF token sent on every request."""
        async with self.client() as client:
            answer = await client.post("/v1/auth/login", json={"username": username, "password": password})
            assert answer.status_code == 200, answer.text
            client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
            yield client


def seed(gallery: Gallery) -> Seeded:
    assert gallery.ensure_first_admin(ADMIN_KEY) == ADMIN_KEY
    _, recognize_key = gallery.create_key("kiosk", "recognize")
    spare, spare_key = gallery.create_key("spare", "recognize")
    person = gallery.create_person(PersonCreate(name="Ada Lovelace"))
    crop = png(112, 112)
    embedding = np.full(512, 1 / np.sqrt(512), np.float32)
    face = gallery.add_face(
        person.id,
        embedding=embedding,
        model_version="1",
        crop_png=crop,
        image_sha256=hashlib.sha256(crop).hexdigest(),
        quality=0.9,
        det_score=0.99,
        box=BOX,
    )
    rollout = gallery.start_rollout("1", "2", "arcface-v2-g1")
    gallery.update_rollout(rollout.rollout_id, state="done", progress=1.0)
    job = gallery.create_job("recognize", "normal", "key:1", {}, [NewItem("face.png", [("face.png", crop)])])
    add_user(gallery, "root", PASSWORD, "admin")
    add_user(gallery, "ada", PASSWORD, "recognize")
    spare_user = add_user(gallery, "spare-user", PASSWORD, "recognize")
    return Seeded(
        ADMIN_KEY,
        recognize_key,
        spare_key,
        person.id,
        face.face_id,
        spare.id,
        rollout.rollout_id,
        job.job_id,
        admin_user="root",
        recognize_user="ada",
        spare_user_id=spare_user.id,
    )


def build_resources(settings: Settings, gallery: Gallery, seeded: Seeded) -> Resources:
    enrolled = Enrolled(seeded.person_id, "Ada Lovelace", seeded.face_id)
    state = gallery.state()
    checksum = checksum_of_ids(gallery.face_ids(state.active_model_version))
    search = cast(SearchClient, FakeSearch(gallery, settings.embedding_dim))
    return Resources(
        settings=settings,
        gallery=gallery,
        triton=cast(TritonModels, FakeTriton()),
        search=search,
        # A cache without a URL is the real one, disabled: it answers every get with a miss.
        cache=RecognitionCache(None, ttl_s=settings.api.cache_ttl_s),
        pipeline=cast(FacePipeline, object()),  # no route calls it directly
        recognition=cast(Recognition, FakeRecognition(enrolled, settings.match_threshold)),
        enrolment=cast(Enrolment, FakeEnrolment(gallery, enrolled)),
        live=LiveView(gallery, settings.api.refresh_s, settings.match, settings.match_threshold),
        reconciliation=Reconciliation(state.active_collection, checksum, checksum, rebuilt=False),
        rollouts=cast(RolloutRunner, FakeRollouts(gallery)),
        # Over the fake index: no route here keeps scores (the fake enrolment keeps none).
        scores=ScoreKeeper(gallery, search, settings.match.neighbours),
        # Celery on kombu's in-memory transport: the messages are sent, no worker takes them.
        jobs=make_celery("memory://"),
    )


@pytest.fixture(scope="session")
def seeded_database(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Seeded]:
    """A migrated, seeded SQLite gallery, made once and copied for each test."""
    directory = tmp_path_factory.mktemp("seeded-gallery")
    engine = make_engine(default_database_url(directory))
    try:
        migrate(engine)
        seeded = seed(Gallery(engine))
    finally:
        engine.dispose()  # closing the last connection folds the WAL into the file
    return directory, seeded


@pytest.fixture
def api(tmp_path: Path, seeded_database: tuple[Path, Seeded]) -> Iterator[Api]:
    template, seeded = seeded_database
    for file in template.glob("facerec.db*"):
        shutil.copyfile(file, tmp_path / file.name)
    settings = make_settings(tmp_path)
    engine = make_engine(default_database_url(tmp_path))
    try:
        gallery = Gallery(engine)
        app = create_app(settings)
        app.state.resources = build_resources(settings, gallery, seeded)
        yield Api(app, seeded)
    finally:
        engine.dispose()


@pytest.fixture
def broken_api(api: Api) -> Api:
    """The same app with a recognition service that fails unexpectedly (a bug, not a refusal)."""
    resources: Resources = api.app.state.resources
    api.app.state.resources = replace(resources, recognition=cast(Recognition, BrokenRecognition()))
    return api


@pytest.fixture
async def admin(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client(api.seeded.admin_key) as client:
        yield client


@pytest.fixture
async def recognizer(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client(api.seeded.recognize_key) as client:
        yield client


@pytest.fixture
async def anonymous(api: Api) -> AsyncIterator[httpx.AsyncClient]:
    async with api.client() as client:
        yield client


def assert_problem(response: httpx.Response, status: int, detail_part: str = "") -> dict[str, Any]:
    """An RFC 9457 problem with this status, carrying the request id of its response."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].split(";")[0].strip() == PROBLEM_JSON, response.headers
    body = response.json()
    assert isinstance(body, dict), body
    assert isinstance(body.get("type"), str) and body["type"], body
    assert isinstance(body.get("title"), str) and body["title"], body
    assert body.get("status") == status, body
    assert isinstance(body.get("detail"), str), body
    assert body.get("request_id") == response.headers["x-request-id"], body
    assert detail_part.lower() in body["detail"].lower(), body
    assert "Traceback" not in response.text
    return dict(body)
