"""The OpenAPI spec fuzzed against the app in-process: no 5xx, and nothing the spec does not say.

Schemathesis reads /openapi.json from the real app (the harness of :mod:`tests.api.conftest`:
SQLite gallery, fakes for Triton and the search service) and sends it what the spec allows
and what it forbids, through ASGI, with every check it has: no server error, only
documented statuses, content types, bodies and headers, schema-valid requests accepted and
invalid ones refused, auth enforced (it probes each keyed route without the key and with a
wrong one), 405 with a full ``Allow`` for undeclared methods. It does so as an admin, with a
recognize key (admin routes: 403), as a recognize user signed in by session (cookie and CSRF
token) and with no key or a stranger's (401).

The run is fixed (a seed, derandomized, a bounded number of examples per operation), so it
finds the same thing on every machine; on the code before ``api/params.py`` bounded ids it
finds the 500s of a person id or offset of 2**63.

What a spec cannot say: that a file part, or a body sent as image/*, is an image. Where the
body is meant to be valid, its files (or the body) are real images (:func:`images_for_files`);
the run for the upload routes keeps schemathesis's own bytes (empty, random, 1x1 pixel
samples, PDF), which the server refuses with a documented 400 or 415, so there only the
check that valid data is accepted is off.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import negative_data_rejection, positive_data_acceptance
from schemathesis.core.parameters import ParameterLocation
from schemathesis.transport.serialization import Binary
from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.api.app import create_app
from orchestrator.api.deps import CSRF_HEADER, SESSION_COOKIE
from orchestrator.api.image_body import RAW_TYPES
from orchestrator.core.settings import Settings
from orchestrator.jobs.queue import QUEUES, make_celery
from tests.api.conftest import Api, Seeded

pytestmark = pytest.mark.unit

SEED = 20240612


def fuzz(examples: int) -> settings:
    """Generated requests per operation (the coverage phase's boundary cases come on top).

    50 as an admin is what it takes to reach an id of 2**63 in a path on the old code: 30 found
    only the offset.
    """
    return settings(
        max_examples=examples,
        derandomize=True,
        database=None,
        deadline=None,
        # One app and gallery per operation, shared by its examples, as a client's session is.
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


OCTETS = "application/octet-stream"
# Schemathesis sends image/jpeg, png and webp bodies as bytes; BMP it does not know.
schemathesis.serializer.alias("image/bmp", OCTETS)
UPLOADS = r"^/v1/(recognize|recognize/batch|verify|detect|people/\{person_id\}/faces)$"


def _images() -> list[bytes]:
    """Valid images of every accepted format, at and just above the decoder's shortest side.

    Small (under 1 KiB each), so that a batch of 16 stays well inside a request's size limit.
    """
    images = []
    for extension, (height, width) in zip(
        (".png", ".jpg", ".webp", ".bmp"), [(16, 16), (16, 24), (17, 16), (16, 16)], strict=True
    ):
        gradient = np.add.outer(np.arange(height), np.arange(width)).astype(np.uint8) * 7
        ok, encoded = cv2.imencode(extension, np.dstack([gradient, gradient[::-1], 255 - gradient]))
        assert ok, extension
        images.append(encoded.tobytes())
    return images


IMAGES = _images()
IMAGE_OF_TYPE = dict(zip(("image/png", "image/jpeg", "image/webp", "image/bmp"), IMAGES, strict=True))


def _zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


JOB_ARCHIVES = {
    "recognize": _zipped({f"image-{n}.img": image for n, image in enumerate(IMAGES)}),
    "enrol": _zipped({"people.csv": b"external_id,name,photos\nfuzz-1,Fuzz,a.png\n", "a.png": IMAGES[0]}),
}
"""A job's archive, by the job's kind: images to recognise, or people.csv and a photo to enrol."""


def job_with_work(body: dict[str, Any]) -> dict[str, Any]:
    """A job's body with what its kind needs, which its schema cannot require: an archive to
    enrol; images (files, or an archive) to recognise."""
    if body.get("kind") == "enrol":
        body.setdefault("archive", Binary(JOB_ARCHIVES["enrol"]))
    elif not body.get("files") and "archive" not in body:
        body["files"] = [Binary(IMAGES[0])]
    return body


def images_for_files(context: schemathesis.HookContext, case: schemathesis.Case) -> schemathesis.Case:
    """The file parts of an upload meant to be valid become images, and so does a body that is
    the image itself; a job's archive becomes a zip of what its kind takes, and a job without
    its images or archive gets them (:func:`job_with_work`).

    Which image is picked from the bytes that were generated (a body's: by its type), so the
    run stays deterministic.
    The case keeps the validity it was generated with: schemathesis cannot validate bytes, and
    re-judging a body it cannot read would turn every case with an image into a negative one.
    """
    meta = case.meta
    if meta is None or meta.is_negative_at(ParameterLocation.BODY):
        return case
    if case.media_type in RAW_TYPES:  # the image as the whole body: one of the type declared
        case.body = Binary(IMAGE_OF_TYPE.get(case.media_type, IMAGES[0]))
        meta.clear_dirty(ParameterLocation.BODY)
        return case
    if case.media_type != "multipart/form-data" or not isinstance(case.body, dict):
        return case

    def image(generated: object) -> Binary:
        data = generated.data if isinstance(generated, Binary) else str(generated).encode()
        return Binary(IMAGES[zlib.crc32(data) % len(IMAGES)])

    kind = case.body.get("kind")

    def part(name: str, value: object) -> object:
        if name == "archive":  # a job's: a zip of what its kind takes
            return Binary(JOB_ARCHIVES.get(str(kind), JOB_ARCHIVES["recognize"]))
        if name not in FILE_PARTS:
            return value  # a text field, or one the spec does not declare (the server ignores it)
        return [image(item) for item in value] if isinstance(value, list) else image(value)

    case.body = {name: part(name, value) for name, value in case.body.items()}
    if case.path == "/v1/jobs":
        case.body = job_with_work(case.body)
    meta.clear_dirty(ParameterLocation.BODY)
    return case


def in_process(app: ASGIApp) -> ASGIApp:
    """The app without its lifespan (which would open Triton, search, Redis): the harness sets it up."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)

    return serve


# One app for the whole module, as schemathesis binds its operations to the app it loaded the
# spec from; each test gives it the resources (and the fresh gallery) of the harness's own. Its
# body limit is the default: the harness's 16 KiB would refuse large but valid bodies, and the
# 413 is tested in test_problems.
APP = create_app(Settings(data_dir=Path("unused")))
FILE_PARTS = {
    name
    for schema in APP.openapi()["components"]["schemas"].values()
    for name, field in schema.get("properties", {}).items()
    if OCTETS in (field.get("contentMediaType"), field.get("items", {}).get("contentMediaType"))
}
"""The form fields that carry a file, as the spec declares them."""


def spec_of(*, boundaries: bool = True) -> schemathesis.BaseSchema:
    """The spec as the app serves it; ``boundaries``: with the coverage phase's edge cases."""
    config = {
        "seed": SEED,
        "generation": {
            "mode": "all",
            "deterministic": True,
            # The key is sent by each test (its role's); schemathesis probes without it and with
            # a wrong one itself (ignored_auth), so it does not invent keys of its own.
            "with-security-parameters": False,
        },
        "phases": {"coverage": {"enabled": boundaries}},
    }
    return schemathesis.openapi.from_asgi(
        "/openapi.json", in_process(APP), config=schemathesis.config.SchemathesisConfig.from_dict(config)
    )


spec = spec_of()
spec.hook("map_case")(images_for_files)
keyless = spec_of(boundaries=False)
uploads = spec_of().include(path_regex=UPLOADS)


@pytest.fixture
def served(api: Api) -> Iterator[Seeded]:
    """The module's app serving the gallery and fakes of this test's harness, and a broker (Celery
    on kombu's in-memory transport): without one the jobs routes answer 503, a server error."""
    broker = make_celery("memory://")
    APP.state.resources = replace(api.app.state.resources, jobs=broker)
    try:
        yield api.seeded
    finally:
        del APP.state.resources
        with broker.connection_for_write() as connection:  # the transport's queues are the process's
            for queue in QUEUES:
                connection.default_channel.queue_purge(queue)
        broker.close()


def refused_in_the_answer(case: schemathesis.Case) -> list[Any]:
    """The checks a batch whose only fault is its body cannot pass: a file part "of the wrong type"
    still goes as bytes, and a batch answers a file that is not an image with its problem in
    its place, in a 200 (the whole batch is refused only when its form is: too many files, none)."""
    meta = case.meta
    if case.path != "/v1/recognize/batch" or meta is None or not meta.is_negative_at(ParameterLocation.BODY):
        return []
    others = (ParameterLocation.QUERY, ParameterLocation.PATH, ParameterLocation.HEADER)
    return [] if any(meta.is_negative_at(location) for location in others) else [negative_data_rejection]


@spec.parametrize()
@fuzz(examples=50)
def test_an_admin_gets_only_what_the_spec_says(served: Seeded, case: schemathesis.Case) -> None:
    case.call_and_validate(
        headers={"X-API-Key": served.admin_key}, excluded_checks=refused_in_the_answer(case)
    )


@spec.parametrize()
@fuzz(examples=20)
def test_a_recognize_key_gets_only_what_the_spec_says(served: Seeded, case: schemathesis.Case) -> None:
    """Admin routes answer 403, which their routers declare; the rest as for an admin."""
    case.call_and_validate(headers={"X-API-Key": served.recognize_key})


@keyless.parametrize()
@fuzz(examples=5)
def test_without_a_valid_key_only_the_probes_answer(served: Seeded, case: schemathesis.Case) -> None:
    """A keyed route answers a documented 401 (with WWW-Authenticate), keyless or to a stranger."""
    case.call_and_validate()
    case.call_and_validate(headers={"X-API-Key": "frk_" + "A" * 43})


@uploads.parametrize()
@fuzz(examples=25)
def test_uploads_that_are_not_images_get_a_documented_refusal(
    served: Seeded, case: schemathesis.Case
) -> None:
    case.call_and_validate(
        headers={"X-API-Key": served.admin_key}, excluded_checks=[positive_data_acceptance]
    )


@spec.parametrize()
@fuzz(examples=5)
def test_a_signed_in_user_gets_only_what_the_spec_says(served: Seeded, case: schemathesis.Case) -> None:
    """A recognize user's session cookie and CSRF token: as for a recognize key (admin routes 403)."""
    gallery = APP.state.resources.gallery
    found = gallery.credentials(served.recognize_user)
    assert found is not None
    session = gallery.start_session(found.user.id, timedelta(hours=1))
    case.call_and_validate(
        cookies={SESSION_COOKIE: session.token},
        headers={CSRF_HEADER: session.csrf_token},
        excluded_checks=refused_in_the_answer(case),
    )
