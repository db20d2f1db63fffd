"""Past capacity the API sheds load: 503 problem+json with Retry-After, before any model work.

"Quick" is shown by what a refusal costs, not by timing it (two shared cores make timings
noise): Triton's own counters show that only served requests reached the models.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtests.gallery import ensure_gallery
from orchestrator.modelrepo.catalog import FACE_CHAIN
from tests.load.conftest import ADMISSION_LIMIT
from tests.support import augment
from tests.support.stack import ADMIN_KEY, Stack

log = logging.getLogger(__name__)
pytestmark = [pytest.mark.load, pytest.mark.integration]

CONCURRENT = 40
OVERLOAD_S = 4.0
MAX_CALLS_PER_CLIENT = 200


async def _recognize(client: httpx.AsyncClient, data: bytes) -> tuple[httpx.Response, float]:
    started = time.perf_counter()
    response = await client.post("/v1/recognize", files={"file": ("probe.jpg", data)})
    return response, time.perf_counter() - started


async def _client_loop(
    client: httpx.AsyncClient, probe: tuple[bytes, str], deadline: float
) -> list[tuple[httpx.Response, float, str]]:
    """One impatient client: sends again as soon as it has an answer, until the deadline."""
    data, expected = probe
    calls = []
    for _ in range(MAX_CALLS_PER_CLIENT):
        if time.monotonic() >= deadline:
            break
        response, seconds = await _recognize(client, data)
        calls.append((response, seconds, expected))
        if response.status_code == 503:
            await asyncio.sleep(0.05)  # not the Retry-After a polite client waits: keep the overload
    return calls


async def test_overload_answers_fast_503_and_only_correct_200(overload_stack: Stack, photos: Path) -> None:
    # The load gallery, which the Locust scenarios on this stack use too: one record per person,
    # so their enrolments are not refused as duplicate identities.
    ensure_gallery(overload_stack.api.url, ADMIN_KEY, photos)
    probes = [
        (augment.scaled((photos / "obama3.jpg").read_bytes(), 0.4), "Barack Obama"),
        (augment.scaled((photos / "biden.jpg").read_bytes(), 0.4), "Joe Biden"),
    ]
    async with httpx.AsyncClient(
        base_url=overload_stack.api.url,
        headers={"X-API-Key": ADMIN_KEY},
        timeout=120.0,
        limits=httpx.Limits(max_connections=CONCURRENT),
    ) as client:
        await _recognize(client, probes[0][0])  # warm: first calls read model metadata
        detections_before = _successes(overload_stack, FACE_CHAIN)
        deadline = time.monotonic() + OVERLOAD_S
        per_client = await asyncio.gather(
            *(_client_loop(client, probes[i % len(probes)], deadline) for i in range(CONCURRENT))
        )
    answers = [answer for calls in per_client for answer in calls]
    detections = _successes(overload_stack, FACE_CHAIN) - detections_before

    statuses = [response.status_code for response, _, _ in answers]
    assert set(statuses) <= {200, 503}, statuses
    shed = [(r, t) for r, t, _ in answers if r.status_code == 503]
    served = [answer for answer in answers if answer[0].status_code == 200]
    assert shed, f"no request was shed with a limit of {ADMISSION_LIMIT} and {CONCURRENT} clients"
    assert served, "nothing was served"

    for response, _ in shed:
        assert response.headers["content-type"].startswith("application/problem+json")
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["status"] == 503
    for response, _, expected in served:
        face = response.json()["faces"][0]
        assert face["decision"] == "match" and face["matches"][0]["name"] == expected, response.text

    log.info("%d served, %d shed, %d face_chain requests", len(served), len(shed), detections)
    # One image, one face_chain request: a refused request never reached a model.
    assert detections == len(served), f"{detections} face_chain requests for {len(served)} served images"


def _successes(stack: Stack, model: str) -> int:
    """Triton's count of successful requests to ``model`` (all versions)."""
    text = httpx.get(stack.triton.metrics_url, timeout=10.0).text
    return round(
        sum(
            sample.value
            for family in text_string_to_metric_families(text)
            if family.name == "nv_inference_request_success"  # the parser names samples "…_total"
            for sample in family.samples
            if sample.labels.get("model") == model
        )
    )
