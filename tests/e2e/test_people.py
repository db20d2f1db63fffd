"""People with typed fields against the whole stack: one-call enrolment, the person in every
match, the face image, and ``facerec import`` killed half-way and run again."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from tests.e2e.flows import gallery_snapshot, recognize
from tests.support import augment
from tests.support.stack import ADMIN_KEY, Stack

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
IMPORTED = 200


def enrol_person(client: httpx.Client, photos: list[tuple[str, bytes]], **fields: Any) -> httpx.Response:
    files = [("files", (name, data, "image/jpeg")) for name, data in photos]
    return client.post("/v1/people", data={k: str(v) for k, v in fields.items()}, files=files)


def blank_photo() -> bytes:
    """A photo with no face in it."""
    ok, encoded = cv2.imencode(".jpg", np.full((240, 320, 3), 180, np.uint8))
    assert ok
    return encoded.tobytes()


@pytest.fixture(scope="module")
def obama(admin: httpx.Client, photos: Path) -> dict[str, Any]:
    answer = enrol_person(
        admin,
        [
            ("obama.jpg", (photos / "obama.jpg").read_bytes()),
            ("obama2.jpg", (photos / "obama2.jpg").read_bytes()),
        ],
        name="Barack Obama",
        external_id="potus-44",
        age=64,
        gender="male",
        address="Washington, D.C.",
        attributes='{"party": "Democratic"}',
    )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def test_one_call_enrols_the_person_with_a_face_per_photo(admin: httpx.Client, obama: dict[str, Any]) -> None:
    assert (obama["name"], obama["age"], obama["gender"], obama["face_count"]) == (
        "Barack Obama",
        64,
        "male",
        2,
    )
    assert [face["person_id"] for face in obama["faces"]] == [obama["id"]] * 2
    listed = admin.get(f"/v1/people/{obama['id']}/faces").json()["items"]
    assert [face["face_id"] for face in listed] == [face["face_id"] for face in obama["faces"]]
    gallery = admin.get("/health/detailed").json()["gallery"]
    assert gallery["in_agreement"] is True


def test_the_face_image_is_the_aligned_crop(stack: Stack, obama: dict[str, Any]) -> None:
    with stack.client(key=None) as anonymous:
        assert anonymous.get(f"/v1/faces/{obama['faces'][0]['face_id']}/image").status_code == 401
    with stack.client() as admin:
        answer = admin.get(f"/v1/faces/{obama['faces'][0]['face_id']}/image")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    crop = cv2.imdecode(np.frombuffer(answer.content, np.uint8), cv2.IMREAD_COLOR)
    assert crop.shape == (112, 112, 3)


def test_a_match_carries_the_person_and_a_change_of_it_at_once(
    admin: httpx.Client, obama: dict[str, Any], photos: Path
) -> None:
    probe = augment.reencoded((photos / "obama3.jpg").read_bytes(), 88)
    match = recognize(admin, probe)["faces"][0]["matches"][0]
    assert match["person"] == {
        "id": obama["id"],
        "name": "Barack Obama",
        "external_id": "potus-44",
        "age": 64,
        "gender": "male",
        "address": "Washington, D.C.",
        "attributes": {"party": "Democratic"},
    }
    assert recognize(admin, probe)["cached"] is True
    changed = admin.patch(f"/v1/people/{obama['id']}", json={"age": 65, "address": "Chicago"})
    assert changed.status_code == 200, changed.text
    after = recognize(admin, probe)
    assert after["cached"] is False
    person = after["faces"][0]["matches"][0]["person"]
    assert (person["age"], person["address"], person["name"]) == (65, "Chicago", "Barack Obama")


@pytest.mark.parametrize(
    ("second", "status", "detail"),
    [("blank.jpg", 422, "no face"), ("notes.txt", 415, "not a JPEG")],
)
def test_one_bad_photo_and_nothing_is_created(
    admin: httpx.Client, obama: dict[str, Any], photos: Path, second: str, status: int, detail: str
) -> None:
    before = gallery_snapshot(admin)
    bad = blank_photo() if second.endswith(".jpg") else b"a note, not a photo"
    answer = enrol_person(
        admin, [("biden.jpg", (photos / "biden.jpg").read_bytes()), (second, bad)], name="Joe Biden", age=81
    )
    assert answer.status_code == status, answer.text
    assert detail in answer.json()["detail"] and f"file 2 ({second!r})" in answer.json()["detail"]
    assert gallery_snapshot(admin) == before


def import_folder(root: Path, photos: Path) -> tuple[Path, Path]:
    """people.csv with IMPORTED people, one distinct photo each, and three bad rows."""
    images = root / "images"
    images.mkdir()
    bases = [
        variant
        for name in ("obama.jpg", "obama2.jpg", "obama3.jpg", "biden.jpg")
        for variant in ((photos / name).read_bytes(), augment.reencoded((photos / name).read_bytes(), 90))
    ]
    rows = []
    for i in range(1, IMPORTED + 1):
        photo = f"p{i:04d}.jpg"
        (images / photo).write_bytes(augment.with_comment(bases[i % len(bases)], f"person {i}"))
        gender = ("male", "female", "")[i % 3]
        rows.append([f"IMP-{i:04d}", f"Imported {i}", str(i % 90), gender, f"{i} Main St", photo])
    (images / "blank.jpg").write_bytes(blank_photo())
    rows += [
        ["BAD-1", "No Face", "30", "", "", "blank.jpg"],
        ["BAD-2", "No Photo", "30", "", "", "absent.jpg"],
        ["BAD-3", "Too Old", "200", "", "", "p0001.jpg"],
    ]
    path = root / "people.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["external_id", "name", "age", "gender", "address", "photos"])
        writer.writerows(rows)
    return path, images


def imported(client: httpx.Client) -> list[dict[str, Any]]:
    people: list[dict[str, Any]] = []
    while True:
        page = client.get("/v1/people", params={"q": "imp-", "limit": 500, "offset": len(people)}).json()
        people += page["items"]
        if len(people) >= page["total"]:
            return people


def test_an_import_killed_half_way_is_finished_by_running_it_again(
    stack: Stack, admin: httpx.Client, photos: Path, tmp_path: Path
) -> None:
    path, images = import_folder(tmp_path, photos)
    errors = tmp_path / "errors.csv"
    command = [
        sys.executable, "-m", "orchestrator.cli", "import", str(path), "--images", str(images),
        "--url", stack.url, "--errors", str(errors), "--jobs", "4",
        "--force",  # 200 "people" from 8 photos of two men: duplicates on purpose
    ]  # fmt: skip
    env = {**os.environ, "FACEREC_API_KEY": ADMIN_KEY, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while len(imported(admin)) < IMPORTED // 2:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the import made no progress"
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
    finally:
        first.kill()
        first.communicate()
    assert first.returncode == -signal.SIGKILL
    halfway = len(imported(admin))
    assert IMPORTED // 2 <= halfway < IMPORTED

    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 1, again.stderr  # the three bad rows
    summary = again.stdout.splitlines()[0]
    done_before = int(summary.split(" imported, ")[1].split(" already there")[0])
    assert summary == (
        f"{IMPORTED + 3} rows: {IMPORTED - done_before} imported, {done_before} already there, 3 failed"
    ), again.stdout
    assert done_before >= halfway  # rows in flight at the kill may have finished after the count

    people = imported(admin)
    assert sorted(person["external_id"] for person in people) == [
        f"IMP-{i:04d}" for i in range(1, IMPORTED + 1)
    ]
    assert {person["face_count"] for person in people} == {1}
    sample = next(person for person in people if person["external_id"] == "IMP-0007")
    assert (sample["name"], sample["age"], sample["gender"], sample["address"]) == (
        "Imported 7",
        7,
        "female",
        "7 Main St",
    )
    gallery = admin.get("/health/detailed").json()["gallery"]
    assert gallery["in_agreement"] is True and gallery["faces"] == gallery["index_count"]

    with errors.open(encoding="utf-8") as file:
        failed = {row["external_id"]: row["error"] for row in csv.DictReader(file)}
    assert set(failed) == {"BAD-1", "BAD-2", "BAD-3"}
    assert "no face" in failed["BAD-1"] and "absent.jpg" in failed["BAD-2"] and "0..150" in failed["BAD-3"]
    assert admin.get("/v1/people", params={"q": "bad-"}).json()["total"] == 0
