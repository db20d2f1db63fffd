"""``facerec import people.csv --images DIR``: people and their photos, through the HTTP API.

Each row is one call of the one-call enrolment (``POST /v1/people`` as a form), so the
server makes it whole or not at all. The external id makes a run idempotent: a row whose
external id the gallery already holds answers 409 and counts as done, checked before any
photo is analysed. So a run that was stopped (even by SIGKILL) is resumed by running it
again, without any state file; a row that was in flight is either there or not at all. A
row whose photo is of someone enrolled already under another name fails (409 duplicate
identity, naming them), unless ``--force``.

The CSV (UTF-8, a header line): ``external_id,name,age,gender,address,photos`` with
``photos`` the photo files under ``--images``, ``;``-separated; an optional ``attributes``
column holds a JSON object. Other columns are ignored, so the ``--errors`` file, which is
the failed rows as they were with an ``error`` column added, can be fixed and imported as it is.
"""

from __future__ import annotations

import argparse
import csv
import json
import mimetypes
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from orchestrator.api.person_body import MAX_PHOTOS
from orchestrator.cli.common import settings_from

COLUMNS = ("external_id", "name", "age", "gender", "address", "photos")
REQUIRED = ("external_id", "name", "photos")
TIMEOUT_S = 120.0
BUSY_RETRIES = 8
UNREACHABLE_RETRIES = 3
Outcome = Literal["imported", "present", "failed"]


class Abort(Exception):
    """The run cannot go on (no server, a refused key): what is done stays done."""


@dataclass(frozen=True)
class Row:
    line: int
    """Its line in the file (the header is line 1)."""
    cells: dict[str, str]
    """As read, for the errors file."""
    fields: dict[str, str] = field(default_factory=dict)
    """The form fields to send."""
    photos: tuple[Path, ...] = ()
    problem: str | None = None
    """Why it cannot be sent, when it cannot."""


def read_rows(path: Path, images: Path) -> tuple[list[str], list[Row]]:
    """The header and every row, each checked as far as the client can: fields, photo files, duplicates."""
    with path.open(newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise Abort(f"{path}: no column {', '.join(missing)} (the header needs {', '.join(COLUMNS)})")
        reader.fieldnames = header
        rows = [_row(reader.line_num, cells, images) for cells in reader]
    seen: dict[str, int] = {}
    checked = []
    for row in rows:
        external_id = row.fields.get("external_id")
        if row.problem is None and external_id in seen:
            row = Row(
                row.line, row.cells, problem=f"external_id {external_id!r} repeats line {seen[external_id]}"
            )
        elif external_id:
            seen.setdefault(external_id, row.line)
        checked.append(row)
    return header, checked


def _row(line: int, cells: dict[str | Any, Any], images: Path) -> Row:
    text = {
        str(k): (v or "").strip() if isinstance(v, str) else "" for k, v in cells.items() if k is not None
    }

    def bad(problem: str) -> Row:
        return Row(line, text, problem=problem)

    for name in REQUIRED:
        if not text.get(name):
            return bad(f"no {name}")
    fields = {
        name: text[name] for name in ("external_id", "name", "age", "gender", "address") if text.get(name)
    }
    age = fields.get("age")
    if age is not None and not (age.isascii() and age.isdigit() and int(age) <= 150):
        return bad(f"age {age!r} is not a whole number 0..150")
    if text.get("attributes"):
        try:
            attributes = json.loads(text["attributes"])
        except json.JSONDecodeError as error:
            return bad(f"attributes are not JSON: {error}")
        if not isinstance(attributes, dict):
            return bad("attributes must be a JSON object")
        fields["attributes"] = text["attributes"]
    names = [name.strip() for name in text["photos"].split(";") if name.strip()]
    if not 1 <= len(names) <= MAX_PHOTOS:
        return bad(f"{len(names)} photos: 1 to {MAX_PHOTOS} a person")
    photos = tuple(images / name for name in names)
    absent = [name for name, photo in zip(names, photos, strict=True) if not photo.is_file()]
    if absent:
        return bad(f"no photo {', '.join(absent)} under {images}")
    return Row(line, text, fields, photos)


@dataclass
class Importer:
    client: httpx.Client
    pick_largest: bool = False
    force: bool = False
    stopped: threading.Event = field(default_factory=threading.Event)

    def send(self, row: Row) -> tuple[Outcome, str]:
        """One row through the API: (outcome, what the server said when it failed)."""
        if row.problem is not None:
            return "failed", row.problem
        files = [
            ("files", (photo.name, photo.read_bytes(), mimetypes.guess_type(photo.name)[0] or "image/jpeg"))
            for photo in row.photos
        ]
        params = {"pick": "largest"} if self.pick_largest else {}
        if self.force:
            params["force"] = "true"
        for attempt in range(1 + max(BUSY_RETRIES, UNREACHABLE_RETRIES)):
            if self.stopped.is_set():
                raise Abort("stopped")
            try:
                answer = self.client.post("/v1/people", data=row.fields, files=files, params=params)
            except httpx.TransportError as error:
                if attempt >= UNREACHABLE_RETRIES:
                    raise Abort(f"the API does not answer: {error}") from error
                time.sleep(2**attempt)
                continue
            if answer.status_code == 503 and attempt < BUSY_RETRIES:
                time.sleep(min(10.0, float(answer.headers.get("retry-after", "1") or 1)))
                continue
            break
        if answer.status_code == 201:
            return "imported", ""
        detail = _detail(answer)
        if answer.status_code == 409 and not _duplicate_identity(answer):
            return "present", detail
        if answer.status_code in (401, 403):
            raise Abort(f"the API refused the key: {detail}")
        return "failed", f"{answer.status_code}: {detail}"


def _duplicate_identity(answer: httpx.Response) -> bool:
    """A 409 for a face of someone else, not for the row's external id: a failure, not done."""
    try:
        body = answer.json()
    except ValueError:
        return False
    return isinstance(body, dict) and str(body.get("type", "")).endswith("/duplicate-identity")


def _detail(answer: httpx.Response) -> str:
    try:
        body = answer.json()
    except ValueError:
        return answer.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)


