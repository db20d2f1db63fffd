"""Jobs end to end: real Redis as the broker, real Triton, real ``facerec worker`` processes.

A 200-image recognize job (5 corrupt files among them) runs at low priority; a high job
sent while it runs finishes first; its worker is SIGKILLed half-way and another started,
and every item ends once, answered correctly. Then Triton stops: for 20 s, and the items
ride it out on their retries; past a small retry budget, they land in the dead letters, and
``retry`` completes them once Triton is back.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.runtime.triton_env import TritonEnvironment
from orchestrator.runtime.triton_server import TritonServer
from tests.conftest import local_triton
from tests.e2e.flows import create_person, enrol
from tests.support import augment
from tests.support.processes import ROOT
from tests.support.stack import ADMIN_KEY, Stack, redis_url, sqlite_url

pytestmark = pytest.mark.integration

JOB_S = 600.0
# A killed worker noticed in seconds: the test's clock, not production's.
FAST = {"FACEREC_JOBS__HEARTBEAT_S": "1", "FACEREC_JOBS__LOST_AFTER_S": "5"}
OUTAGE_S = 20.0


@pytest.fixture(scope="module")
def own_triton(
    model_store: ModelStore, triton_env: TritonEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """A Triton of this module's own, to stop and start again."""
    with local_triton(model_store, triton_env, tmp_path_factory.mktemp("jobs-triton")) as server:
        yield server


