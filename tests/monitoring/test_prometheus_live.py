"""A real Prometheus scrapes a real stack: Triton's counters and the orchestrator's read back."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from orchestrator.runtime.triton_server import TritonServer
from tests.conftest import unavailable
from tests.e2e.flows import best_name, make_gallery, recognize
from tests.monitoring.prometheus_server import PrometheusServer, find_binary, scrape_config
from tests.monitoring.promql import PROMETHEUS_DIR
from tests.support import augment
from tests.support.stack import Stack, sqlite_url

pytestmark = pytest.mark.integration

RECOGNITIONS = 4
SETTLE_S = 30.0
"""Triton refreshes its metrics every ~2 s and Prometheus scrapes every 1 s: the slack."""


def _address(url: str) -> str:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    return f"{parts.hostname}:{parts.port}"


@pytest.fixture(scope="module")
def monitored_stack(triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("monitored")
    stack = Stack(root, triton_server, sqlite_url(root), None)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def prometheus(
    monitored_stack: Stack, triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    binary = find_binary()
    if binary is None:
        unavailable("prometheus is not installed (apt-get install --no-install-recommends prometheus)")
    assert binary is not None
    targets = {
        "triton": _address(triton_server.metrics_url),
        "orchestrator": _address(monitored_stack.api.url),
        "search": _address(monitored_stack.search.url),
    }
    config = scrape_config(targets, PROMETHEUS_DIR / "rules.yml")
    with PrometheusServer(binary, tmp_path_factory.mktemp("prometheus"), config) as server:
        yield server


def _triton_inference_count(triton: TritonServer, model: str) -> int:
    """The model's inference count as Triton exports it on /metrics, every version summed."""
    text = httpx.get(triton.metrics_url, timeout=10.0).text
    return sum(
        int(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in ("nv_inference_count", "nv_inference_count_total")
        and sample.labels.get("model") == model
    )


def _settled_inference_count(triton: TritonServer, model: str, quiet_s: float = 2.0) -> int:
    """The count once it has not moved for ``quiet_s`` (at most SETTLE_S of waiting)."""
    count = _triton_inference_count(triton, model)
    deadline = time.monotonic() + SETTLE_S
    while time.monotonic() < deadline:
        time.sleep(quiet_s)
        now = _triton_inference_count(triton, model)
        if now == count:
            break
        count = now
    return count


def _eventually(check: Callable[[], bool], timeout_s: float = SETTLE_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.5)
    return check()


def test_prometheus_reads_triton_and_orchestrator(
    prometheus: PrometheusServer, monitored_stack: Stack, triton_server: TritonServer, photos: Path
) -> None:
    # Traffic only once Prometheus holds a sample from before it, so rates see the increase.
    assert _eventually(lambda: prometheus.scalar('sum(nv_inference_count{model="arcface"})') is not None)
    with monitored_stack.client() as client:
        make_gallery(client, photos)
        probe = augment.scaled((photos / "obama3.jpg").read_bytes(), 0.5)
        for _ in range(RECOGNITIONS):
            assert best_name(recognize(client, probe)) == "Barack Obama"

    assert _eventually(lambda: all(prometheus.scalar(f'up{{job="{j}"}}') == 1 for j in ("triton", "search")))

    # Triton's own export is the truth; the scraped series must reach it. The Triton is the
    # session's: read it once work queued by earlier tests has run out.
    expected = _settled_inference_count(triton_server, "arcface")
    assert expected >= RECOGNITIONS
    scraped: list[float | None] = []

    def caught_up() -> bool:
        scraped.append(prometheus.scalar('sum(nv_inference_count{model="arcface"})'))
        return scraped[-1] == expected

    assert _eventually(caught_up), f"Prometheus {scraped[-3:]} vs Triton {expected}"
    assert scraped[-1] is not None and scraped[-1] > 0

    recognitions = 'sum(facerec_http_requests_total{job="orchestrator",route="/v1/recognize",status="200"})'
    assert _eventually(lambda: (prometheus.scalar(recognitions) or 0) >= RECOGNITIONS)

    # The deployment's recording rules evaluate against real series (two samples of the
    # increase inside the rule's 1 m window give a batch size).
    batch = 'triton:average_batch_size:ratio_rate1m{model="arcface"}'
    assert _eventually(lambda: (prometheus.scalar(batch) or 0) >= 1), prometheus.query(batch)
