"""Names the real services export: the orchestrator's and search service's registries, and Triton."""

from __future__ import annotations

import httpx
import pytest

from orchestrator.api.metrics import ApiMetrics
from orchestrator.runtime.triton_server import TritonServer
from search_service.metrics import Metrics
from tests.monitoring.promql import BUILTIN, exposed_names, exposition_names, recorded_names


@pytest.fixture(scope="session")
def triton_metric_names(triton_server: TritonServer) -> set[str]:
    """nv_* series of the real Triton (per-model series exist once the models are loaded)."""
    text = httpx.get(triton_server.metrics_url, timeout=10.0).text
    names = {n for n in exposition_names(text) if n.startswith("nv_")}
    assert "nv_inference_count" in names, text[:2000]
    return names


@pytest.fixture(scope="session")
def known_names(triton_metric_names: set[str]) -> set[str]:
    service = exposed_names(ApiMetrics().registry) | exposed_names(Metrics(lambda: []).registry)
    return triton_metric_names | service | recorded_names() | BUILTIN
