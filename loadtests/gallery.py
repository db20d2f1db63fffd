"""Gallery set-up through the public API, before load starts: people and their enrolled faces.

Idempotent: people are found by external id and only enrolled when they have no face yet,
so a second run against the same stack (or a Locust restart) changes nothing.
"""

from __future__ import annotations

import logging
from pathlib import Path

import httpx

from loadtests.probes import GALLERY

log = logging.getLogger(__name__)


def _find(client: httpx.Client, external_id: str) -> dict[str, object] | None:
    response = client.get("/v1/people", params={"q": external_id, "limit": 50})
    response.raise_for_status()
    for person in response.json()["items"]:
        if person["external_id"] == external_id:
            return dict(person)
    return None


def ensure_gallery(base_url: str, admin_key: str, photos: Path, timeout_s: float = 120.0) -> dict[str, int]:
    """Create the gallery's people and enrol their photos; returns person id by name."""
    ids: dict[str, int] = {}
    with httpx.Client(base_url=base_url, headers={"X-API-Key": admin_key}, timeout=timeout_s) as client:
        for person in GALLERY:
            found = _find(client, person.external_id)
            if found is None:
                response = client.post(
                    "/v1/people", json={"name": person.name, "external_id": person.external_id}
                )
                response.raise_for_status()
                found = dict(response.json())
            person_id = int(str(found["id"]))
            if int(str(found["face_count"])) == 0:
                for name in person.enrol_from:
                    data = (photos / name).read_bytes()
                    response = client.post(
                        f"/v1/people/{person_id}/faces",
                        files={"file": (name, data, "image/jpeg")},
                        params={"pick": "largest"},
                    )
                    response.raise_for_status()
            ids[person.name] = person_id
    log.info("gallery ready at %s: %s", base_url, ids)
    return ids
