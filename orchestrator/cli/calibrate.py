"""``facerec calibrate``: the gallery's threshold and the scores it rests on, from a running API."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx

from orchestrator.cli.calibration_plot import plot, plotting_available
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


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Print (and with ``--plot`` draw) the calibration; ``--recompute`` searches every face again first."""
    if args.plot and not plotting_available():
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
