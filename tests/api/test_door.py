"""The door: the key and admission are settled before one byte of an image request's body is read.

Requests here are ASGI calls made by hand, so the test sees exactly how much of the body
the app asked for: the upload's ``receive`` counts the bytes it handed out, and it never
sends the whole body (after its first chunk it reports the client gone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

import httpx
import pytest
from starlette.types import Message

from orchestrator.api import problems
from orchestrator.api.admission import Admission
from orchestrator.api.deps import SESSION_COOKIE
from orchestrator.core.resources import Resources
from orchestrator.recognition.service import Recognition
from tests.api.conftest import PROBLEM_JSON, Api, assert_problem
from tests.api.fakes import png

pytestmark = pytest.mark.unit

BOUNDARY = "door-test-boundary"
IMAGE_ROUTES = [
    "/v1/recognize",
    "/v1/recognize/batch",
    "/v1/verify",
    "/v1/detect",
    "/v1/people/{person_id}/faces",
]
UNKNOWN_KEY = "frk_" + "B" * 43


def multipart(*fields: str, image: bytes = png()) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="f.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + image
        + b"\r\n"
        for name in fields
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


@dataclass
class Upload:
    """An ASGI ``receive`` for a body sent in chunks; counts the body bytes the app took.

    With ``complete=False`` the client never sends more than its first chunk: asked again,
    it has gone.
    """

    body: bytes
    complete: bool = True
    chunk: int = 1024
    read: int = 0

    async def __call__(self) -> Message:
        if not self.complete and self.read > 0:
            return {"type": "http.disconnect"}
        piece = self.body[self.read : self.read + self.chunk]
        self.read += len(piece)
        return {"type": "http.request", "body": piece, "more_body": self.read < len(self.body)}


@dataclass
class Answer:
    status: int = 0
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    body: bytes = b""

    def json(self) -> Any:
        return httpx.Response(self.status, headers=self.headers, content=self.body).json()


async def call(
    api: Api, path: str, upload: Upload, key: str | None, more: Mapping[str, str] | None = None
) -> Answer:
    """POST ``upload`` to ``path`` as a multipart form, straight through the ASGI app."""
    headers = [
        (b"host", b"test"),
        (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
        (b"content-length", str(len(upload.body)).encode()),
        *([(b"x-api-key", key.encode())] if key is not None else []),
        *((name.encode(), value.encode()) for name, value in (more or {}).items()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("test", 80),
    }
    answer = Answer()

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status = message["status"]
            answer.headers = httpx.Headers([(k.decode(), v.decode()) for k, v in message["headers"]])
        else:
            answer.body += message.get("body", b"")

    await api.app(scope, upload, send)
    return answer


def assert_problem_answer(answer: Answer, status: int) -> dict[str, Any]:
    assert answer.status == status, answer.body
    assert answer.headers["content-type"].split(";")[0] == PROBLEM_JSON
    problem = answer.json()
    assert problem["status"] == status and problem["request_id"] == answer.headers["x-request-id"]
    return dict(problem)


def never_finished(path: str) -> Upload:
    """A form for ``path`` (as many files as it takes) whose client stops after its first chunk."""
    fields = {"/v1/recognize/batch": ("files", "files"), "/v1/verify": ("file1", "file2")}
    return Upload(multipart(*fields.get(path, ("file",)), image=png(256, 256)), complete=False)


def admission(api: Api) -> Admission:
    return cast(Admission, api.app.state.admission)


@pytest.mark.parametrize("key", [None, UNKNOWN_KEY], ids=["no-key", "unknown-key"])
@pytest.mark.parametrize("template", IMAGE_ROUTES)
async def test_an_image_request_without_a_valid_key_is_401_before_its_body(
    api: Api, template: str, key: str | None
) -> None:
    upload = never_finished(template)
    answer = await call(api, api.seeded.path(template), upload, key)
    assert_problem_answer(answer, 401)
    assert answer.headers["www-authenticate"] == "X-API-Key"
    assert upload.read == 0
    assert admission(api).in_flight == 0


async def test_an_enrolment_with_a_recognize_key_is_403_before_its_body(api: Api) -> None:
    template = "/v1/people/{person_id}/faces"
    upload = never_finished(template)
    answer = await call(api, api.seeded.path(template), upload, api.seeded.recognize_key)
    assert "admin" in assert_problem_answer(answer, 403)["detail"]
    assert upload.read == 0


async def test_a_session_is_checked_with_its_csrf_token_before_the_body(api: Api) -> None:
    async with api.session(api.seeded.recognize_user) as ada:
        cookie = f"{SESSION_COOKIE}={ada.cookies[SESSION_COOKIE]}"
        csrf = ada.headers["X-CSRF-Token"]
    for more, status in [
        ({"cookie": cookie}, 403),
        ({"cookie": cookie, "x-csrf-token": "forged"}, 403),
        ({"cookie": f"{SESSION_COOKIE}=unknown", "x-csrf-token": csrf}, 401),
    ]:
        upload = never_finished("/v1/recognize")
        assert_problem_answer(await call(api, "/v1/recognize", upload, None, more), status)
        assert upload.read == 0
    signed = await call(
        api, "/v1/recognize", Upload(multipart("file")), None, {"cookie": cookie, "x-csrf-token": csrf}
    )
    assert signed.status == 200, signed.body


class ParkedRecognition:
    """Recognises as the fake does, but only once let go: holds its image in flight meanwhile."""

    def __init__(self, recognition: Any) -> None:
        self.recognition = recognition
        self.entered = asyncio.Event()
        self.go = asyncio.Event()

    async def recognize(self, image: bytes, **options: Any) -> Any:
        self.entered.set()
        await self.go.wait()
        return await self.recognition.recognize(image, **options)


async def until_entered(parked: ParkedRecognition, request: Awaitable[Answer]) -> asyncio.Task[Answer]:
    """Start ``request`` and return once it is parked inside the route (or has already answered)."""
    task = asyncio.ensure_future(request)
    entered = asyncio.ensure_future(parked.entered.wait())
    await asyncio.wait({task, entered}, return_when=asyncio.FIRST_COMPLETED)
    entered.cancel()
    assert parked.entered.is_set(), f"the request answered instead of parking: {task.result()}"
    return task


async def test_past_the_limit_503_with_retry_after_before_its_body(api: Api) -> None:
    admission(api).limit = 1
    resources: Resources = api.app.state.resources
    parked = ParkedRecognition(resources.recognition)
    api.app.state.resources = replace(resources, recognition=cast(Recognition, parked))
    key = api.seeded.recognize_key
    first = await until_entered(parked, call(api, "/v1/recognize", Upload(multipart("file")), key))
    assert admission(api).in_flight == 1

    for template in IMAGE_ROUTES:
        upload = never_finished(template)
        answer = await call(api, api.seeded.path(template), upload, api.seeded.admin_key)
        assert "busy" in assert_problem_answer(answer, 503)["detail"]
        assert int(answer.headers["retry-after"]) >= 1
        assert upload.read == 0, template

    parked.go.set()
    assert (await first).status == 200
    assert admission(api).in_flight == 0
    upload = Upload(multipart("file"))
    assert (await call(api, "/v1/recognize", upload, key)).status == 200
    assert upload.read == len(upload.body)


async def test_refusals_at_the_door_are_counted_under_their_route(api: Api) -> None:
    admission(api).limit = 0
    await call(api, "/v1/detect", never_finished("/v1/detect"), None)
    await call(api, "/v1/detect", never_finished("/v1/detect"), api.seeded.recognize_key)
    async with api.client() as anonymous:
        text = (await anonymous.get("/metrics")).text
    for status in (401, 503):
        assert f'route="/v1/detect",status="{status}"' in text, text


@pytest.mark.parametrize(("limit", "status"), [(2, 503), (3, 200)])
async def test_a_batch_counts_each_of_its_images(api: Api, limit: int, status: int) -> None:
    admission(api).limit = limit
    files = [("files", ("f.png", png(), "image/png"))] * 3
    async with api.client(api.seeded.recognize_key) as client:
        answer = await client.post("/v1/recognize/batch", files=files)
    if status == 503:
        assert "busy" in assert_problem(answer, 503)["detail"]
    else:
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["results"]) == 3
    assert admission(api).in_flight == 0


@pytest.mark.parametrize(("limit", "status"), [(1, 503), (2, 200)])
async def test_verify_counts_both_images(api: Api, limit: int, status: int) -> None:
    admission(api).limit = limit
    files = {"file1": ("a.png", png(), "image/png"), "file2": ("b.png", png(), "image/png")}
    async with api.client(api.seeded.recognize_key) as client:
        answer = await client.post("/v1/verify", files=files)
    assert answer.status_code == status, answer.text
    assert admission(api).in_flight == 0


async def test_other_keyed_routes_check_the_key_before_the_body_too(api: Api) -> None:
    upload = Upload(b'{"name": "' + b"x" * 4000 + b'"}', complete=False)
    answer = await call(api, "/v1/people", upload, None)
    assert_problem_answer(answer, 401)
    assert upload.read == 0


@pytest.mark.parametrize("key", [None, "recognize"], ids=["401", "503"])
async def test_a_refused_large_upload_closes_its_connection(
    api: Api, key: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading the rest of a large refused upload to keep the connection would let a flood of
    them take the server's CPU; a small one is read and dropped, keeping the connection."""
    monkeypatch.setattr(problems, "DRAIN_BYTES", 8192)  # under this app's body limit (16 KiB)
    admission(api).limit = 0
    secret = api.seeded.recognize_key if key else None
    small = await call(api, "/v1/recognize", never_finished("/v1/recognize"), secret)
    assert_problem_answer(small, 401 if key is None else 503)
    assert "connection" not in small.headers
    upload = Upload(multipart("file", image=png() + bytes(12000)), complete=False)
    large = await call(api, "/v1/recognize", upload, secret)
    assert_problem_answer(large, 401 if key is None else 503)
    assert large.headers["connection"] == "close" and upload.read == 0
    async with api.client() as anonymous:  # no body at all: nothing to drain
        listing = await anonymous.get("/v1/people")
    assert listing.status_code == 401 and "connection" not in listing.headers
