"""A Locust scenario end to end, briefly: answers checked, CSV and HTML written, no failure."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from loadtests.locust_run import run_locust
from tests.support.stack import ADMIN_KEY, Stack

pytestmark = [pytest.mark.load, pytest.mark.integration]


def test_mixed_scenario_runs_clean(overload_stack: Stack, photos: Path, tmp_path: Path) -> None:
    # Two users stay under the stack's admission limit of 4 images: no 503 is expected.
    out = tmp_path / "mixed"
    summary = run_locust(
        "mixed",
        overload_stack.api.url,
        out,
        users=2,
        run_time_s=5,
        env={"FACEREC_ADMIN_KEY": ADMIN_KEY, "FACEREC_LOAD_PHOTOS": str(photos)},
    )
    assert summary.exit_code == 0
    assert summary.requests > 0 and summary.failures == 0
    assert Path(f"{out}.html").stat().st_size > 0
    with Path(f"{out}_stats.csv").open() as stats:
        names = {row["Name"] for row in csv.DictReader(stats)}
    # URLs are grouped by name= (no per-id rows).
    assert {"/v1/recognize", "/v1/people/{id}/faces"} <= names


def test_the_report_scenario_sends_raw_bodies_when_asked(
    overload_stack: Stack, photos: Path, tmp_path: Path
) -> None:
    """FACEREC_LOAD_BODY=raw: each image as the whole body; a server reading only forms would
    answer 422, and every answer is checked for the right person."""
    summary = run_locust(
        "recognise",
        overload_stack.api.url,
        tmp_path / "raw",
        users=2,
        run_time_s=5,
        env={"FACEREC_ADMIN_KEY": ADMIN_KEY, "FACEREC_LOAD_PHOTOS": str(photos), "FACEREC_LOAD_BODY": "raw"},
    )
    assert summary.exit_code == 0
    assert summary.requests > 0 and summary.failures == 0
    with overload_stack.client() as admin:
        recent = admin.get("/v1/log", params={"limit": 5}).json()["items"]
    assert recent and all(entry["filename"] is None for entry in recent), recent
