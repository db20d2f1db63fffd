"""``facerec calibrate --plot``: the calibration's histograms drawn with matplotlib, the
optional ``plot`` extra (no image installs it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(calibration: dict[str, Any], path: Path) -> None:
    """Both histograms, each as shares of its own scores, and the threshold line, to ``path``."""
    from matplotlib.figure import Figure  # the `plot` extra; checked before the API is called

    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.add_subplot()
    for kind, colour in (("impostor", "tab:red"), ("genuine", "tab:green")):
        scores = calibration[kind]
        counts, edges = scores["histogram"]["counts"], scores["histogram"]["edges"]
        total = max(1, scores["count"])
        axes.stairs(
            [c / total for c in counts],
            edges,
            fill=True,
            alpha=0.45,
            color=colour,
            label=f"{kind} ({scores['count']})",
        )
    threshold = calibration["threshold"]
    axes.axvline(threshold, color="black", label=f"threshold {threshold:.4f} ({calibration['source']})")
    if calibration["source"] != "shipped":
        axes.axvline(
            calibration["shipped_threshold"], color="grey", linestyle="--", label="shipped threshold"
        )
    axes.set_xlim(-1.0, 1.0)
    axes.set_xlabel("cosine similarity")
    axes.set_ylabel("share of the faces' scores")
    target = calibration["target_far"]
    axes.set_title(
        f"model version {calibration['model_version']}: "
        + ("" if target is None else f"target FAR {target:g}, ")
        + f"estimated FAR ≤ {calibration['estimated_far']:.3g}"
    )
    axes.legend(loc="upper left")
    figure.savefig(path, dpi=120)


def plotting_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True
