"""``facerec calibrate``: the gallery's threshold and the scores it rests on, from a running API."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import httpx

from orchestrator.cli.common import settings_from

RECOMPUTE_TIMEOUT_S = 3600.0
"""The recompute answers once every face has been searched again: minutes on a large gallery."""


def describe(calibration: dict[str, Any]) -> str:
    """The answer of ``GET /v1/calibration`` in a few lines."""
    impostors, genuines = calibration["impostor"]["count"], calibration["genuine"]["count"]
    target, needed = calibration["target_far"], calibration["scores_needed"]
    if calibration["source"] == "gallery":
        why = f"gallery: set for a false-accept rate of {target:g}"
    elif target is None:
        why = "shipped: no FACEREC_MATCH__TARGET_FAR"
    else:
        why = f"shipped: {impostors} impostor scores, {needed} needed for {target:g}"
    frr = calibration["estimated_frr"]
    return "\n".join(
        [
            f"model version {calibration['model_version']}: threshold {calibration['threshold']:.4f} ({why})",
            f"  impostor scores {impostors}, genuine scores {genuines}"
            + ("" if needed is None else f" ({needed} impostor scores certify the target)"),
            f"  estimated FAR ≤ {calibration['estimated_far']:.3g} (95 % bound), "
            + ("FRR unknown (no genuine scores)" if frr is None else f"FRR {frr * 100:.2f} %"),
        ]
    )


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


def _plotting_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Print (and with ``--plot`` draw) the calibration; ``--recompute`` searches every face again first."""
    if args.plot and not _plotting_available():
        print("facerec calibrate --plot needs matplotlib: pip install 'facerec[plot]'", file=sys.stderr)
        return 2
    if not args.api_key:
        print("facerec calibrate: an admin key is needed (--api-key or FACEREC_API_KEY)", file=sys.stderr)
        return 2
    url = args.url or f"http://127.0.0.1:{settings_from(args).port}"
    with httpx.Client(base_url=url, headers={"X-API-Key": args.api_key}, timeout=30.0) as client:
        try:
            if args.recompute:
                answer = client.post("/v1/calibration/recompute", timeout=RECOMPUTE_TIMEOUT_S)
            else:
                params = {"model_version": args.model_version} if args.model_version else {}
                answer = client.get("/v1/calibration", params=params)
        except httpx.TransportError as error:
            print(f"facerec calibrate: no answer from {url}: {error}", file=sys.stderr)
            return 2
    if answer.status_code != 200:
        try:
            detail = answer.json()["detail"]
        except (ValueError, KeyError, TypeError):
            detail = answer.text or answer.reason_phrase
        print(f"facerec calibrate: {answer.status_code} {detail}", file=sys.stderr)
        return 2
    calibration = answer.json()
    print(describe(calibration))
    if args.plot:
        plot(calibration, args.plot)
        print(f"  drawn to {args.plot}")
    return 0
