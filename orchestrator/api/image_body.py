"""An image route's one image: a multipart form's ``file`` part, or the whole request body.

A raw body (``Content-Type: image/jpeg`` and the like) skips the multipart parser and its
spooled file, work the server does on every upload. FastAPI reads one kind of body per
route, so these routes read their own (:func:`read_upload`) and the spec describes both
(:data:`REQUEST_BODY`). The form is read as FastAPI read it before: the same 400 for a
broken form and 422 for a missing or textual ``file`` part.

The declared image type only says that the body is an image: the bytes are sniffed, as a
form's file part is, and ``application/octet-stream`` means "sniff it". The size limit is
the request's (:class:`~orchestrator.api.request_context.RequestContext`), checked before
the body is read.
"""

from __future__ import annotations

import email.message
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from orchestrator.core.errors import ImageError, UnsupportedImage

IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/bmp")
RAW_TYPES = frozenset({*IMAGE_TYPES, "application/octet-stream"})
"""Content types of a body that is the image itself."""
FORM_TYPES = frozenset({"multipart/form-data", "application/x-www-form-urlencoded", ""})
"""Content types read as a form, as FastAPI reads them (none at all: an empty form)."""
FORM = "multipart/form-data"
REF = "#/components/schemas/"


class ImageForm(BaseModel):
    """The multipart form: the image as its ``file`` part."""

    file: UploadFile


@dataclass(frozen=True)
class Upload:
    """The image sent, and its file name when it came as a form's file part."""

    data: bytes
    filename: str | None


def media_type(content_type: str | None) -> str:
    """The type and subtype of a Content-Type header, lower case, without its parameters."""
    if not content_type:
        return ""
    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_type()


async def read_upload(request: Request) -> Upload:
    """The image of the request, by its content type: a body of its own, or a form's ``file``."""
    kind = media_type(request.headers.get("content-type"))
    if kind in RAW_TYPES:
        data = await request.body()
        if not data:
            raise ImageError(f"the body is empty: send the image's bytes as the {kind} body")
        return Upload(data, None)
    if kind not in FORM_TYPES:
        raise UnsupportedImage(
            f"a {kind} body is not an image: send {', '.join(IMAGE_TYPES)} as the body, "
            f"or {FORM} with the image as its file part"
        )
    form = await request.form()  # a broken form is Starlette's 400, as it was FastAPI's
    try:
        try:
            parsed = ImageForm.model_validate({"file": form["file"]} if "file" in form else {})
        except ValidationError as error:
            raise RequestValidationError(
                [{**item, "loc": ("body", *item["loc"])} for item in error.errors(include_url=False)]
            ) from None
        return Upload(await parsed.file.read(), parsed.file.filename)
    finally:
        await form.close()  # its spooled files: FastAPI closes only the forms it reads itself


ImageUpload = Annotated[Upload, Depends(read_upload)]

REQUEST_MODELS = (ImageForm,)
"""Put in the spec's components, where :data:`REQUEST_BODY` refers."""
REQUEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            FORM: {"schema": {"$ref": REF + ImageForm.__name__}},
            **{kind: {"schema": {"type": "string", "format": "binary"}} for kind in sorted(RAW_TYPES)},
        },
    }
}
"""The routes' ``openapi_extra``: the image as a form's file part, or as the body itself."""
