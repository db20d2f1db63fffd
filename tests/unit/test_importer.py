"""``facerec import``: the CSV read and checked, rows sent once each, failures reported.

The API is a stand-in here (``httpx.MockTransport``) that keeps people by external id as the
server does; the real one, killed half-way and resumed, is in tests/e2e/test_import.py.
"""

from __future__ import annotations

import csv
import email.parser
import email.policy
import io
import json
import threading
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from orchestrator.cli import importer
from orchestrator.cli.importer import Abort, Importer, read_rows, run, write_errors
from orchestrator.cli.main import main

pytestmark = pytest.mark.unit

HEADER = "external_id,name,age,gender,address,photos"


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.jpg", "b.jpg", "c.png", "noface.jpg"):
        (folder / name).write_bytes(name.encode())
    return folder


def people_csv(tmp_path: Path, *lines: str, header: str = HEADER) -> Path:
    path = tmp_path / "people.csv"
    path.write_text(
        "\ufeff" + "\n".join([header, *lines]) + "\n", encoding="utf-8"
    )  # with a BOM, as Excel writes
    return path


def form_fields(request: httpx.Request, body: bytes) -> dict[str, str]:
    """The text fields of a multipart form (its files left out)."""
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    return {
        str(part.get_param("name", header="content-disposition")): part.get_payload(decode=True).decode()
        for part in message.iter_parts()
        if part.get_filename() is None
    }


class FakeApi:
    """POST /v1/people as the server answers it: 201 once per external id, then 409."""

    def __init__(self, busy: int = 0) -> None:
        self.people: dict[str, dict[str, object]] = {}
        self.busy = busy
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["content-type"].startswith("multipart/form-data")
        body = request.read()
        with self.lock:
            self.calls += 1
            if self.busy:
                self.busy -= 1
                return httpx.Response(503, headers={"retry-after": "0"}, json={"detail": "busy"})
        fields = form_fields(request, body)
        external_id = fields["external_id"]
        if b"noface.jpg" in body:
            return httpx.Response(422, json={"detail": "file 1 ('noface.jpg'): no face found in the image"})
        with self.lock:
            if external_id in self.people:
                return httpx.Response(
                    409, json={"detail": f"external_id {external_id!r} belongs to another person"}
                )
            self.people[external_id] = fields
        return httpx.Response(201, json={"id": len(self.people)})


def client(api: FakeApi) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(api), base_url="http://api")


def quiet() -> Console:
    return Console(file=io.StringIO())


def test_rows_are_checked_before_anything_is_sent(tmp_path: Path, images: Path) -> None:
    path = people_csv(
        tmp_path,
        "P1,Ann,30,f,Huế,a.jpg",
        "P2,Bob,,,,a.jpg; b.jpg",
        ",No Id,,,,a.jpg",
        "P4,,1,,,a.jpg",
        "P5,Old,151,,,a.jpg",
        "P6,Odd,3.5,,,a.jpg",
        "P7,Lost,,,,missing.jpg",
        "P8,None,,,,",
        "P1,Again,,,,b.jpg",
        "P10,Many," + ",,," + ";".join(["a.jpg"] * 17),
    )
    header, rows = read_rows(path, images)
    assert header == HEADER.split(",")
    problems = {row.line: row.problem for row in rows}
    assert problems == {
        2: None,
        3: None,
        4: "no external_id",
        5: "no name",
        6: "age '151' is not a whole number 0..150",
        7: "age '3.5' is not a whole number 0..150",
        8: f"no photo missing.jpg under {images}",
        9: "no photos",
        10: "external_id 'P1' repeats line 2",
        11: "17 photos: 1 to 16 a person",
    }
    assert rows[0].fields == {
        "external_id": "P1",
        "name": "Ann",
        "age": "30",
        "gender": "f",
        "address": "Huế",
    }
    assert rows[1].photos == (images / "a.jpg", images / "b.jpg")


def test_a_file_without_the_columns_is_refused(tmp_path: Path, images: Path) -> None:
    with pytest.raises(Abort, match="photos"):
        read_rows(people_csv(tmp_path, "P1,Ann", header="external_id,name"), images)


def test_attributes_column_is_json(tmp_path: Path, images: Path) -> None:
    path = people_csv(
        tmp_path,
        'P1,Ann,a.jpg,"{""k"": 1}"',
        "P2,Bob,a.jpg,[1]",
        "P3,Cy,a.jpg,{",
        header="external_id,name,photos,attributes",
    )
    rows = read_rows(path, images)[1]
    assert json.loads(rows[0].fields["attributes"]) == {"k": 1}
    assert rows[1].problem == "attributes must be a JSON object"
    assert rows[2].problem is not None and rows[2].problem.startswith("attributes are not JSON")


