"""Triton's statistics extension, sampled before and after a load step.

The counters are cumulative since the model loaded, so a step's figures are differences:
average batch size = Δ inference_count / Δ execution_count, queue time per inference =
Δ queue ns / Δ successful inferences.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class ModelCounters:
    inferences: int
    executions: int
    successes: int
    queue_ns: int


def sample(http_url: str, timeout_s: float = 10.0) -> dict[str, ModelCounters]:
    """``GET /v2/models/stats`` → counters per model name (all versions summed)."""
    response = httpx.get(f"{http_url}/v2/models/stats", timeout=timeout_s)
    response.raise_for_status()
    counters: dict[str, ModelCounters] = {}
    for model in response.json().get("model_stats", []):
        stats = model.get("inference_stats", {})
        current = ModelCounters(
            inferences=int(model.get("inference_count", 0)),
            executions=int(model.get("execution_count", 0)),
            successes=int(stats.get("success", {}).get("count", 0)),
            queue_ns=int(stats.get("queue", {}).get("ns", 0)),
        )
        previous = counters.get(model["name"])
        if previous is not None:
            current = ModelCounters(
                previous.inferences + current.inferences,
                previous.executions + current.executions,
                previous.successes + current.successes,
                previous.queue_ns + current.queue_ns,
            )
        counters[model["name"]] = current
    return counters


@dataclass(frozen=True)
class StepBatching:
    average_batch: float
    queue_ms: float
    """Mean time a request waited in Triton's queue."""


def between(before: dict[str, ModelCounters], after: dict[str, ModelCounters]) -> dict[str, StepBatching]:
    result = {}
    for name, end in after.items():
        start = before.get(name, ModelCounters(0, 0, 0, 0))
        executions = end.executions - start.executions
        successes = end.successes - start.successes
        result[name] = StepBatching(
            average_batch=(end.inferences - start.inferences) / executions if executions else math.nan,
            queue_ms=(end.queue_ns - start.queue_ns) / successes / 1e6 if successes else math.nan,
        )
    return result
