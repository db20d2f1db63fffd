"""The recognition log, the per-minute statistics and the health pages, in-process.

Recognitions run through the real :class:`Recognition` service (its logging, its tally of
faces and cache hits) over stand-ins for the pipeline, the search service and the cache;
the log writer and the minute writer are flushed by hand instead of on their timers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, cast

import httpx
import numpy as np
import pytest

from orchestrator.clients.search import SearchUnavailable
from orchestrator.core.resources import Resources
from orchestrator.pipeline.face_pipeline import Analysis, FacePipeline
from orchestrator.pipeline.vision.decode import decode
from orchestrator.pipeline.vision.faces import Face
from orchestrator.recognition.answers import ImageRecognition
from orchestrator.recognition.cache import RecognitionCache
from orchestrator.recognition.log_writer import RecognitionLogWriter
from orchestrator.recognition.search_batching import SearchBatcher
from orchestrator.recognition.service import Recognition
from orchestrator.stats.minutes import MinuteWriter
from search_service.schema import Hit
from tests.api.conftest import Api, assert_problem
from tests.api.fakes import BOX, LANDMARKS_5, png

pytestmark = pytest.mark.unit

IMAGE = png(64, 64)
TRUNCATED = IMAGE[: len(IMAGE) // 2]


class OneFacePipeline:
    """The real decoder (a corrupt upload fails as it would), then one face, always."""

    async def analyse(self, data: bytes, **options: Any) -> Analysis:
        decode(data)
        face = Face(box=np.array(BOX, np.float32), det_score=0.99, sharpness=200.0)
        face.points5 = np.array(LANDMARKS_5, np.float32)
        face.embedding = np.full(512, 1 / np.sqrt(512), np.float32)
        return Analysis(faces=[face], width=64, height=64)


class OneHitSearch:
    """Every query is nearest to the seeded face, unless the service is down."""

    def __init__(self, face_id: int) -> None:
        self.face_id = face_id
        self.down = False

    async def search(self, name: str, queries: np.ndarray, k: int) -> list[list[Hit]]:
        if self.down:
            raise SearchUnavailable(503, {"title": "down", "detail": "refused"}, "http://search")
        return [[Hit(id=self.face_id, score=0.8)] for _ in range(len(queries))]


class DictCache:
    """Keeps answers in a dict: the second recognition of an image is a cache hit."""

    def __init__(self) -> None:
        self.kept: dict[str, ImageRecognition] = {}

    def key(self, image_sha256: str, params: Any, model_version: str, generation: int) -> str:
        return f"{image_sha256}:{sorted(params.items())}:{model_version}:{generation}"

    async def get(self, key: str) -> ImageRecognition | None:
        return self.kept.get(key)

    async def set(self, key: str, value: ImageRecognition) -> None:
        self.kept[key] = value


@dataclass
class Served:
    api: Api
    search: OneHitSearch
    log: RecognitionLogWriter
    minutes: MinuteWriter

    async def flushed(self) -> None:
        assert await self.log.flush()
        assert await self.minutes.flush(everything=True)


@pytest.fixture
def served(api: Api) -> Served:
    resources: Resources = api.app.state.resources
    search = OneHitSearch(api.seeded.face_id)
    log = RecognitionLogWriter(resources.gallery)
    recognition = Recognition(
        resources.live,
        cast(SearchBatcher, search),
        cast(FacePipeline, OneFacePipeline()),
        cast(RecognitionCache, DictCache()),
        log,
        resources.settings.match_threshold,
    )
    api.app.state.resources = replace(resources, recognition=recognition)
    minutes = MinuteWriter(api.app.state.metrics.minutes, resources.gallery.add_request_minutes, "replica-1")
    return Served(api, search, log, minutes)


async def recognize(client: httpx.AsyncClient, data: bytes, name: str = "face.png") -> httpx.Response:
    return await client.post("/v1/recognize", files={"file": (name, data, "image/png")})


async def log_of(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    answer = await client.get("/v1/log", params=params)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_answers_and_failures_are_logged_newest_first(served: Served, admin: httpx.AsyncClient) -> None:
    api = served.api
    async with api.client(api.seeded.recognize_key) as kiosk:
        answered = await recognize(kiosk, IMAGE, "ada.png")
        assert answered.status_code == 200, answered.text
        again = await recognize(kiosk, IMAGE, "ada.png")
        assert again.json()["cached"] is True
        assert_problem(await recognize(kiosk, TRUNCATED, "broken.png"), 400)
        served.search.down = True
        assert_problem(await recognize(kiosk, png(48, 48), "busy.png"), 503)
    await served.flushed()
    key = await api.app.state.resources.live.authenticate(api.seeded.recognize_key)

    log = await log_of(admin)
    assert log["total"] == 4
    down, broken, cached, first = log["items"]
    assert first["request_id"] == answered.headers["x-request-id"]
    assert {name: first[name] for name in ("source", "job_id", "principal", "filename", "status")} == {
        "source": "api",
        "job_id": None,
        "principal": f"key:{key.id}",
        "filename": "ada.png",
        "status": "ok",
    }
    assert (first["faces"], first["cached"], first["model_version"]) == (1, False, "1")
    assert first["error_type"] is None and first["error_detail"] is None
    ada = {"person_id": api.seeded.person_id, "name": "Ada Lovelace", "similarity": 0.8}
    assert first["matches"] == [ada]
    assert first["took_ms"] == answered.json()["took_ms"]
    assert cached["cached"] is True and cached["matches"] == first["matches"]
    assert (broken["status"], broken["error_type"], broken["filename"], broken["faces"]) == (
        "error",
        "ImageError",
        "broken.png",
        0,
    )
    assert broken["error_detail"]
    assert (down["status"], down["error_type"], down["matches"]) == ("error", "UpstreamUnavailable", [])
    assert "search service" in down["error_detail"]

    assert (await log_of(admin, status="error"))["total"] == 2
    assert (await log_of(admin, decision="match", person_id=api.seeded.person_id))["total"] == 2
    assert (await log_of(admin, person_id=api.seeded.person_id + 1))["total"] == 0
    assert (await log_of(admin, source="job"))["total"] == 0
    page = await log_of(admin, limit=1, offset=1)
    assert [item["id"] for item in page["items"]] == [broken["id"]] and page["total"] == 4
    since = first["created_at"]
    assert [item["id"] for item in (await log_of(admin, until=since))["items"]] == []
    assert (await log_of(admin, since=since))["total"] == 4
    # The ends of what a date-time can say, past what a database compares: the whole log.
    extremes = {"since": "0001-01-01T00:00:00+05:00", "until": "9999-12-31T23:59:59-23:59"}
    assert (await log_of(admin, **extremes))["total"] == 4


async def test_each_image_of_a_batch_is_an_entry_of_its_own(served: Served, admin: httpx.AsyncClient) -> None:
    files = [("files", ("a.png", IMAGE, "image/png")), ("files", ("b.png", TRUNCATED, "image/png"))]
    answer = await admin.post("/v1/recognize/batch", files=files)
    assert answer.status_code == 200, answer.text
    await served.flushed()
    items = (await log_of(admin))["items"]
    assert [(item["filename"], item["status"]) for item in items] == [("b.png", "error"), ("a.png", "ok")]
    assert {item["request_id"] for item in items} == {answer.headers["x-request-id"]}


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 1001},
        {"offset": -1},
        {"decision": "maybe"},
        {"status": "fine"},
        {"source": "cron"},
        {"person_id": 0},
        {"since": "yesterday"},
        {"since": "1700000000"},  # pydantic alone reads a number as seconds since 1970
        {"until": "0.5"},
        {"since": "2024-01-01T12:99:00Z"},
        {"until": "2026-13-01T00:00:00Z"},
    ],
)
async def test_log_parameters_out_of_bounds_are_422(admin: httpx.AsyncClient, params: dict[str, Any]) -> None:
    assert_problem(await admin.get("/v1/log", params=params), 422)


async def test_stats_sum_the_minutes_with_faces_and_cache_hits(
    served: Served, admin: httpx.AsyncClient
) -> None:
    for data in (IMAGE, IMAGE, TRUNCATED):
        await recognize(admin, data)
    served.search.down = True
    await recognize(admin, png(48, 48))
    await served.flushed()

    answer = await admin.get("/v1/stats", params={"window": "15m"})
    assert answer.status_code == 200, answer.text
    stats = answer.json()
    assert stats["window"] == "15m" and stats["since"] < stats["until"]
    rows = [row for row in stats["items"] if row["route"] == "POST /v1/recognize"]
    totals = {name: sum(row[name] for row in rows) for name in ("requests", "errors", "server_errors")}
    assert totals == {"requests": 4, "errors": 2, "server_errors": 1}
    assert sum(row["faces"] for row in rows) == 2 and sum(row["cache_hits"] for row in rows) == 1
    assert all(row["replicas"] == 1 and row["p50_ms"] <= row["p95_ms"] <= row["p99_ms"] for row in rows)
    assert all(row["p99_ms"] <= row["max_ms"] for row in rows)
    assert (await admin.get("/v1/stats")).json()["window"] == "1h"


@pytest.mark.parametrize("window", ["1m", "15m", "24h", "10080m", "168h", "7d"])
async def test_a_window_up_to_a_week_is_accepted(admin: httpx.AsyncClient, window: str) -> None:
    assert (await admin.get("/v1/stats", params={"window": window})).status_code == 200


@pytest.mark.parametrize("window", ["0m", "01h", "10081m", "169h", "8d", "1y", "1", "h", "", "1h "])
async def test_a_window_past_a_week_or_unreadable_is_422(admin: httpx.AsyncClient, window: str) -> None:
    assert_problem(await admin.get("/v1/stats", params={"window": window}), 422)


async def test_health_answers_anyone(anonymous: httpx.AsyncClient) -> None:
    answer = await anonymous.get("/health")
    assert (answer.status_code, answer.json()) == (200, {"status": "ok"})


async def test_detailed_health_reports_the_process_the_machine_and_recent_routes(
    recognizer: httpx.AsyncClient,
) -> None:
    for _ in range(3):
        assert (await recognizer.get("/v1/people")).status_code == 200
    assert (await recognizer.get("/v1/people/0")).status_code == 422
    answer = await recognizer.get("/health/detailed")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    process, machine = body["process"], body["machine"]
    assert process["pid"] == os.getpid() and process["uptime_s"] > 0
    assert process["rss_bytes"] > 10 * 2**20 and process["threads"] >= 1 and process["cpu_percent"] >= 0
    assert machine["cpus"] >= 1 and 0 <= machine["cpu_percent"] <= 100
    assert 0 < machine["memory_available_bytes"] <= machine["memory_total_bytes"]
    assert 0 < machine["disk_free_bytes"] <= machine["disk_total_bytes"]
    assert 0 < body["routes"]["window_s"] <= 300
    routes = {row["route"]: row for row in body["routes"]["items"]}
    people = routes["GET /v1/people"]
    assert people["requests"] == 3 and people["errors"] == 0 and people["error_rate"] == 0
    assert people["rate_per_s"] > 0 and 0 < people["p50_ms"] <= people["p99_ms"]
    one = routes["GET /v1/people/{person_id}"]
    assert (one["requests"], one["errors"], one["error_rate"]) == (1, 1, 1.0)


async def test_metrics_carry_the_process_and_platform_collectors(anonymous: httpx.AsyncClient) -> None:
    text = (await anonymous.get("/metrics")).text
    for name in ("process_resident_memory_bytes", "process_cpu_seconds_total", "python_info", "python_gc_"):
        assert name in text, name


async def test_an_invented_method_is_counted_as_other(api: Api, anonymous: httpx.AsyncClient) -> None:
    await anonymous.request("BREW", "/v1/people")
    text = (await anonymous.get("/metrics")).text
    assert 'method="OTHER"' in text and "BREW" not in text


async def test_a_signed_in_user_is_logged_as_the_user(served: Served, admin: httpx.AsyncClient) -> None:
    api = served.api
    async with api.session(api.seeded.recognize_user) as ada:
        answered = await recognize(ada, IMAGE, "by-ada.png")
        assert answered.status_code == 200, answered.text
        me = (await ada.get("/v1/auth/me")).json()
    await served.flushed()
    (entry,) = (await log_of(admin))["items"]
    assert (entry["principal"], entry["filename"]) == (f"user:{me['id']}", "by-ada.png")
