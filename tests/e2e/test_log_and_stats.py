"""The recognition log, the per-minute statistics and the health pages on the whole running stack."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.flows import create_person, enrol
from tests.support.stack import Stack

pytestmark = pytest.mark.integration


def post_recognize(client: httpx.Client, data: bytes, filename: str) -> httpx.Response:
    return client.post("/v1/recognize", files={"file": (filename, data)})


def logged(client: httpx.Client, request_ids: set[str], timeout_s: float = 10.0) -> dict[str, dict[str, Any]]:
    """The log entries of these requests, once the log writer has written them (it batches)."""
    deadline = time.monotonic() + timeout_s
    while True:
        items = client.get("/v1/log", params={"limit": 1000}).json()["items"]
        found = {item["request_id"]: item for item in items if item["request_id"] in request_ids}
        if len(found) == len(request_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_a_recognition_and_a_failed_one_are_in_the_log_and_the_stats(
    stack: Stack, admin: httpx.Client, photos: Path
) -> None:
    obama = create_person(admin, "Barack Obama")
    enrol(admin, obama["id"], photos / "obama.jpg")
    photo = (photos / "obama3.jpg").read_bytes()
    answered = post_recognize(admin, photo, "obama3.jpg")
    assert answered.status_code == 200, answered.text
    corrupt = post_recognize(admin, photo[: len(photo) // 3], "cut.jpg")
    assert corrupt.status_code == 400, corrupt.text
    ok_id, error_id = answered.headers["x-request-id"], corrupt.headers["x-request-id"]

    entries = logged(admin, {ok_id, error_id})
    assert entries.keys() == {ok_id, error_id}
    ok, error = entries[ok_id], entries[error_id]
    assert (ok["status"], ok["source"], ok["filename"], ok["faces"], ok["cached"]) == (
        "ok",
        "api",
        "obama3.jpg",
        1,
        False,
    )
    assert [(m["person_id"], m["name"]) for m in ok["matches"]] == [(obama["id"], "Barack Obama")]
    assert ok["principal"].startswith("key:") and ok["model_version"] == "1"
    assert (error["status"], error["error_type"], error["filename"], error["faces"]) == (
        "error",
        "ImageError",
        "cut.jpg",
        0,
    )
    by_person = admin.get("/v1/log", params={"person_id": obama["id"]}).json()
    assert ok_id in {item["request_id"] for item in by_person["items"]}
    errors = admin.get("/v1/log", params={"status": "error"}).json()
    assert {item["request_id"] for item in errors["items"]} >= {error_id}

    detailed = admin.get("/health/detailed").json()
    assert detailed["process"]["rss_bytes"] > 0 and detailed["machine"]["disk_free_bytes"] > 0
    recent = {row["route"]: row for row in detailed["routes"]["items"]}
    assert recent["POST /v1/recognize"]["requests"] >= 2 and recent["POST /v1/recognize"]["errors"] >= 1
    assert httpx.get(stack.url + "/health").json() == {"status": "ok"}

    # A minute is written once it is over, or when the process stops: stop it cleanly.
    stack.api.stop()
    stack.api.start().wait_ready(stack.api_timeout_s)
    with stack.client() as client:
        rows = client.get("/v1/stats", params={"window": "15m"}).json()["items"]
    recognitions = [row for row in rows if row["route"] == "POST /v1/recognize"]
    assert sum(row["requests"] for row in recognitions) >= 2
    assert sum(row["errors"] for row in recognitions) >= 1
    assert sum(row["faces"] for row in recognitions) >= 1
    assert all(row["p50_ms"] is not None and row["replicas"] == 1 for row in recognitions)