@dataclass
class Report:
    counts: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[Row, str]] = field(default_factory=list)


def run(importer: Importer, rows: list[Row], jobs: int, console: Console) -> Report:
    """Send every row, ``jobs`` at a time, with a progress bar; Abort stops the run."""
    report = Report()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[tally]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as progress, ThreadPoolExecutor(jobs) as pool:
        task = progress.add_task("importing", total=len(rows), tally="")
        pending: dict[Future[tuple[Outcome, str]], Row] = {}
        rows_left: Iterator[Row] = iter(rows)

        def submit() -> None:
            row = next(rows_left, None)
            if row is not None:
                pending[pool.submit(importer.send, row)] = row

        for _ in range(jobs * 2):  # a few queued ahead, not the whole file at once
            submit()
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    row = pending.pop(future)
                    outcome, detail = future.result()  # Abort propagates from here
                    report.counts[outcome] += 1
                    if outcome == "failed":
                        report.failures.append((row, detail))
                    tally = ", ".join(f"{n} {what}" for what, n in sorted(report.counts.items()))
                    progress.update(task, advance=1, tally=tally)
                    submit()
        finally:
            importer.stopped.set()
            for future in pending:
                future.cancel()
    return report


def write_errors(path: Path, header: list[str], failures: list[tuple[Row, str]]) -> None:
    """The failed rows as read, then their line and why; an errors file imported again gets new ones."""
    kept = [name for name in header if name not in ("line", "error")]
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow([*kept, "line", "error"])
        for row, detail in sorted(failures, key=lambda failure: failure[0].line):
            writer.writerow([*(row.cells.get(name, "") for name in kept), row.line, detail])


def cmd_import(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    url = args.url or f"http://127.0.0.1:{settings.port}"
    if not args.key:
        print("facerec import: an admin key is needed (--key or FACEREC_API_KEY)", file=sys.stderr)
        return 2
    console = Console(stderr=True)
    try:
        header, rows = read_rows(args.csv, args.images)
        headers = {"X-API-Key": args.key}
        with httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT_S) as client:
            importer = Importer(client, pick_largest=args.pick_largest, force=args.force)
            report = run(importer, rows, max(1, args.jobs), console)
    except Abort as error:
        print(f"facerec import: {error}; what was imported stays, run it again to go on", file=sys.stderr)
        return 2
    counts = report.counts
    print(
        f"{len(rows)} rows: {counts['imported']} imported, {counts['present']} already there, "
        f"{counts['failed']} failed"
    )
    for row, detail in sorted(report.failures, key=lambda failure: failure[0].line)[:20]:
        print(f"  line {row.line} ({row.cells.get('external_id') or '-'}): {detail}")
    if len(report.failures) > 20:
        print(f"  … and {len(report.failures) - 20} more")
    if args.errors is not None:
        write_errors(args.errors, header, report.failures)
        print(f"failed rows, with why: {args.errors}")
    return 1 if report.failures else 0
