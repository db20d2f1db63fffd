"""Steps shared by the end-to-end tests: enrol people from real photos, recognise others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx


def create_person(client: httpx.Client, name: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/people", json={"name": name, **fields})
    assert response.status_code == 201, response.text
    return dict(response.json())


def enrol(client: httpx.Client, person_id: int, photo: Path | bytes, **params: str) -> dict[str, Any]:
    data = photo if isinstance(photo, bytes) else photo.read_bytes()
    response = client.post(f"/v1/people/{person_id}/faces", files={"file": ("face.jpg", data)}, params=params)
    assert response.status_code == 201, response.text
    return dict(response.json())


def recognize(client: httpx.Client, photo: Path | bytes, **params: Any) -> dict[str, Any]:
    data = photo if isinstance(photo, bytes) else photo.read_bytes()
    response = client.post("/v1/recognize", files={"file": ("probe.jpg", data)}, params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def best_name(answer: dict[str, Any], face: int = 0) -> str | None:
    found = answer["faces"][face]
    return found["matches"][0]["name"] if found["decision"] == "match" else None


def gallery_snapshot(client: httpx.Client) -> tuple[Any, ...]:
    """What must not change on a rejected request: people, their faces, the generation, the index."""
    people = client.get("/v1/people", params={"limit": 500}).json()
    faces = {p["id"]: client.get(f"/v1/people/{p['id']}/faces").json()["items"] for p in people["items"]}
    detailed = client.get("/health/detailed").json()
    gallery = detailed["gallery"]
    return people["total"], people["items"], faces, gallery["generation"], gallery["index_checksum"]


def make_gallery(client: httpx.Client, photos: Path) -> dict[str, dict[str, Any]]:
    obama = create_person(client, "Barack Obama", external_id="potus-44", attributes={"party": "Democratic"})
    biden = create_person(client, "Joe Biden", external_id="potus-46", attributes={"age": 81})
    enrol(client, obama["id"], photos / "obama.jpg")
    enrol(client, obama["id"], photos / "obama2.jpg")
    enrol(client, biden["id"], photos / "biden.jpg")
    return {"obama": obama, "biden": biden}
