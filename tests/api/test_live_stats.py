"""The dashboard's live figures (``GET /v1/stats/live``) and the job workers (``GET
/v1/jobs/workers``), in-process.

The per-minute rows are written straight into the database (as replicas' minute writers
would), so the sums over replicas and the percentiles of the summed histograms can be
checked to the digit; "now" is this process's own in-memory count of the requests sent.
"""

from __future__ import annotations

import os
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import update
from sqlmodel import col

from orchestrator.clients.triton import TritonModels
from orchestrator.core.resources import Resources
from orchestrator.db.job_tables import JobWorker
from orchestrator.db.tables import RequestMinute
from orchestrator.db.types import utcnow
from orchestrator.pipeline.face_pipeline import FacePipeline
from orchestrator.recognition.cache import RecognitionCache
from orchestrator.recognition.log_writer import RecognitionLogWriter
from orchestrator.recognition.search_batching import SearchBatcher
from orchestrator.recognition.service import Recognition
from orchestrator.stats import latency
from orchestrator.stats.live import is_monitoring
from tests.api.conftest import Api, assert_problem
from tests.api.fakes import FakeTriton, png
from tests.api.test_log_and_stats import DictCache, OneFacePipeline, OneHitSearch

pytestmark = pytest.mark.unit

IMAGE = png(64, 64)


def resources_of(api: Api) -> Resources:
    resources: Resources = api.app.state.resources
    return resources


def minute_row(
    minute: Any, route: str, replica: str, ms: float, requests: int, **counts: int
) -> RequestMinute:
    """One replica's minute of one route: ``requests`` all taking ``ms``."""
    histogram = latency.empty()
    histogram[latency.bucket_of(ms)] = requests
    return RequestMinute(
        minute=minute,
        route=route,
        replica=replica,
        requests=requests,
        errors=counts.get("errors", 0),
        server_errors=counts.get("server_errors", 0),
        faces=counts.get("faces", 0),
        cache_hits=counts.get("cache_hits", 0),
        latency=histogram,
        max_ms=ms,
    )


