"""Jobs over HTTP, in-process (API.md, "Jobs"): an upload stored and its items sent to the
broker, the records read back, cancel, retry and dead letters.

The broker is a real Celery app of :func:`orchestrator.jobs.queue.make_celery` on kombu's
in-memory transport, so each message goes through the same ``send_task`` as on Redis, and the
test reads what reached each priority's queue. No worker runs: items are moved through their
states with the store's own ``claim_item`` and ``finish_item``, as a worker would.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest
from celery import Celery
from kombu.exceptions import OperationalError

from orchestrator.api.routes import jobs as jobs_routes
from orchestrator.core.resources import Resources
from orchestrator.db import Gallery
from orchestrator.db.job_tables import ItemState
from orchestrator.db.types import utcnow
from orchestrator.jobs.queue import ITEM_TASK, QUEUES, make_celery, queue_name, send_item
from tests.api.conftest import MAX_BODY_BYTES, Api, assert_problem
from tests.api.fakes import png

pytestmark = pytest.mark.unit

PROBLEMS = "https://facerec.dev/problems/"
JOB_FIELDS = {
    "job_id",
    "kind",
    "state",
    "priority",
    "total",
    "done",
    "failed",
    "progress",
    "created_at",
    "started_at",
    "finished_at",
}
"""A job's record, as API.md gives it."""
IMAGE = png()


def taken_messages(broker: Celery) -> list[tuple[str, int, int]]:
    """Every item message waiting in the priority queues, taken off them: (queue, job id, index)."""
    taken = []
    with broker.connection_for_read() as connection:
        channel = connection.default_channel
        for queue in QUEUES:
            while (message := channel.basic_get(queue, no_ack=True)) is not None:
                assert message.headers["task"] == ITEM_TASK, message.headers
                (job_id, index), _, _ = message.decode()
                taken.append((queue, job_id, index))
    return taken


@pytest.fixture
def broker(api: Api) -> Iterator[Celery]:
    """The app's broker: Celery on kombu's memory transport (its queues are the process's)."""
    app = make_celery("memory://")
    taken_messages(app)  # whatever an earlier test left in the shared queues
    resources: Resources = api.app.state.resources
    api.app.state.resources = replace(resources, jobs=app)
    try:
        yield app
    finally:
        taken_messages(app)
        app.close()


@pytest.fixture
def gallery(api: Api) -> Gallery:
    """The app's gallery without the seeded job (the role tests' path parameter): these count jobs."""
    gallery: Gallery = api.app.state.resources.gallery
    gallery.cancel_job(api.seeded.job_id)
    assert gallery.prune_jobs(utcnow() + timedelta(seconds=1)) == 1
    return gallery