def test_a_run_imports_each_row_once_and_reports_the_rest(tmp_path: Path, images: Path) -> None:
    lines = [f"P{i},Person {i},{i},,,{'abc'[i % 3]}.jpg".replace("c.jpg", "c.png") for i in range(1, 31)]
    path = people_csv(tmp_path, *lines, "Q1,Faceless,,,,noface.jpg", "Q2,Lost,,,,gone.jpg")
    header, rows = read_rows(path, images)
    api = FakeApi(busy=3)
    with client(api) as http:
        report = run(Importer(http), rows, jobs=4, console=quiet())
    assert (report.counts["imported"], report.counts["present"], report.counts["failed"]) == (30, 0, 2)
    assert api.people["P7"] == {"external_id": "P7", "name": "Person 7", "age": "7"}
    errors = tmp_path / "errors.csv"
    write_errors(errors, header, report.failures)
    with errors.open(encoding="utf-8") as file:
        written = list(csv.DictReader(file))
    assert [(row["external_id"], row["line"]) for row in written] == [("Q1", "32"), ("Q2", "33")]
    assert "no face" in written[0]["error"] and written[0]["photos"] == "noface.jpg"
    # The errors file imports as it is, and its own errors file has the same columns.
    header_again, rows_again = read_rows(errors, images)
    assert [row.line for row in rows_again] == [2, 3]
    write_errors(errors, header_again, [(rows_again[1], "still lost")])
    with errors.open(encoding="utf-8") as file:
        assert next(csv.reader(file)) == [*HEADER.split(","), "line", "error"]

    # Run again, as after an interruption: everything done is skipped as present, nothing twice.
    with client(api) as http:
        again = run(Importer(http), rows, jobs=2, console=quiet())
    assert (again.counts["imported"], again.counts["present"], again.counts["failed"]) == (0, 30, 2)
    assert len(api.people) == 30


def test_a_refused_key_stops_the_run(tmp_path: Path, images: Path) -> None:
    rows = read_rows(people_csv(tmp_path, *(f"P{i},X,,,,a.jpg" for i in range(50))), images)[1]
    calls = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(403, json={"detail": "this needs an admin key"})

    with (
        httpx.Client(transport=httpx.MockTransport(refuse), base_url="http://api") as http,
        pytest.raises(Abort),
    ):
        run(Importer(http), rows, jobs=2, console=quiet())
    assert len(calls) < 10


def test_the_command_says_why_it_stopped(
    tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(importer.time, "sleep", lambda _: None)
    path = people_csv(tmp_path, "P1,Ann,,,,a.jpg")
    argv = ["import", str(path), "--images", str(images), "--url", "http://127.0.0.1:9", "--key", "k"]
    assert main(argv) == 2
    assert "run it again" in capsys.readouterr().err
    monkeypatch.delenv("FACEREC_API_KEY", raising=False)
    assert main(argv[:-2]) == 2


def test_a_photo_of_someone_enrolled_already_fails_its_row_unless_forced(
    tmp_path: Path, images: Path
) -> None:
    """A 409 duplicate identity is a failure, not a row done; --force sends force=true."""
    rows = read_rows(people_csv(tmp_path, "P1,Ann,,,,a.jpg", "P2,Twin,,,,b.jpg"), images)[1]
    sent: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(dict(request.url.params))
        if b"b.jpg" in request.read() and request.url.params.get("force") != "true":
            problem = {
                "type": "https://facerec.dev/problems/duplicate-identity",
                "status": 409,
                "detail": "file 1 ('b.jpg'): the face matches 'Ann' (person 1) at similarity 0.930",
            }
            return httpx.Response(409, json=problem)
        return httpx.Response(201, json={"id": 1})

    with httpx.Client(transport=httpx.MockTransport(answer), base_url="http://api") as http:
        report = run(Importer(http), rows, jobs=1, console=quiet())
        assert (report.counts["imported"], report.counts["present"], report.counts["failed"]) == (1, 0, 1)
        assert "matches 'Ann'" in report.failures[0][1]
        forced = run(Importer(http, force=True), rows, jobs=1, console=quiet())
    assert forced.counts["imported"] == 2
    assert sent[-1] == {"force": "true"} and sent[0] == {}
