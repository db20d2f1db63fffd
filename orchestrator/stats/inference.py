"""Triton's per-model statistics, read from its statistics extension.

Triton's counters are cumulative since it started and shared by every replica that calls it,
so two readings a few seconds apart, from any replica, give the batch size and the queue
time of those seconds: the dashboard differences them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class TritonModelStatistics(BaseModel):
    model: str
    version: str
    inference_count: int = Field(description="inputs inferred since Triton started: a batch of n counts n")
    execution_count: int = Field(description="model executions: one per batch run")
    average_batch_size: float | None = Field(description="inference_count / execution_count")
    average_queue_ms: float = Field(description="queue_ns / success_count, in ms")
    success_count: int = Field(description="requests that succeeded")
    queue_ns: int = Field(description="the time those requests waited in the scheduler's queue, summed")


HEALTH_FIELDS = {
    "model",
    "version",
    "inference_count",
    "execution_count",
    "average_batch_size",
    "average_queue_ms",
}
"""What ``/health/detailed`` reports of each model: the averages, not the raw counters."""


def triton_statistics(stats: dict[str, Any]) -> list[TritonModelStatistics]:
    """Each model version of Triton's ``get_inference_statistics`` answer (as JSON)."""
    rows = []
    for model in stats.get("model_stats", []):
        inferences = int(model.get("inference_count", 0))
        executions = int(model.get("execution_count", 0))
        queue_ns = int(model.get("inference_stats", {}).get("queue", {}).get("ns", 0))
        successes = int(model.get("inference_stats", {}).get("success", {}).get("count", 0))
        rows.append(
            TritonModelStatistics(
                model=model["name"],
                version=model["version"],
                inference_count=inferences,
                execution_count=executions,
                average_batch_size=round(inferences / executions, 2) if executions else None,
                average_queue_ms=round(queue_ns / (successes or 1) / 1e6, 3),
                success_count=successes,
                queue_ns=queue_ns,
            )
        )
    return rows
