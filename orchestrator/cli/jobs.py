"""``facerec worker`` (a job worker) and ``facerec jobs submit|watch|list`` (jobs through the API)."""

from __future__ import annotations

import argparse
import mimetypes
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from orchestrator.cli.common import settings_from, with_services

ENDED = ("done", "failed", "cancelled")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}
POLL_S = 0.5


def cmd_worker(args: argparse.Namespace) -> int:
    from orchestrator.jobs.worker import default_name, run_worker

    settings = with_services(settings_from(args), args)
    run_worker(settings, args.name or default_name(), args.concurrency or settings.jobs.concurrency)
    return 0


def _client(args: argparse.Namespace) -> httpx.Client:
    settings = settings_from(args)
    url = args.url or f"http://127.0.0.1:{settings.port}"
    if not args.api_key:
        raise SystemExit("facerec jobs: an API key is needed (--api-key or FACEREC_API_KEY)")
    return httpx.Client(base_url=url, headers={"X-API-Key": args.api_key}, timeout=300.0)


def _answer(response: httpx.Response, expected: int = 200) -> Any:
    if response.status_code != expected:
        try:
            detail = response.json().get("detail", response.text)
        except ValueError:
            detail = response.text
        raise SystemExit(f"facerec jobs: {response.status_code}: {detail}")
    return response.json()


def _images(paths: list[Path]) -> list[Path]:
    """The files named, and the images in the folders named, in name order."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return found


def cmd_submit(args: argparse.Namespace) -> int:
    """Upload a job; print its id (and follow it with ``--watch``)."""
    form: dict[str, Any] = {"kind": args.kind, "priority": args.priority}
    files: list[tuple[str, tuple[str, bytes, str]]] = []
    if args.archive:
        files.append(("archive", (args.archive.name, args.archive.read_bytes(), "application/zip")))
    for image in _images(args.images):
        kind = mimetypes.guess_type(image.name)[0] or "application/octet-stream"
        files.append(("files", (image.name, image.read_bytes(), kind)))
    with _client(args) as client:
        job = _answer(client.post("/v1/jobs", data=form, files=files), 202)
        print(
            f"job {job['job_id']}: {job['kind']}, {job['total']} items, {job['priority']} priority",
            flush=True,
        )
        return _watch(client, job["job_id"]) if args.watch else 0


def cmd_watch(args: argparse.Namespace) -> int:
    with _client(args) as client:
        return _watch(client, args.job_id)


def _watch(client: httpx.Client, job_id: int) -> int:
    """A progress bar until the job ends; 0 if every item is done, 1 otherwise."""
    console = Console(stderr=True)
    job = _answer(client.get(f"/v1/jobs/{job_id}"))
    columns = (
        TextColumn(f"job {job_id}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[state]} · {task.fields[failed]} failed"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("", total=job["total"], state=job["state"], failed=job["failed"])
        while True:
            progress.update(
                bar, completed=job["done"] + job["failed"], state=job["state"], failed=job["failed"]
            )
            if job["state"] in ENDED:
                break
            time.sleep(POLL_S)
            job = _answer(client.get(f"/v1/jobs/{job_id}"))
    print(f"job {job_id} {job['state']}: {job['done']} done, {job['failed']} failed of {job['total']}")
    if job["failed"]:
        failed = _answer(client.get(f"/v1/jobs/{job_id}/items", params={"state": "failed", "limit": 10}))
        dead = _answer(client.get(f"/v1/jobs/{job_id}/items", params={"state": "dead", "limit": 10}))
        for item in failed["items"] + dead["items"]:
            print(
                f"  {item['filename']}: {item['state']}: {(item['error'] or {}).get('detail')}",
                file=sys.stderr,
            )
    return 0 if job["state"] == "done" and not job["failed"] else 1


def cmd_list(args: argparse.Namespace) -> int:
    params = {"state": args.state} if args.state else {}
    with _client(args) as client:
        page = _answer(client.get("/v1/jobs", params={**params, "limit": args.limit}))
    for job in page["items"]:
        print(
            f"{job['job_id']:>6} {job['kind']:<9} {job['priority']:<6} {job['state']:<9} "
            f"{job['done'] + job['failed']:>6}/{job['total']:<6} {job['created_at']}"
        )
    return 0