def zipped(members: dict[str, bytes | str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _corrupt() -> bytes:
    """A zip whose one member's bytes no longer match its CRC."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("a.png", IMAGE)
    data = bytearray(buffer.getvalue())
    data[data.find(IMAGE) + len(IMAGE) // 2] ^= 0xFF
    return bytes(data)


CORRUPT = _corrupt()


def images(*names: str) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, IMAGE, "image/png")) for name in names]


def archive_part(data: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("archive", ("upload.zip", data, "application/zip"))]


async def post_job(
    client: httpx.AsyncClient, kind: str = "recognize", parts: list[Any] | None = None, **fields: str
) -> httpx.Response:
    parts = images("a.png", "b.png") if parts is None else parts
    return await client.post("/v1/jobs", data={"kind": kind, **fields}, files=parts)


async def queued_job(client: httpx.AsyncClient, n: int = 3, **fields: str) -> dict[str, Any]:
    answer = await post_job(client, parts=images(*(f"img-{i}.png" for i in range(n))), **fields)
    assert answer.status_code == 202, answer.text
    job: dict[str, Any] = answer.json()
    return job


def end_item(gallery: Gallery, job_id: int, index: int, state: ItemState) -> None:
    """Run one item to ``state`` as a worker would: claimed, then ended."""
    assert gallery.claim_item(job_id, index, "worker-1") is not None
    ended = gallery.finish_item(
        job_id,
        index,
        state,
        duration_ms=12.5,
        result={"faces": []} if state == "done" else None,
        error=None if state == "done" else {"status": 400, "detail": f"item {index} {state}"},
        recognised="Ada Lovelace" if state == "done" else None,
    )
    assert ended


async def get_json(client: httpx.AsyncClient, url: str, **params: Any) -> Any:
    answer = await client.get(url, params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


# Creating a job


async def test_a_job_is_accepted_with_its_record_and_its_address(
    broker: Celery, api: Api, gallery: Gallery, recognizer: httpx.AsyncClient
) -> None:
    parts = images("z.png", "y.png") + archive_part(zipped({"b.png": IMAGE, "a.png": png(40, 40)}))
    answer = await post_job(recognizer, parts=parts, priority="high", top_k="3", threshold="0.5")
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job.keys() == JOB_FIELDS
    assert {name: job[name] for name in JOB_FIELDS - {"job_id", "created_at"}} == {
        "kind": "recognize",
        "state": "queued",
        "priority": "high",
        "total": 4,
        "done": 0,
        "failed": 0,
        "progress": 0.0,
        "started_at": None,
        "finished_at": None,
    }
    assert answer.headers["location"] == f"/v1/jobs/{job['job_id']}"
    assert await get_json(recognizer, answer.headers["location"]) == job

    # Stored before the answer: the files in their order, then the archive's in name order.
    items = await get_json(recognizer, f"/v1/jobs/{job['job_id']}/items")
    assert [(item["index"], item["filename"], item["state"]) for item in items["items"]] == [
        (0, "z.png", "queued"),
        (1, "y.png", "queued"),
        (2, "a.png", "queued"),
        (3, "b.png", "queued"),
    ]
    claim = gallery.claim_item(job["job_id"], 2, "worker-1")
    assert claim is not None
    assert claim.images == [("a.png", png(40, 40))]
    assert claim.options == {"top_k": 3, "threshold": 0.5, "max_faces": None}
    key = gallery.authenticate(api.seeded.recognize_key)
    assert key is not None and claim.principal == f"key:{key.id}"


@pytest.mark.parametrize(("fields", "priority"), [({}, "normal"), ({"priority": "low"}, "low")])
async def test_each_item_is_one_message_on_its_job_s_priority_queue(
    broker: Celery, admin: httpx.AsyncClient, fields: dict[str, str], priority: str
) -> None:
    job = await queued_job(admin, 3, **fields)
    assert job["priority"] == priority
    assert taken_messages(broker) == [(queue_name(priority), job["job_id"], index) for index in range(3)]


async def test_an_enrol_job_has_one_item_per_person_with_its_fields_and_photos(
    broker: Celery, gallery: Gallery, admin: httpx.AsyncClient
) -> None:
    table = (
        "external_id,name,age,photos\nE1,Ada Lovelace,36,ada/1.png;ada/2.png\nE2,Charles Babbage,,cb.png\n"
    )
    archive = zipped(
        {
            "export/people.csv": table,
            "export/ada/1.png": IMAGE,
            "export/ada/2.png": png(48, 48),
            "export/cb.png": IMAGE,
        }
    )
    answer = await post_job(admin, "enrol", archive_part(archive), quality="off", force="true")
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert (job["kind"], job["total"]) == ("enrol", 2)
    assert [message[2] for message in taken_messages(broker)] == [0, 1]
    claim = gallery.claim_item(job["job_id"], 0, "worker-1")
    assert claim is not None
    assert (claim.filename, claim.params, claim.options) == (
        "people.csv:2",
        {"external_id": "E1", "name": "Ada Lovelace", "age": 36, "attributes": {}},
        {"quality": False, "force": True},
    )
    assert claim.images == [("ada/1.png", IMAGE), ("ada/2.png", png(48, 48))]


async def test_an_enrol_job_needs_an_admin_key_and_stores_nothing_without_one(
    broker: Celery, gallery: Gallery, recognizer: httpx.AsyncClient
) -> None:
    archive = zipped({"people.csv": "external_id,name,photos\nE1,Ada,a.png\n", "a.png": IMAGE})
    problem = assert_problem(await post_job(recognizer, "enrol", archive_part(archive)), 403, "admin role")
    assert problem["type"] == PROBLEMS + "forbidden"
    assert gallery.list_jobs() == ([], 0)
    assert taken_messages(broker) == []


@pytest.mark.parametrize(("field", "value"), [("kind", "delete"), ("priority", "urgent")])
async def test_an_unknown_kind_or_priority_is_a_422_naming_the_field(
    broker: Celery, gallery: Gallery, admin: httpx.AsyncClient, field: str, value: str
) -> None:
    fields = {"kind": "recognize", field: value}
    problem = assert_problem(await admin.post("/v1/jobs", data=fields, files=images("a.png")), 422)
    assert [error["loc"] for error in problem["errors"]] == [["body", field]]
    assert gallery.list_jobs() == ([], 0)


@pytest.mark.parametrize(
    ("kind", "parts", "detail"),
    [
        ("recognize", [], "a job needs images"),
        ("recognize", archive_part(zipped({"notes/": b"", ".DS_Store": b"x"})), "a job needs images"),
        ("recognize", archive_part(b"not a zip"), "not a zip file"),
        ("recognize", archive_part(CORRUPT), "a.png cannot be unpacked"),
        ("enrol", images("a.png"), "an enrol job takes an archive"),
        (
            "enrol",
            archive_part(zipped({"people.csv": "external_id,name,photos\nE1,Ada,gone.png\n"})),
            "line 2",
        ),
    ],
    ids=[
        "no files",
        "an archive without images",
        "not a zip",
        "a corrupt member",
        "enrol without archive",
        "enrol, photo missing",
    ],
)
async def test_an_upload_without_work_is_a_422_problem_and_stores_nothing(
    broker: Celery, gallery: Gallery, admin: httpx.AsyncClient, kind: str, parts: list[Any], detail: str
) -> None:
    problem = assert_problem(await admin.post("/v1/jobs", data={"kind": kind}, files=parts), 422, detail)
    assert problem["type"] == PROBLEMS + "invalid-request"
    assert gallery.list_jobs() == ([], 0)
    assert taken_messages(broker) == []


async def test_an_archive_member_over_the_image_limit_is_a_413(
    broker: Celery, gallery: Gallery, admin: httpx.AsyncClient
) -> None:
    big = bytes(range(256)) * (MAX_BODY_BYTES // 256 + 1)  # barely compresses: no bomb, just too large
    problem = assert_problem(
        await post_job(admin, parts=archive_part(zipped({"big.png": big}))), 413, "big.png"
    )
    assert problem["type"] == PROBLEMS + "image-too-large"
    assert gallery.list_jobs() == ([], 0)


async def test_without_a_broker_a_job_is_a_503_and_nothing_is_stored(
    api: Api, gallery: Gallery, admin: httpx.AsyncClient
) -> None:
    api.app.state.resources = replace(api.app.state.resources, jobs=None)  # as without REDIS_URL
    answer = await post_job(admin)
    problem = assert_problem(answer, 503, "broker")
    assert problem["type"] == PROBLEMS + "upstream-unavailable"
    assert answer.headers["retry-after"].isdigit()
    assert gallery.list_jobs() == ([], 0)


async def test_a_broker_that_fails_mid_send_is_a_503_and_leaves_the_job_cancelled(
    broker: Celery, gallery: Gallery, admin: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []

    def send_then_fail(app: Celery, job_id: int, index: int, priority: str) -> None:
        if sent:
            raise OperationalError("Error 111 connecting to redis:6379. Connection refused.")
        send_item(app, job_id, index, priority)
        sent.append(index)

    monkeypatch.setattr(jobs_routes, "send_item", send_then_fail)
    problem = assert_problem(await post_job(admin, parts=images("a.png", "b.png")), 503, "connection refused")
    assert problem["type"] == PROBLEMS + "upstream-unavailable"
    (job,), total = gallery.list_jobs()
    assert (total, job.state, job.finished_at is not None) == (1, "cancelled", True)
    # Not queued forever: the one message that went out finds nothing to do.
    assert [message[1:] for message in taken_messages(broker)] == [(job.job_id, 0)]
    assert gallery.claim_item(job.job_id, 0, "worker-1") is None
    items, _ = gallery.job_items(job.job_id)
    assert {item.state for item in items} == {"cancelled"}


# Reading jobs


async def test_jobs_are_listed_newest_first_with_filters_and_pages(
    broker: Celery, gallery: Gallery, admin: httpx.AsyncClient
) -> None:
    first = await queued_job(admin, 1)
    second = await queued_job(admin, 2, priority="low")
    archive = zipped({"people.csv": "external_id,name,photos\nE1,Ada,a.png\n", "a.png": IMAGE})
    third = (await post_job(admin, "enrol", archive_part(archive))).json()
    assert (await admin.post(f"/v1/jobs/{second['job_id']}/cancel")).status_code == 200

    def ids(page: dict[str, Any]) -> list[int]:
        return [job["job_id"] for job in page["items"]]

    everything = await get_json(admin, "/v1/jobs")
    assert (ids(everything), everything["total"]) == ([third["job_id"], second["job_id"], first["job_id"]], 3)
    assert all(job.keys() == JOB_FIELDS for job in everything["items"])
    assert ids(await get_json(admin, "/v1/jobs", kind="enrol")) == [third["job_id"]]
    assert ids(await get_json(admin, "/v1/jobs", state="cancelled")) == [second["job_id"]]
    assert ids(await get_json(admin, "/v1/jobs", state="queued", kind="recognize")) == [first["job_id"]]
    page = await get_json(admin, "/v1/jobs", limit=1, offset=1)
    assert (ids(page), page["total"]) == ([second["job_id"]], 3)
    assert_problem(await admin.get("/v1/jobs", params={"state": "dead"}), 422)  # an item's state, not a job's


async def test_a_job_s_items_show_their_results_with_filters_and_pages(
    broker: Celery, gallery: Gallery, admin: httpx.AsyncClient
) -> None:
    job_id = (await queued_job(admin, 4))["job_id"]
    end_item(gallery, job_id, 1, "done")
    end_item(gallery, job_id, 2, "failed")
    url = f"/v1/jobs/{job_id}/items"

    everything = await get_json(admin, url)
    assert everything["total"] == 4
    assert [(item["index"], item["state"]) for item in everything["items"]] == [
        (0, "queued"),
        (1, "done"),
        (2, "failed"),
        (3, "queued"),
    ]
    done = (await get_json(admin, url, state="done"))["items"]
    assert [(item["index"], item["result"], item["recognised"], item["duration_ms"]) for item in done] == [
        (1, {"faces": []}, "Ada Lovelace", 12.5)
    ]
    assert (done[0]["attempts"], done[0]["worker"]) == (1, "worker-1")
    failed = (await get_json(admin, url, state="failed"))["items"]
    assert [(item["index"], item["error"]) for item in failed] == [
        (2, {"status": 400, "detail": "item 2 failed"})
    ]
    page = await get_json(admin, url, limit=2, offset=2)
    assert ([item["index"] for item in page["items"]], page["total"]) == ([2, 3], 4)

    job = await get_json(admin, f"/v1/jobs/{job_id}")
    assert (job["state"], job["done"], job["failed"], job["progress"]) == ("running", 1, 1, 0.5)
    assert job["started_at"] is not None and job["finished_at"] is None


@pytest.mark.parametrize("path", ["", "/items"])
async def test_an_unknown_job_is_a_404_problem(broker: Celery, admin: httpx.AsyncClient, path: str) -> None:
    problem = assert_problem(await admin.get(f"/v1/jobs/424242{path}"), 404, "job 424242 not found")
    assert problem["type"] == PROBLEMS + "not-found"


# Cancel, retry, dead letters


async def test_a_job_is_cancelled_again_as_it_is_an_ended_one_409_and_its_messages_do_nothing(
    broker: Celery, gallery: Gallery, admin: httpx.AsyncClient
) -> None:
    job_id = (await queued_job(admin, 3))["job_id"]
    end_item(gallery, job_id, 0, "done")
    answer = await admin.post(f"/v1/jobs/{job_id}/cancel")
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert (job["state"], job["done"], job["finished_at"] is not None) == ("cancelled", 1, True)
    items = (await get_json(admin, f"/v1/jobs/{job_id}/items"))["items"]
    assert [item["state"] for item in items] == ["done", "cancelled", "cancelled"]
    assert gallery.claim_item(job_id, 1, "worker-1") is None  # its message, still in the queue

    again = await admin.post(f"/v1/jobs/{job_id}/cancel")  # idempotent: nothing changes
    assert again.status_code == 200 and again.json() == job
    ended = (await queued_job(admin, 1))["job_id"]
    end_item(gallery, ended, 0, "done")
    problem = assert_problem(await admin.post(f"/v1/jobs/{ended}/cancel"), 409, "is done")
    assert problem["type"] == PROBLEMS + "conflict"
    assert_problem(await admin.post("/v1/jobs/424242/cancel"), 404, "job 424242 not found")


async def test_retry_sends_the_failed_and_dead_items_again_from_attempt_zero(
    broker: Celery, gallery: Gallery, admin: httpx.AsyncClient
) -> None:
    job_id = (await queued_job(admin, 3, priority="high"))["job_id"]
    end_item(gallery, job_id, 0, "done")
    end_item(gallery, job_id, 1, "failed")
    end_item(gallery, job_id, 2, "dead")
    ended = await get_json(admin, f"/v1/jobs/{job_id}")
    assert (ended["state"], ended["done"], ended["failed"]) == ("failed", 1, 2)
    taken_messages(broker)  # the first sending

    answer = await admin.post(f"/v1/jobs/{job_id}/retry")
    assert answer.status_code == 200, answer.text
    job = answer.json()
    assert (job["state"], job["done"], job["failed"], job["progress"], job["finished_at"]) == (
        "running",
        1,
        0,
        round(1 / 3, 4),
        None,
    )
    assert taken_messages(broker) == [(queue_name("high"), job_id, 1), (queue_name("high"), job_id, 2)]
    items = (await get_json(admin, f"/v1/jobs/{job_id}/items"))["items"]
    assert [(item["state"], item["attempts"], item["error"]) for item in items] == [
        ("done", 1, None),
        ("queued", 0, None),
        ("queued", 0, None),
    ]
    assert items[0]["result"] == {"faces": []}  # what was done stays done
    claim = gallery.claim_item(job_id, 2, "worker-2")
    assert claim is not None and claim.attempts == 1


async def test_retry_of_a_cancelled_or_unknown_job_is_refused(
    broker: Celery, gallery: Gallery, admin: httpx.AsyncClient
) -> None:
    job_id = (await queued_job(admin, 1))["job_id"]
    assert (await admin.post(f"/v1/jobs/{job_id}/cancel")).status_code == 200
    taken_messages(broker)
    assert_problem(await admin.post(f"/v1/jobs/{job_id}/retry"), 409, "cancelled")
    assert_problem(await admin.post("/v1/jobs/424242/retry"), 404, "job 424242 not found")
    assert taken_messages(broker) == []


async def test_retry_without_a_broker_is_a_503_and_changes_nothing(
    broker: Celery, api: Api, gallery: Gallery, admin: httpx.AsyncClient
) -> None:
    job_id = (await queued_job(admin, 1))["job_id"]
    end_item(gallery, job_id, 0, "dead")
    api.app.state.resources = replace(api.app.state.resources, jobs=None)
    assert_problem(await admin.post(f"/v1/jobs/{job_id}/retry"), 503, "broker")
    (item,), _ = gallery.job_items(job_id)
    assert item.state == "dead"


async def test_dead_letters_are_the_dead_items_of_every_job(
    broker: Celery, gallery: Gallery, admin: httpx.AsyncClient
) -> None:
    first = (await queued_job(admin, 2))["job_id"]
    second = (await queued_job(admin, 3))["job_id"]
    end_item(gallery, first, 1, "dead")
    end_item(gallery, second, 0, "failed")  # failed, with attempts left: not a dead letter
    end_item(gallery, second, 2, "dead")

    letters = await get_json(admin, "/v1/jobs/dead-letters")
    assert letters["total"] == 2
    assert [(item["job_id"], item["index"], item["state"], item["error"]) for item in letters["items"]] == [
        (first, 1, "dead", {"status": 400, "detail": "item 1 dead"}),
        (second, 2, "dead", {"status": 400, "detail": "item 2 dead"}),
    ]
    page = await get_json(admin, "/v1/jobs/dead-letters", limit=1, offset=1)
    assert ([(item["job_id"], item["index"]) for item in page["items"]], page["total"]) == ([(second, 2)], 2)


# An item's image


async def test_an_item_s_image_is_its_uploaded_bytes_with_their_type_until_the_job_is_pruned(
    broker: Celery, gallery: Gallery, recognizer: httpx.AsyncClient
) -> None:
    parts = [
        ("files", ("face.png", IMAGE, "image/png")),
        ("files", ("broken.jpg", b"\xff\xd8\xff not really a jpeg", "image/jpeg")),
        ("files", ("notes.jpg", b"<html>not an image</html>", "image/jpeg")),
    ]
    job_id = (await post_job(recognizer, parts=parts)).json()["job_id"]
    url = f"/v1/jobs/{job_id}/items/{{}}/image"

    image = await recognizer.get(url.format(0))
    assert image.status_code == 200, image.text
    assert (image.content, image.headers["content-type"]) == (IMAGE, "image/png")
    assert image.headers["content-disposition"] == "inline; filename*=UTF-8''face.png"
    corrupt = await recognizer.get(url.format(1))
    assert (corrupt.content, corrupt.headers["content-type"]) == (parts[1][1][1], "image/jpeg")
    other = await recognizer.get(url.format(2))  # stored as sent, never served as a page
    assert (other.content, other.headers["content-type"]) == (parts[2][1][1], "application/octet-stream")
    assert other.headers["x-content-type-options"] == "nosniff"

    assert_problem(await recognizer.get(url.format(3)), 404, f"job {job_id} has no image 0 of item 3")
    assert_problem(await recognizer.get(url.format(0), params={"position": 1}), 404, "no image 1 of item 0")
    assert_problem(await recognizer.get("/v1/jobs/424242/items/0/image"), 404, "job 424242 not found")
    assert_problem(await recognizer.get(url.format(-1)), 422)

    assert (await recognizer.post(f"/v1/jobs/{job_id}/cancel")).status_code == 200
    assert gallery.prune_jobs(utcnow() + timedelta(seconds=1)) == 1
    assert_problem(await recognizer.get(url.format(0)), 404, f"job {job_id} not found")


async def test_each_photo_of_an_enrolment_is_had_by_its_position(
    broker: Celery, gallery: Gallery, admin: httpx.AsyncClient
) -> None:
    table = "external_id,name,photos\nE1,Ada Lovelace,1.png;2.png\n"
    archive = zipped({"people.csv": table, "1.png": IMAGE, "2.png": png(48, 48)})
    job_id = (await post_job(admin, "enrol", archive_part(archive))).json()["job_id"]
    url = f"/v1/jobs/{job_id}/items/0/image"
    assert (await admin.get(url)).content == IMAGE
    second = await admin.get(url, params={"position": 1})
    assert (second.status_code, second.content) == (200, png(48, 48))
    assert second.headers["content-disposition"] == "inline; filename*=UTF-8''2.png"
