"""PNG plots of the report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend is chosen above, before pyplot loads


class StepLike(Protocol):
    variant: str
    users: int
    throughput: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    batching: dict[str, tuple[float, float]]


def _by_variant(steps: Sequence[StepLike]) -> dict[str, list[StepLike]]:
    grouped: dict[str, list[StepLike]] = {}
    for step in steps:
        grouped.setdefault(step.variant, []).append(step)
    return grouped


def throughput(steps: Sequence[StepLike], ceiling: float, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for variant, rows in _by_variant(steps).items():
        ax.plot([r.users for r in rows], [r.throughput for r in rows], marker="o", label=variant)
    ax.axhline(ceiling, color="black", linestyle="--", label=f"in-process ceiling ({ceiling:.1f}/s)")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent users")
    ax.set_ylabel("recognitions / s")
    ax.set_title("Throughput vs concurrency")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency(steps: Sequence[StepLike], path: Path) -> None:
    grouped = _by_variant(steps)
    fig, axes = plt.subplots(1, len(grouped), figsize=(5 * len(grouped), 4.2), sharey=True, squeeze=False)
    for ax, (variant, rows) in zip(axes[0], grouped.items(), strict=True):
        users = [r.users for r in rows]
        for label, values in (
            ("p50", [r.p50_ms for r in rows]),
            ("p95", [r.p95_ms for r in rows]),
            ("p99", [r.p99_ms for r in rows]),
        ):
            ax.plot(users, values, marker="o", label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent users")
        ax.set_title(variant)
        ax.grid(True, alpha=0.3, which="both")
        ax.legend()
    axes[0][0].set_ylabel("latency ms")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def triton(steps: Sequence[StepLike], path: Path) -> None:
    """Average batch size (left) and queue time per request (right) per model and variant."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for variant, rows in _by_variant(steps).items():
        models = sorted({m for r in rows for m in r.batching})
        for model in models:
            users = [r.users for r in rows if model in r.batching]
            left.plot(
                users,
                [r.batching[model][0] for r in rows if model in r.batching],
                marker="o",
                label=f"{variant}: {model}",
            )
            right.plot(
                users,
                [r.batching[model][1] for r in rows if model in r.batching],
                marker="o",
                label=f"{variant}: {model}",
            )
    for ax, title, unit in ((left, "Triton average batch size", "batch"), (right, "Triton queue time", "ms")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("concurrent users")
        ax.set_ylabel(unit)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
