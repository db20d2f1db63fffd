"""Which versions of a model Triton serves, changed without downtime (explicit model control).

A load with a config override whose ``version_policy`` lists the wanted versions makes
Triton load the new ones beside those already serving, and unload the ones left out
once their in-flight requests are done.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from orchestrator.core.errors import UpstreamUnavailable

LOAD_TIMEOUT_S = 300.0
PENDING_METRIC = "nv_inference_pending_request_count"


def pending_requests(metrics_text: str, model: str, version: str) -> int:
    """Triton's queue length for one model version, from its Prometheus metrics text.

    Samples are matched by label values, in whatever order Triton writes the labels: reading
    0 by mistake would end a drain early. A version with no sample has nothing queued. Text
    that is not Prometheus exposition format raises ValueError rather than reading as 0.
    """
    return sum(
        # A sum, so a label Triton may add later (a GPU, say) splits the count without losing it.
        int(sample.value)
        for family in text_string_to_metric_families(metrics_text)
        for sample in family.samples
        if sample.name == PENDING_METRIC
        and sample.labels.get("model") == model
        and sample.labels.get("version") == version
    )


def with_versions(config: dict[str, Any], versions: Iterable[str]) -> dict[str, Any]:
    wanted = sorted({int(v) for v in versions})
    return {**config, "version_policy": {"specific": {"versions": wanted}}}


class ModelControl:
    def __init__(self, grpc_url: str, metrics_url: str | None, timeout_s: float = 10.0) -> None:
        self._client = InferenceServerClient(grpc_url)
        self.metrics_url = metrics_url
        self.timeout_s = timeout_s

    async def close(self) -> None:
        await self._client.close()

    async def serve_versions(self, model: str, versions: Iterable[str]) -> None:
        """Make exactly ``versions`` of ``model`` loaded, and wait until each is ready."""
        versions = sorted(set(versions), key=int)
        try:
            current: Any = await self._client.get_model_config(
                model, as_json=True, client_timeout=self.timeout_s
            )
            config = with_versions(current["config"], versions)
            await self._client.load_model(model, config=json.dumps(config), client_timeout=LOAD_TIMEOUT_S)
            ready = await asyncio.gather(
                *(self._client.is_model_ready(model, v, client_timeout=self.timeout_s) for v in versions)
            )
        except InferenceServerException as error:
            raise UpstreamUnavailable(
                f"Triton could not serve {model} versions {versions}: {error.message()}"
            ) from error
        if not all(ready):
            missing = [v for v, ok in zip(versions, ready, strict=True) if not ok]
            raise UpstreamUnavailable(f"{model} versions {missing} are not ready after loading")

    async def served_versions(self, model: str) -> list[str]:
        index: Any = await self._client.get_model_repository_index(
            as_json=True, client_timeout=self.timeout_s
        )
        return sorted(
            (
                m["version"]
                for m in index.get("models", [])
                if m["name"] == model and m.get("state") == "READY"
            ),
            key=int,
        )

    async def drain(self, model: str, version: str, grace_s: float, timeout_s: float = 120.0) -> None:
        """Wait until Triton has no queued request for that version, then a grace period.

        The grace covers requests that read the old (version, collection) pair just before
        the switch and have not reached Triton or the search service yet.
        """
        deadline = time.monotonic() + timeout_s
        if self.metrics_url:
            async with httpx.AsyncClient(timeout=self.timeout_s) as http:
                while time.monotonic() < deadline:
                    text = (await http.get(self.metrics_url)).text
                    if pending_requests(text, model, version) == 0:
                        break
                    await asyncio.sleep(0.1)
        await asyncio.sleep(grace_s)