@pytest.fixture(scope="module")
def job_stack(
    own_triton: TritonServer, photos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    broker = redis_url()
    queues = redis.Redis.from_url(broker)
    for key in [*queues.scan_iter("facerec.jobs.*"), "unacked", "unacked_index"]:
        queues.delete(key)  # messages an earlier run left
    root = tmp_path_factory.mktemp("jobs")
    with Stack(root, own_triton, sqlite_url(root), broker) as running:
        with running.client() as admin:
            for name, photo in (("Barack Obama", "obama.jpg"), ("Joe Biden", "biden.jpg")):
                enrol(admin, create_person(admin, name)["id"], photos / photo)
        yield running


def _probes(photos: Path, count: int, tag: str) -> list[tuple[str, str, bytes]]:
    """(file name, the person in it, bytes): augmentations of the test photos, each with bytes
    of its own so that no answer comes from the cache."""
    obama2, obama3, biden = ((photos / n).read_bytes() for n in ("obama2.jpg", "obama3.jpg", "biden.jpg"))
    bases = [
        ("Barack Obama", obama3),
        ("Barack Obama", augment.scaled(obama2, 0.5)),
        ("Joe Biden", augment.scaled(biden, 0.6)),
        ("Barack Obama", augment.reencoded(obama3, 60)),
        ("Joe Biden", augment.reencoded(augment.scaled(biden, 0.8), 70)),
    ]
    probes = []
    for n in range(count):
        name, data = bases[n % len(bases)]
        probes.append((f"{tag}-{n:03d}.jpg", name, augment.with_comment(data, f"{tag}-{n}")))
    return probes


def _corrupt(photos: Path) -> list[tuple[str, bytes]]:
    jpeg = (photos / "obama2.jpg").read_bytes()
    return [
        ("truncated-1.jpg", jpeg[: len(jpeg) // 3]),
        ("truncated-2.jpg", jpeg[: len(jpeg) // 2]),
        ("header-only.jpg", jpeg[:200]),
        ("notes.txt", b"not an image at all\n" * 20),
        ("zeros.png", bytes(4096)),
    ]


def _submit(client: httpx.Client, files: list[tuple[str, bytes]], priority: str) -> dict[str, Any]:
    uploads = [("files", (name, data, "application/octet-stream")) for name, data in files]
    answer = client.post("/v1/jobs", data={"kind": "recognize", "priority": priority}, files=uploads)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["location"] == f"/v1/jobs/{job['job_id']}"
    assert (job["state"], job["total"], job["done"]) == ("queued", len(files), 0)
    return job


def _job(client: httpx.Client, job_id: int) -> dict[str, Any]:
    answer = client.get(f"/v1/jobs/{job_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def _items(client: httpx.Client, job_id: int, **params: Any) -> list[dict[str, Any]]:
    answer = client.get(f"/v1/jobs/{job_id}/items", params={"limit": 1000, **params})
    assert answer.status_code == 200, answer.text
    return list(answer.json()["items"])


def _until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        time.sleep(0.2)


def _ended(client: httpx.Client, job_id: int) -> Callable[[], bool]:
    return lambda: _job(client, job_id)["state"] in ("done", "failed", "cancelled")


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_a_large_job_with_a_high_one_and_a_killed_worker(job_stack: Stack, photos: Path) -> None:
    probes = _probes(photos, 195, "large")
    corrupt = _corrupt(photos)
    files = [(name, data) for name, _, data in probes[:100]] + corrupt + [(n, d) for n, _, d in probes[100:]]
    expected = {name: person for name, person, _ in probes}
    first = job_stack.job_worker("worker-a", env=FAST).start().wait_ready()
    second = job_stack.job_worker("worker-b", env=FAST)
    try:
        with job_stack.client() as client:
            large = _submit(client, files, "low")
            _until(lambda: _job(client, large["job_id"])["done"] >= 30, JOB_S, "30 items of the large job")
            urgent = _submit(client, [(n, d) for n, _, d in _probes(photos, 4, "urgent")], "high")
            _until(_ended(client, urgent["job_id"]), JOB_S, "the high job")
            assert _job(client, large["job_id"])["state"] == "running", (
                "the large job ended before the high one"
            )

            _until(lambda: _job(client, large["job_id"])["done"] >= 100, JOB_S, "half the large job")
            first.kill()
            running_when_killed = len(_items(client, large["job_id"], state="running"))
            second.start().wait_ready()
            _until(_ended(client, large["job_id"]), JOB_S, "the large job, after the kill")

            urgent = _job(client, urgent["job_id"])
            large = _job(client, large["job_id"])
            items = _items(client, large["job_id"])
            urgent_items = _items(client, urgent["job_id"])
    finally:
        first.stop()
        second.stop()

    assert (urgent["state"], urgent["done"], urgent["failed"]) == ("done", 4, 0)
    assert {item["recognised"] for item in urgent_items} <= {"Barack Obama", "Joe Biden"}
    # The high job went ahead of the large job's queue: many of its items started after it ended.
    sent, ended = _at(urgent["created_at"]), _at(urgent["finished_at"])
    before = sum(_at(i["started_at"]) < sent for i in items)
    after = sum(_at(i["started_at"]) > ended for i in items)
    during = len(items) - before - after
    print(f"\nlow items started: {before} before the high job was sent, {during} while it ran, {after} after")
    assert after >= 50, f"only {after} low items started after the high job ended"

    assert (large["state"], large["done"], large["failed"], large["progress"]) == ("done", 195, 5, 1.0)
    assert len(items) == 200 and [i["index"] for i in items] == list(range(200))
    assert len({i["task_id"] for i in items}) == 200  # each delivery's Celery id, as Flower shows it
    wrong = {
        i["filename"]: (i["recognised"], expected[i["filename"]])
        for i in items
        if i["filename"] in expected and (i["state"], i["recognised"]) != ("done", expected[i["filename"]])
    }
    assert not wrong, f"items not answered with their person: {wrong}"
    for item in items:
        if item["filename"] in expected:
            faces = item["result"]["faces"]
            assert faces[0]["decision"] == "match"
            assert faces[0]["matches"][0]["name"] == expected[item["filename"]]
    failed = {i["filename"]: i for i in items if i["state"] == "failed"}
    assert set(failed) == {name for name, _ in corrupt}
    for item in failed.values():
        # Its failure is not retried; only the killed worker's items run twice (requeued, on worker-b).
        requeued = item["attempts"] == 2 and item["worker"] == "worker-b"
        assert item["attempts"] == 1 or requeued, f"{item['filename']}: a corrupt image is not transient"
        assert item["error"]["status"] in (400, 415), item["error"]
        assert item["error"]["type"].endswith(("corrupt-image", "unsupported-image"))
    # Both workers did items; only those the killed one held were done twice.
    assert set(Counter(i["worker"] for i in items)) == {"worker-a", "worker-b"}
    again = [i for i in items if i["attempts"] > 1]
    assert len(again) <= max(running_when_killed, 8), again
    assert all(i["attempts"] == 2 and i["worker"] == "worker-b" for i in again)


def test_items_ride_out_triton_stopping_and_dead_letters_are_retried(
    job_stack: Stack, own_triton: TritonServer, photos: Path
) -> None:
    probes = _probes(photos, 24, "outage")
    expected = {name: person for name, person, _ in probes}
    files = [(name, data) for name, _, data in probes]
    # Retries every 1, 2, 4, 8, 16 s (31 s in all) ride out 20 s.
    patient = job_stack.job_worker("patient", concurrency=4, env=FAST).start().wait_ready()
    try:
        with job_stack.client() as client:
            own_triton.stop()
            try:
                job = _submit(client, files, "normal")
                _until(
                    lambda: any(i["attempts"] >= 2 for i in _items(client, job["job_id"])),
                    JOB_S,
                    "an item retried while Triton is down",
                )
                time.sleep(OUTAGE_S)
            finally:
                own_triton.start_ready()
            _until(_ended(client, job["job_id"]), JOB_S, "the job, once Triton is back")
            job = _job(client, job["job_id"])
            items = _items(client, job["job_id"])
    finally:
        patient.stop()
    assert (job["state"], job["done"], job["failed"]) == ("done", 24, 0)
    assert all(expected[i["filename"]] == i["recognised"] for i in items)
    assert max(i["attempts"] for i in items) >= 3

    # One retry, half a second after the first attempt: gone long before Triton is back.
    hasty = job_stack.job_worker(
        "hasty",
        concurrency=4,
        env={**FAST, "FACEREC_JOBS__MAX_RETRIES": "1", "FACEREC_JOBS__RETRY_BACKOFF_S": "0.5"},
    )
    hasty.start().wait_ready()
    probes = _probes(photos, 6, "dead")  # new bytes: the cache knows the first job's answers
    expected = {name: person for name, person, _ in probes}
    try:
        with job_stack.client() as client:
            own_triton.stop()
            try:
                job = _submit(client, [(name, data) for name, _, data in probes], "normal")
                _until(_ended(client, job["job_id"]), JOB_S, "the job's items dead")
                job = _job(client, job["job_id"])
                dead = client.get("/v1/jobs/dead-letters", params={"limit": 1000}).json()
            finally:
                own_triton.start_ready()
            assert (job["state"], job["done"], job["failed"]) == ("failed", 0, 6)
            ours = [i for i in dead["items"] if i["job_id"] == job["job_id"]]
            assert len(ours) == 6 and all(i["attempts"] == 2 for i in ours)
            assert all(i["error"]["status"] == 503 for i in ours), ours

            retried = client.post(f"/v1/jobs/{job['job_id']}/retry")
            assert retried.status_code == 200, retried.text
            assert retried.json()["failed"] == 0 and retried.json()["state"] in ("queued", "running")
            _until(_ended(client, job["job_id"]), JOB_S, "the retried job")
            job = _job(client, job["job_id"])
            items = _items(client, job["job_id"])
            still_dead = client.get("/v1/jobs/dead-letters", params={"limit": 1000}).json()
    finally:
        hasty.stop()
    assert (job["state"], job["done"], job["failed"]) == ("done", 6, 0)
    assert all(expected[i["filename"]] == i["recognised"] for i in items)
    assert not [i for i in still_dead["items"] if i["job_id"] == job["job_id"]]


def test_a_job_whose_messages_the_broker_lost_is_done(job_stack: Stack, photos: Path) -> None:
    probes = _probes(photos, 6, "stranded")
    queues = redis.Redis.from_url(redis_url())
    with job_stack.client() as client:
        job = _submit(client, [(name, data) for name, _, data in probes], "normal")
        # No worker has taken them; the broker restarts without persistence.
        assert queues.llen("facerec.jobs.normal") == 6
        queues.delete("facerec.jobs.normal")
        worker = job_stack.job_worker("recovering", concurrency=4, env=FAST).start().wait_ready()
        try:
            _until(_ended(client, job["job_id"]), 120.0, "the job whose messages were lost")
            job = _job(client, job["job_id"])
            items = _items(client, job["job_id"])
        finally:
            worker.stop()
    assert (job["state"], job["done"]) == ("done", 6)
    assert [i["recognised"] for i in items] == [person for _, person, _ in probes]
    assert "queued items had no message in the broker" in worker.log_tail(500)


def _people_archive(photos: Path, rows: list[tuple[str, str, str]]) -> bytes:
    """A zip of ``people/people.csv`` (external id, name, photos) and the photos beside it."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        lines = ["external_id,name,photos", *(",".join(row) for row in rows)]
        archive.writestr("people/people.csv", "\n".join(lines) + "\n")
        for name in {photo for _, _, photos_of in rows for photo in photos_of.split(";")}:
            archive.writestr(f"people/{name}", (photos / name).read_bytes())
    return buffer.getvalue()


def test_an_enrol_job_enrols_each_row_once_and_the_command_line_follows_it(
    job_stack: Stack, photos: Path
) -> None:
    archive = _people_archive(
        photos, [("job-44", "Obama (job)", "obama2.jpg;obama3.jpg"), ("job-46", "Biden (job)", "biden.jpg")]
    )
    worker = job_stack.job_worker("enroller", concurrency=2, env=FAST).start().wait_ready()
    try:
        with job_stack.client() as client:

            def enrol_job(force: bool) -> dict[str, Any]:
                answer = client.post(
                    "/v1/jobs",
                    data={"kind": "enrol", "priority": "high", "force": str(force).lower()},
                    files={"archive": ("people.zip", archive, "application/zip")},
                )
                assert answer.status_code == 202, answer.text
                _until(_ended(client, answer.json()["job_id"]), 120.0, "the enrol job")
                return _job(client, answer.json()["job_id"]) | {
                    "items": _items(client, answer.json()["job_id"])
                }

            # Both are people enrolled already under other names: refused at once, not retried.
            refused = enrol_job(force=False)
            assert (refused["state"], refused["failed"]) == ("done", 2)
            assert {i["error"]["type"].rsplit("/", 1)[1] for i in refused["items"]} == {"duplicate-identity"}
            assert all(i["attempts"] == 1 for i in refused["items"])

            forced = enrol_job(force=True)
            assert (forced["state"], forced["done"]) == ("done", 2)
            people = {
                p["external_id"]: p for p in client.get("/v1/people", params={"q": "(job)"}).json()["items"]
            }
            assert {k: (p["name"], p["face_count"]) for k, p in people.items()} == {
                "job-44": ("Obama (job)", 2),
                "job-46": ("Biden (job)", 1),
            }
            again = enrol_job(force=True)  # a second run finds them, and enrols no one twice
            assert (again["state"], again["done"]) == ("done", 2)
            assert all(i["result"]["existing"] for i in again["items"])
            assert client.get("/v1/people", params={"q": "(job)"}).json()["total"] == 2

        probes = [(name, data) for name, _, data in _probes(photos, 3, "cli")]
        folder = job_stack.root / "cli-probes"
        folder.mkdir()
        for name, data in probes:
            (folder / name).write_bytes(data)
        env = {**os.environ, "FACEREC_API_KEY": ADMIN_KEY, "PYTHONPATH": str(ROOT)}
        command = [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "jobs",
            "submit",
            str(folder),
            "--url",
            job_stack.url,
        ]
        run = subprocess.run(
            [*command, "--priority", "high", "--watch"], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        worker.stop()
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"job \d+: recognize, 3 items, high priority", run.stdout), run.stdout
    assert re.search(r"job \d+ done: 3 done, 0 failed of 3", run.stdout), run.stdout