async def live(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    answer = await client.get("/v1/stats/live", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.mark.parametrize(
    ("route", "monitoring"),
    [
        ("GET /health", True),
        ("GET /health/detailed", True),
        ("GET /metrics", True),
        ("GET /v1/stats", True),
        ("GET /v1/stats/live", True),
        ("POST /v1/recognize", False),
        ("GET /v1/people", False),
        ("GET /dashboard", False),
        ("unmatched", False),
    ],
)
def test_the_monitoring_routes_are_told_apart(route: str, monitoring: bool) -> None:
    assert is_monitoring(route) is monitoring


async def test_a_minute_is_summed_over_the_replicas_without_the_monitoring_routes(
    api: Api, admin: httpx.AsyncClient
) -> None:
    now = utcnow()
    busy = now.replace(second=0, microsecond=0) - timedelta(minutes=5)  # long over, and written
    resources_of(api).gallery.add_request_minutes(
        [
            # 50 fast answers on one replica, 50 slow ones on the other.
            minute_row(busy, "POST /v1/recognize", "replica-a", 10, 50, errors=2, faces=48, cache_hits=12),
            minute_row(
                busy, "POST /v1/recognize", "replica-b", 100, 50, errors=2, server_errors=1, cache_hits=12
            ),
            # A batch's cache hits count, but not in the ratio: its images have no count of their own.
            minute_row(busy, "POST /v1/recognize/batch", "replica-a", 100, 20, cache_hits=5, faces=30),
            # The dashboard's, the probes' and the scraper's requests: not traffic.
            minute_row(busy, "GET /health/detailed", "replica-a", 2, 1000, errors=1000),
            minute_row(busy, "GET /v1/stats/live", "replica-b", 30000, 500),
            minute_row(busy, "GET /metrics", "replica-b", 1, 300),
        ]
    )

    body = await live(admin, minutes=10)
    window = body["window"]
    minutes = window["minutes"]
    assert len(minutes) == 10 and minutes[0]["minute"] == window["since"]
    starts = [row["minute"] for row in minutes]
    assert starts == sorted(starts) and len(set(starts)) == 10
    flush_s = resources_of(api).settings.log.stats_flush_s
    assert datetime.fromisoformat(window["until"]) <= now - timedelta(seconds=flush_s)
    (row,) = [row for row in minutes if datetime.fromisoformat(row["minute"]) == busy]
    assert row["requests"] == 120 and row["rate_per_s"] == 2.0
    assert row["errors"] == 4 and row["error_rate"] == round(4 / 120, 4)
    assert row["faces"] == 78 and row["cache_hits"] == 29
    assert row["cache_hit_ratio"] == 0.25, "24 hits of 96 answered single recognitions"
    # The summed histogram: 50 in (7, 10] ms, 70 in (70, 100] ms. p50 is rank 60, the 10th of
    # the second bucket: 70 + 30 × 10/70; p99 is rank 118.8: 70 + 30 × 68.8/70.
    assert row["p50_ms"] == round(70 + 30 * 10 / 70, 2)
    assert row["p99_ms"] == round(70 + 30 * 68.8 / 70, 2)
    quiet = [other for other in minutes if other is not row]
    assert all(other["requests"] == 0 and other["p99_ms"] is None for other in quiet)
    assert all(other["error_rate"] is None and other["cache_hit_ratio"] is None for other in quiet)


async def test_a_minute_not_yet_written_by_every_replica_is_not_shown(
    api: Api, admin: httpx.AsyncClient
) -> None:
    current = utcnow().replace(second=0, microsecond=0)
    resources_of(api).gallery.add_request_minutes([minute_row(current, "GET /v1/people", "replica-a", 5, 7)])
    window = (await live(admin, minutes=5))["window"]
    assert sum(row["requests"] for row in window["minutes"]) == 0
    assert len(window["minutes"]) == 5


async def test_now_is_this_replicas_requests_without_the_dashboards_own(
    api: Api, admin: httpx.AsyncClient
) -> None:
    for _ in range(5):
        assert (await admin.get("/v1/people")).status_code == 200
    assert (await admin.get("/v1/people/0")).status_code == 422
    assert (await admin.get("/health/detailed")).status_code == 200
    assert (await admin.get("/metrics")).status_code == 200

    first = (await live(admin))["replica"]
    second = (await live(admin))["replica"]
    assert first["pid"] == os.getpid()
    assert 1 <= first["window_s"] <= 120
    for replica in (first, second):
        traffic = replica["traffic"]
        assert traffic["requests"] == 6, "the polls, the probe and the scrape are not counted"
        assert (traffic["errors"], traffic["error_rate"]) == (1, round(1 / 6, 4))
        assert traffic["rate_per_s"] == pytest.approx(6 / replica["window_s"], rel=0.05)
        assert 0 < traffic["p50_ms"] <= traffic["p99_ms"]
    routes = {route["route"]: route for route in second["routes"]}
    assert set(routes) == {"GET /v1/people", "GET /v1/people/{person_id}"}
    assert (routes["GET /v1/people"]["requests"], routes["GET /v1/people"]["errors"]) == (5, 0)
    assert routes["GET /v1/people/{person_id}"]["error_rate"] == 1.0
    assert second["cache"]["state"] == "disabled"


async def test_now_counts_faces_and_cache_hits_of_recognitions(api: Api, admin: httpx.AsyncClient) -> None:
    resources = resources_of(api)
    recognition = Recognition(
        resources.live,
        cast(SearchBatcher, OneHitSearch(api.seeded.face_id)),
        cast(FacePipeline, OneFacePipeline()),
        cast(RecognitionCache, DictCache()),
        RecognitionLogWriter(resources.gallery),
        resources.settings.match_threshold,
    )
    api.app.state.resources = replace(resources, recognition=recognition)
    for data in (IMAGE, IMAGE, IMAGE, png(48, 48), IMAGE[:100]):
        await admin.post("/v1/recognize", files={"file": ("face.png", data, "image/png")})

    traffic = (await live(admin))["replica"]["traffic"]
    assert (traffic["requests"], traffic["errors"], traffic["faces"], traffic["cache_hits"]) == (5, 1, 4, 2)
    assert traffic["cache_hit_ratio"] == 0.5, "2 of the 4 answered from the cache"


class CountingTriton(FakeTriton):
    """Statistics as Triton's JSON has them: 64-bit counters as strings."""

    async def statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        return {
            "model_stats": [
                {
                    "name": "arcface",
                    "version": "1",
                    "inference_count": "120",
                    "execution_count": "30",
                    "inference_stats": {
                        "success": {"count": "40", "ns": "9"},
                        "queue": {"count": "40", "ns": "80000000"},
                    },
                },
                {"name": "scrfd", "version": "1", "inference_count": "0", "execution_count": "0"},
            ]
        }


async def test_triton_counters_come_raw_with_their_averages(api: Api, admin: httpx.AsyncClient) -> None:
    api.app.state.resources = replace(resources_of(api), triton=cast(TritonModels, CountingTriton()))
    body = await live(admin)
    arcface, scrfd = body["triton"]
    assert arcface == {
        "model": "arcface",
        "version": "1",
        "inference_count": 120,
        "execution_count": 30,
        "average_batch_size": 4.0,
        "average_queue_ms": 2.0,
        "success_count": 40,
        "queue_ns": 80_000_000,
    }
    assert (scrfd["average_batch_size"], scrfd["average_queue_ms"], scrfd["success_count"]) == (None, 0.0, 0)
    health = (await admin.get("/health/detailed")).json()
    assert health["triton"][0] == {
        "model": "arcface",
        "version": "1",
        "inference_count": 120,
        "execution_count": 30,
        "average_batch_size": 4.0,
        "average_queue_ms": 2.0,
    }, "/health/detailed answers as before, without the raw counters"


class DownTriton(FakeTriton):
    async def statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        raise ConnectionRefusedError("triton:8001 refused the connection")


async def test_a_part_that_fails_is_an_error_in_the_answer_not_a_500(
    api: Api, admin: httpx.AsyncClient
) -> None:
    api.app.state.resources = replace(resources_of(api), triton=cast(TritonModels, DownTriton()), jobs=None)
    body = await live(admin)
    assert body["triton"] is None and "refused the connection" in body["errors"]["triton"]
    assert body["queues"] is None and "REDIS_URL" in body["errors"]["queues"]
    assert set(body["errors"]) == {"triton", "queues"}
    assert body["gallery"] == {"faces": 1, "people": 1}
    assert body["workers"] == [] and body["window"] is not None
    assert body["process"]["pid"] == os.getpid() and body["machine"]["memory_total_bytes"] > 0


async def test_the_queues_and_workers_are_in_the_live_figures(
    api: Api, admin: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "orchestrator.jobs.workforce.queue_lengths", lambda broker: {"high": 0, "normal": 7, "low": 2}
    )
    resources_of(api).gallery.heartbeat("host-42", 4)
    body = await live(admin)
    assert body["errors"] == {}
    assert body["queues"] == {"high": 0, "normal": 7, "low": 2}
    assert [(w["name"], w["alive"], w["concurrency"]) for w in body["workers"]] == [("host-42", True, 4)]


def silence(api: Api, worker: str, for_: timedelta) -> None:
    """The worker's last heartbeat moved back, as if it had gone quiet that long ago."""
    with resources_of(api).gallery.engine.begin() as connection:
        connection.execute(
            update(JobWorker).where(col(JobWorker.name) == worker).values(seen_at=utcnow() - for_)
        )


async def test_workers_are_listed_alive_or_lost_with_their_running_items(
    api: Api, recognizer: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        "orchestrator.jobs.workforce.queue_lengths", lambda broker: {"high": 1, "normal": 0, "low": 0}
    )
    gallery = resources_of(api).gallery
    for name in ("busy-1", "lost-2", "gone-3"):
        gallery.heartbeat(name, 8)
    assert gallery.claim_item(api.seeded.job_id, 0, "busy-1") is not None
    lost_after_s = resources_of(api).settings.jobs.lost_after_s
    silence(api, "lost-2", timedelta(seconds=lost_after_s + 5))
    silence(api, "gone-3", timedelta(hours=2))

    answer = await recognizer.get("/v1/jobs/workers")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(w["name"], w["alive"], w["running"], w["concurrency"]) for w in body["items"]] == [
        ("busy-1", True, 1, 8),
        ("lost-2", False, 0, 8),
    ], "the worker silent for two hours is left out"
    assert body["lost_after_s"] == lost_after_s
    assert (body["queues"], body["queues_error"]) == ({"high": 1, "normal": 0, "low": 0}, None)
    busy = body["items"][0]
    assert busy["started_at"] <= busy["seen_at"]


async def test_workers_are_listed_without_a_broker_with_the_reason(
    api: Api, recognizer: httpx.AsyncClient
) -> None:
    api.app.state.resources = replace(resources_of(api), jobs=None)
    resources_of(api).gallery.heartbeat("solo", 2)
    body = (await recognizer.get("/v1/jobs/workers")).json()
    assert [w["name"] for w in body["items"]] == ["solo"]
    assert body["queues"] is None and "REDIS_URL" in body["queues_error"]


async def test_the_live_figures_are_for_admins(api: Api, recognizer: httpx.AsyncClient) -> None:
    assert_problem(await recognizer.get("/v1/stats/live"), 403, "admin role")
    async with api.session(api.seeded.recognize_user) as user:
        assert_problem(await user.get("/v1/stats/live"), 403, "admin role")
    async with api.session(api.seeded.admin_user) as root:
        assert (await root.get("/v1/stats/live")).status_code == 200


@pytest.mark.parametrize("minutes", [4, 181, "x"])
async def test_a_window_out_of_bounds_is_422(admin: httpx.AsyncClient, minutes: Any) -> None:
    assert_problem(await admin.get("/v1/stats/live", params={"minutes": minutes}), 422)
