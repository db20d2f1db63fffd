"""Async gRPC client for the face models in Triton.

Tensor names and ``max_batch_size`` are read from Triton when a model is first used, not
hard-coded; every call carries a timeout and an explicit model version. Triton's
UNAVAILABLE (queue full, model not ready) becomes ``UpstreamUnavailable`` → 503 with
Retry-After; a deadline that passes becomes the same, never a hang.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient
from tritonclient.utils import InferenceServerException

from orchestrator.core.errors import UpstreamUnavailable


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    max_batch_size: int


def _unavailable(model: str, error: InferenceServerException) -> UpstreamUnavailable:
    status = str(error.status() or "")
    if "DEADLINE_EXCEEDED" in status:
        return UpstreamUnavailable(f"{model}: Triton did not answer in time")
    return UpstreamUnavailable(f"{model}: {error.message()}")


class TritonModels:
    """One gRPC channel to Triton, and what it knows about each model version."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client = InferenceServerClient(url)
        self._info: dict[tuple[str, str], ModelInfo] = {}
        self._lock = asyncio.Lock()

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> TritonModels:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def info(self, model: str, version: str = "1") -> ModelInfo:
        key = (model, version)
        if key in self._info:
            return self._info[key]
        async with self._lock:
            if key not in self._info:
                try:
                    meta: Any = await self._client.get_model_metadata(
                        model, version, as_json=True, client_timeout=self.timeout_s
                    )
                    config: Any = await self._client.get_model_config(
                        model, version, as_json=True, client_timeout=self.timeout_s
                    )
                except InferenceServerException as error:
                    raise _unavailable(model, error) from error
                self._info[key] = ModelInfo(
                    name=model,
                    version=version,
                    inputs=tuple(t["name"] for t in meta["inputs"]),
                    outputs=tuple(t["name"] for t in meta["outputs"]),
                    max_batch_size=int(config["config"].get("max_batch_size", 0)),
                )
        return self._info[key]

    async def infer(self, model: str, batch: np.ndarray, version: str = "1") -> dict[str, np.ndarray]:
        """Run a batch [N, ...] of the model's single input; outputs are [N, ...] each.

        A batch larger than the model's max_batch_size is split into several requests that
        Triton may schedule together.
        """
        info = await self.info(model, version)
        limit = info.max_batch_size or len(batch)
        chunks = [batch[i : i + limit] for i in range(0, len(batch), limit)]
        parts = await asyncio.gather(*(self._infer_one(info, chunk) for chunk in chunks))
        return {name: np.concatenate([p[name] for p in parts]) for name in info.outputs}

    async def _infer_one(self, info: ModelInfo, batch: np.ndarray) -> dict[str, np.ndarray]:
        tensor = InferInput(info.inputs[0], list(batch.shape), "FP32")
        tensor.set_data_from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        try:
            result = await self._client.infer(
                info.name,
                [tensor],
                model_version=info.version,
                outputs=[InferRequestedOutput(name) for name in info.outputs],
                client_timeout=self.timeout_s,
            )
        except InferenceServerException as error:
            raise _unavailable(info.name, error) from error
        return {name: result.as_numpy(name) for name in info.outputs}

    async def statistics(self, model: str = "", version: str = "") -> dict[str, Any]:
        stats: Any = await self._client.get_inference_statistics(
            model, version, as_json=True, client_timeout=self.timeout_s
        )
        return dict(stats)

    async def repository_index(self) -> list[dict[str, Any]]:
        try:
            index: Any = await self._client.get_model_repository_index(
                as_json=True, client_timeout=self.timeout_s
            )
        except InferenceServerException as error:
            raise _unavailable("repository", error) from error
        return list(index.get("models", []))

    async def is_ready(self, model: str, version: str = "1") -> bool:
        try:
            return bool(await self._client.is_model_ready(model, version, client_timeout=self.timeout_s))
        except InferenceServerException:
            return False
