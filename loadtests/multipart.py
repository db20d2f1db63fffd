"""A one-file multipart/form-data body: FastHttpUser (geventhttpclient) has no ``files=``."""

from __future__ import annotations

from urllib3 import encode_multipart_formdata


def multipart(field_name: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """→ (body, Content-Type header value with its boundary)."""
    return encode_multipart_formdata({field_name: (filename, data, "application/octet-stream")})
