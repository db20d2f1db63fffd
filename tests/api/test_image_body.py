"""An image route's image as a multipart form's file part or as the whole body, in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from orchestrator.api.image_body import IMAGE_TYPES
from tests.api.conftest import MAX_BODY_BYTES, Api, assert_problem
from tests.api.fakes import png
from tests.api.test_spec import operations, spec_of

pytestmark = pytest.mark.unit

ROUTES = ["/v1/recognize", "/v1/detect", "/v1/people/{person_id}/faces"]
RAW_TYPES = {*IMAGE_TYPES, "application/octet-stream"}


def raw(image: bytes | AsyncIterator[bytes], content_type: str = "image/png") -> dict[str, Any]:
    return {"content": image, "headers": {"content-type": content_type}}


async def test_the_spec_describes_the_form_and_the_image_bodies(api: Api) -> None:
    spec = await spec_of(api)
    form = spec["components"]["schemas"]["ImageForm"]
    assert form["required"] == ["file"]
    assert form["properties"]["file"]["contentMediaType"] == "application/octet-stream"
    for template in ROUTES:
        operation = operations(spec)[("POST", template)]
        body = operation["requestBody"]
        assert body["required"] is True
        content = body["content"]
        assert content.keys() == {"multipart/form-data", *RAW_TYPES}, template
        assert content["multipart/form-data"]["schema"] == {"$ref": "#/components/schemas/ImageForm"}
        for kind in RAW_TYPES:
            assert content[kind]["schema"] == {"type": "string", "format": "binary"}, (template, kind)
        success = next(status for status in operation["responses"] if status.startswith("2"))
        assert "$ref" in operation["responses"][success]["content"]["application/json"]["schema"], template


@pytest.mark.parametrize("template", ROUTES)
async def test_a_body_answers_as_the_same_image_in_a_form(
    api: Api, admin: httpx.AsyncClient, template: str
) -> None:
    path = api.seeded.path(template)
    image = png()
    as_form = await admin.post(path, files={"file": ("face.png", image, "image/png")})
    as_body = await admin.post(path, **raw(image))
    sniffed = await admin.post(path, **raw(image, "application/octet-stream; x=1"))
    assert as_form.status_code == as_body.status_code == sniffed.status_code, as_body.text
    assert as_form.status_code in (200, 201), as_form.text
    if template == "/v1/recognize":
        assert as_body.json()["faces"][0]["matches"][0]["name"] == "Ada Lovelace"
        assert as_body.json()["faces"] == as_form.json()["faces"] == sniffed.json()["faces"]
    elif template == "/v1/detect":
        assert as_body.json() == as_form.json() == sniffed.json()
    else:
        assert as_body.json()["person_id"] == as_form.json()["person_id"] == api.seeded.person_id


@pytest.mark.parametrize("template", ROUTES)
async def test_a_body_that_is_no_image_is_refused(api: Api, admin: httpx.AsyncClient, template: str) -> None:
    path = api.seeded.path(template)
    for content_type in ("text/plain", "application/json", "image/gif"):
        refused = assert_problem(
            await admin.post(path, **raw(b'{"a": 1}', content_type)), 415, "not an image"
        )
        assert content_type in refused["detail"] and "multipart/form-data" in refused["detail"]
    assert_problem(await admin.post(path, **raw(b"", "image/jpeg")), 400, "the body is empty")
    assert_problem(await admin.post(path, **raw(b"this is text", "image/jpeg")), 415, "not a JPEG")
    assert_problem(await admin.post(path, **raw(png()[:-12])), 400)
    assert_problem(await admin.post(path, **raw(png() + bytes(MAX_BODY_BYTES))), 413, "limit")

    async def streamed() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield bytes(MAX_BODY_BYTES // 2)

    assert_problem(await admin.post(path, **raw(streamed(), "image/jpeg")), 413, "limit")


async def test_a_body_without_a_valid_key_is_refused_before_it_is_read(api: Api) -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(4):
            sent += 1
            yield png()

    async with api.client("frk_" + "C" * 43) as stranger:
        assert_problem(await stranger.post("/v1/recognize", **raw(body())), 401)
    assert sent == 0  # httpx's ASGI transport takes a chunk only when the app asks for one


async def test_a_form_is_read_as_before(admin: httpx.AsyncClient) -> None:
    missing = assert_problem(await admin.post("/v1/recognize", files={"other": ("a.png", png())}), 422)
    assert missing["errors"] == [{"loc": ["body", "file"], "msg": "Field required", "type": "missing"}]
    textual = assert_problem(await admin.post("/v1/detect", data={"file": "a.png"}), 422, "UploadFile")
    assert textual["errors"][0]["loc"] == ["body", "file"]
    assert_problem(await admin.post("/v1/recognize"), 422, "body.file")
    broken = {"content-type": "multipart/form-data; boundary=b"}
    assert_problem(
        await admin.post("/v1/recognize", content=b"--a\r\nnonsense", headers=broken), 400, "multipart"
    )
