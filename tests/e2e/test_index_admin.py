"""Index administration on a real stack: a rebuild into another index kind under recognition
traffic, and the whole gallery deleted.

The stack is this module's own (SQLite, no shared gallery), since one test deletes everyone.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrator.clients.search import SearchClient, SearchServiceError
from orchestrator.db.tables import ROLLOUT_FINISHED
from orchestrator.runtime.triton_server import TritonServer
from tests.e2e.flows import create_person, enrol, recognize
from tests.support import augment
from tests.support.rollout_traffic import recognition_traffic
from tests.support.stack import ADMIN_KEY, Stack, redis_url, sqlite_url

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def own_stack(triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("index-admin")
    with Stack(root, triton_server, sqlite_url(root), redis_url()) as running:
        yield running


def probes(photos: Path) -> list[tuple[str, bytes]]:
    obama3 = (photos / "obama3.jpg").read_bytes()
    biden = (photos / "biden.jpg").read_bytes()
    return [
        ("Barack Obama", obama3),
        ("Joe Biden", augment.reencoded(biden, 50)),
        ("Barack Obama", augment.scaled(obama3, 0.6)),
        ("Joe Biden", augment.rotated_by_exif(biden)),
    ]


def enrol_both(client: httpx.Client, photos: Path) -> dict[str, int]:
    people = {name: create_person(client, name)["id"] for name in ("Barack Obama", "Joe Biden")}
    for name, photo in (
        ("Barack Obama", "obama.jpg"),
        ("Barack Obama", "obama2.jpg"),
        ("Joe Biden", "biden.jpg"),
    ):
        data = (photos / photo).read_bytes()
        enrol(client, people[name], data)
        enrol(client, people[name], augment.scaled(data, 0.7))
    return people


async def rebuild_under_traffic(
    stack: Stack, photos: Path
) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """Four clients recognise while the index is rebuilt; the records, the rebuild, its Location."""
    records: list[dict[str, Any]] = []
    stop = asyncio.Event()
    samples = probes(photos)
    workers = [
        asyncio.create_task(recognition_traffic(stack.url, samples[i:] + samples[:i], stop, records))
        for i in range(4)
    ]
    try:
        async with httpx.AsyncClient(
            base_url=stack.url, headers={"X-API-Key": ADMIN_KEY}, timeout=60.0
        ) as admin:
            await asyncio.sleep(2)
            started = await admin.post("/v1/index/rebuild")
            assert started.status_code == 202, started.text
            location = started.headers["location"]
            busy = await admin.post("/v1/index/rebuild")
            assert busy.status_code == 409, busy.text
            record = started.json()
            deadline = time.monotonic() + 180
            while record["state"] not in ROLLOUT_FINISHED and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                record = (await admin.get(location)).json()
            await asyncio.sleep(2)
    finally:
        stop.set()
        await asyncio.gather(*workers)
    return records, record, location


def test_a_rebuild_moves_the_gallery_to_the_configured_kind_under_traffic(
    own_stack: Stack, photos: Path
) -> None:
    with own_stack.client() as client:
        enrol_both(client, photos)
        before = client.get("/v1/index").json()
        assert before["index"] == "flat" and before["in_agreement"] is True and before["count"] == 6
        assert before["memory_bytes"] >= 6 * 512 * 4
    # New settings shape the collections made from now on; the live one stays as it is.
    own_stack.api.stop()
    own_stack.api.start(extra_env={"FACEREC_INDEX__KIND": "hnsw", "FACEREC_INDEX__EF_SEARCH": "32"})
    own_stack.api.wait_ready(own_stack.api_timeout_s)
    with own_stack.client() as client:
        assert client.get("/v1/index").json() == before

    records, rebuilt, location = asyncio.run(rebuild_under_traffic(own_stack, photos))

    assert rebuilt["state"] == "done" and rebuilt["kind"] == "rebuild", rebuilt
    assert location == f"/v1/models/rollouts/{rebuilt['rollout_id']}"
    assert rebuilt["from_collection"] == before["collection"] != rebuilt["collection"]
    failures = [r for r in records if r["status"] != 200]
    assert failures == [], failures[:3]
    wrong = [r for r in records if r["decision"] != "match" or r["name"] != r["expected"]]
    assert wrong == [], wrong[:3]
    assert len(records) > 8, "too little traffic to tell"
    print(f"\nrebuild under traffic: {len(records)} answers, {dict(Counter(r['name'] for r in records))}")
    with own_stack.client() as client:
        after = client.get("/v1/index").json()
    assert after["collection"] == rebuilt["collection"] and after["index"] == "hnsw"
    assert after["in_agreement"] is True and after["count"] == after["database_count"] == 6
    assert after["database_checksum"] == before["database_checksum"]

    async def old_collection_status() -> int:
        async with SearchClient([own_stack.search.url], token=own_stack.search.token) as search:
            try:
                await search.info(before["collection"])
            except SearchServiceError as error:
                return error.status
        return 200

    assert asyncio.run(old_collection_status()) == 404, "the old collection is dropped once done"


def test_deleting_everyone_leaves_an_empty_gallery_that_recognises_no_one(
    own_stack: Stack, photos: Path
) -> None:
    probe = photos / "obama3.jpg"
    with own_stack.client() as client:
        if client.get("/v1/people").json()["total"] == 0:
            enrol_both(client, photos)
        people = client.get("/v1/people", params={"limit": 500}).json()
        faces = client.get("/v1/index").json()["database_count"]
        assert faces > 0
        known = recognize(client, probe)
        assert known["faces"][0]["decision"] == "match"

        refused = client.delete("/v1/people")
        assert refused.status_code == 422, refused.text
        assert client.get("/v1/people").json()["total"] == people["total"]
        with own_stack.client(None) as anonymous:
            assert anonymous.delete("/v1/people", params={"confirm": "all"}).status_code == 401

        deleted = client.delete("/v1/people", params={"confirm": "all"})
        assert deleted.status_code == 200, deleted.text
        assert deleted.json() == {"people": people["total"], "faces": faces, "vectors": faces}
        assert client.get("/v1/people").json() == {"items": [], "total": 0}
        status = client.get("/v1/index").json()
        assert (status["count"], status["database_count"], status["in_agreement"]) == (0, 0, True)
        # The same request as before the delete: no cached answer outlives it.
        gone = recognize(client, probe)
        assert gone["cached"] is False
        assert [(f["decision"], f["matches"]) for f in gone["faces"]] == [("unknown", [])]
        for person in people["items"]:
            assert client.get(f"/v1/people/{person['id']}").status_code == 404

        # The collection was emptied, not dropped: the gallery fills again.
        again = create_person(client, "Barack Obama")
        face = enrol(client, again["id"], photos / "obama.jpg")
        found = recognize(client, probe)
        assert found["faces"][0]["decision"] == "match"
        assert found["faces"][0]["matches"][0]["face_id"] == face["face_id"]
        assert client.get("/v1/index").json()["collection"] == status["collection"]
