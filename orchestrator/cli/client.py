"""Commands that use a running stack: verify, bench, rollout."""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx

from orchestrator.cli.common import settings_from
from orchestrator.core.settings import Settings


async def _verify(
    settings: Settings, images: tuple[bytes, bytes], names: tuple[str, str], threshold: float
) -> dict[str, object]:
    from orchestrator.clients.triton import TritonModels
    from orchestrator.pipeline.face_pipeline import FacePipeline

    async with TritonModels(settings.triton_grpc_url, settings.triton.timeout_s) as triton:
        similarity = await FacePipeline(triton).compare_largest(images, names)
    return {
        "similarity": similarity,
        "match": similarity >= threshold,
        "decision": "match" if similarity >= threshold else "unknown",
        "threshold": threshold,
    }


def cmd_verify(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.triton_url:
        settings.triton.url = args.triton_url
    threshold = args.threshold if args.threshold is not None else settings.match_threshold
    images = (args.first.read_bytes(), args.second.read_bytes())
    result = asyncio.run(_verify(settings, images, (str(args.first), str(args.second)), threshold))
    if args.json:
        print(json.dumps(result))
    else:
        print(f"similarity {result['similarity']:.4f}  threshold {threshold:.2f}  → {result['decision']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from orchestrator.cli import bench

    if args.what == "load":
        # The load report drives a whole stack from the source tree (loadtests/ is not installed).
        return subprocess.call(
            [sys.executable, "-m", "loadtests.report"], cwd=Path(__file__).resolve().parents[2]
        )
    settings = settings_from(args)
    if args.triton_url:
        settings.triton.url = args.triton_url
    if args.what == "embedder":
        clients = [int(n) for n in args.clients.split(",")]
        repository = settings.models_dir / "repository" / "cpu"
        print(bench.embedder_report(repository, settings.triton_grpc_url, clients, args.seconds))
    else:
        if not args.images:
            print("facerec bench stages: give one or more images", file=sys.stderr)
            return 2
        print(bench.stages_report(settings.triton_grpc_url, args.images, args.rounds))
    return 0


def cmd_rollout(args: argparse.Namespace) -> int:
    """Start a rollout (or a rollback) through the API and follow it to its end."""
    settings = settings_from(args)
    url = args.url or f"http://127.0.0.1:{settings.port}"
    if not args.api_key:
        print("facerec rollout: an admin key is needed (--api-key or FACEREC_API_KEY)", file=sys.stderr)
        return 2
    with httpx.Client(base_url=url, headers={"X-API-Key": args.api_key}, timeout=30.0) as client:
        path = f"/v1/models/rollouts/{args.rollback}/rollback" if args.rollback else "/v1/models/rollouts"
        started = client.post(path, json=None if args.rollback else {"version": args.version})
        if started.status_code != 202:
            print(f"facerec rollout: {started.json().get('detail', started.text)}", file=sys.stderr)
            return 2
        rollout = started.json()
        print(f"rollout {rollout['rollout_id']}: version {rollout['from_version']} → {rollout['to_version']}")
        last = None
        while rollout["state"] not in ("done", "failed", "rolled_back"):
            time.sleep(0.5)
            rollout = client.get(f"/v1/models/rollouts/{rollout['rollout_id']}").json()
            line = f"  {rollout['state']:<12} {rollout['progress'] * 100:5.1f} %"
            if line != last:
                print(line, flush=True)
                last = line
    if rollout["state"] != "done":
        print(f"rollout {rollout['state']}: {rollout.get('error')}", file=sys.stderr)
        return 1
    return 0
