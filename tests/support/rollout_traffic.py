"""Recognition traffic while a rollout runs, and following a rollout to its end.

Shared by ``loadtests.rollout_swap`` (the measurement) and the end-to-end rollout tests.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from orchestrator.db.tables import ROLLOUT_FINISHED
from tests.support.stack import ADMIN_KEY


async def recognition_traffic(
    url: str,
    samples: list[tuple[str, bytes]],
    stop: asyncio.Event,
    out: list[dict[str, Any]],
    key: str = ADMIN_KEY,
) -> None:
    """One client recognising ``samples`` (expected name, image) in turn until ``stop``, as ``key``.

    Each answer becomes a record: expected, status, at (perf_counter when answered), ms; for
    a 200 also version, and decision, name and similarity of the best match of the first
    face (None without one); otherwise the start of the body.
    """
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=60.0) as client:
        i = 0
        while not stop.is_set():
            expected, data = samples[i % len(samples)]
            i += 1
            started = time.perf_counter()
            # top_k varies so the cache cannot answer: every request runs the whole chain.
            response = await client.post(
                "/v1/recognize", files={"file": ("p.jpg", data)}, params={"top_k": 1 + i % 50}
            )
            answered = time.perf_counter()
            record: dict[str, Any] = {
                "expected": expected,
                "status": response.status_code,
                "at": answered,
                "ms": (answered - started) * 1000,
            }
            if response.status_code == 200:
                answer = response.json()
                face = answer["faces"][0] if answer["faces"] else {"decision": None, "matches": []}
                best = face["matches"][0] if face["matches"] else {}
                record.update(
                    version=answer["model_version"],
                    decision=face["decision"],
                    name=best.get("name"),
                    similarity=best.get("similarity"),
                )
            else:
                record["body"] = response.text[:300]
            out.append(record)


async def follow_rollout(
    client: httpx.AsyncClient, path: str, body: dict[str, Any] | None = None
) -> tuple[dict[str, Any], list[tuple[str, float]]]:
    """Start a rollout (or rollback) at ``path`` and poll it to its end.

    Returns the final record and the states seen, each with the seconds since the start.
    """
    begun = time.perf_counter()
    response = await client.post(path, json=body)
    if response.status_code != 202:
        raise RuntimeError(f"{path}: {response.status_code} {response.text}")
    rollout: dict[str, Any] = response.json()
    states: list[tuple[str, float]] = []
    while rollout["state"] not in ROLLOUT_FINISHED:
        await asyncio.sleep(0.05)
        rollout = (await client.get(f"/v1/models/rollouts/{rollout['rollout_id']}")).json()
        if not states or states[-1][0] != rollout["state"]:
            states.append((rollout["state"], round(time.perf_counter() - begun, 2)))
    return rollout, states
