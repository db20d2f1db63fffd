"""A one-file multipart/form-data body: FastHttpUser (geventhttpclient) has no ``files=``."""

from __future__ import annotations

import uuid


def multipart(field_name: str, filename: str, data: bytes) -> tuple[bytes, str]:
    """→ (body, Content-Type header value with its boundary)."""
    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"
