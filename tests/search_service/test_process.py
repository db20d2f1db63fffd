"""The real service process over HTTP: exact results, clean SIGTERM with a snapshot."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from orchestrator.clients.search import SearchClient, SearchServiceError
from search_service.checksum import checksum_of_ids
from search_service.schema import CollectionSpec
from tests.search_service.conftest import (
    ROOT,
    ServiceProcess,
    assert_same_topk,
    brute_force,
    unit_vectors,
)

pytestmark = pytest.mark.integration

DIM = 24


async def test_exact_search_and_clean_shutdown(tmp_path: Path) -> None:
    rng = np.random.default_rng(10)
    gallery = unit_vectors(rng, 2000, DIM)
    ids = rng.choice(10**6, 2000, replace=False).astype(np.int64)
    probes = unit_vectors(rng, 64, DIM)
    kept = np.ones(2000, bool)
    kept[::4] = False
    data_dir = tmp_path / "search"

    service = ServiceProcess(data_dir)
    await asyncio.to_thread(service.start().wait_ready)
    try:
        async with SearchClient([service.url], token=service.token) as client:
            await client.create_collection("faces", CollectionSpec(dim=DIM))
            for rows in np.array_split(np.arange(2000), 4):
                await client.add("faces", ids[rows], gallery[rows])
            assert await client.delete("faces", ids[~kept]) == 500
            hits = await client.search("faces", probes, 10)
            before = await client.info("faces")
    finally:
        # Uvicorn shuts down cleanly, then re-raises SIGTERM so the status tells why.
        assert await asyncio.to_thread(service.stop) in (0, -signal.SIGTERM)

    want_ids, want_scores = brute_force(gallery[kept], ids[kept], probes, 10)
    assert_same_topk(
        [[h.id for h in row] for row in hits],
        [[h.score for h in row] for row in hits],
        want_ids,
        want_scores,
    )
    assert before.count == 1500 and before.checksum == checksum_of_ids(ids[kept])
    files = sorted(p.name for p in (data_dir / "collections" / "faces").iterdir())
    assert files == ["collection.json", "log-00000001.wal", "snapshot-00000001.faiss"]
    assert (data_dir / "collections" / "faces" / "log-00000001.wal").stat().st_size == 0

    restarted = ServiceProcess(data_dir)
    await asyncio.to_thread(restarted.start().wait_ready)
    try:
        async with SearchClient([restarted.url], token=restarted.token) as client:
            assert await client.info("faces") == before
            assert await client.search("faces", probes, 10) == hits
    finally:
        await asyncio.to_thread(restarted.stop)


async def test_the_client_needs_the_service_token(tmp_path: Path) -> None:
    service = ServiceProcess(tmp_path / "search")
    await asyncio.to_thread(service.start().wait_ready)
    try:
        async with SearchClient([service.url], token=service.token) as client:
            await client.create_collection("faces", CollectionSpec(dim=DIM))
            assert await client.add("faces", [7], unit_vectors(np.random.default_rng(1), 1, DIM)) == 1
        for token in (None, "a-wrong-token-of-the-right-length-0123"):
            async with SearchClient([service.url], token=token) as stranger:
                for attempt in (
                    stranger.info("faces"),
                    stranger.delete("faces", [7]),
                    stranger.drop_collection("faces"),
                ):
                    with pytest.raises(SearchServiceError) as err:
                        await attempt
                    assert err.value.status == 401
                    assert err.value.problem["type"] == "urn:facerec:search:problem:unauthorized"
                # Probes stay open: the orchestrator's readiness and Prometheus send no token.
                assert [h.status for h in await stranger.health()] == ["ok"]
        async with SearchClient([service.url], token=service.token) as client:
            assert (await client.info("faces")).count == 1
    finally:
        await asyncio.to_thread(service.stop)
    assert service.token not in service.log_path.read_text()


def test_a_shard_refused_its_gpu_exits_with_the_reason(tmp_path: Path) -> None:
    # faiss here is the CPU wheel: a GPU is refused, the process ends (uvicorn's start-up
    # failure, 3) instead of serving from the CPU unannounced.
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEREC_")}
    command = [sys.executable, "-m", "search_service", "--port", "0", "--data-dir", str(tmp_path)]
    done = subprocess.run(
        [*command, "--device", "gpu"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3
    assert (
        "search service cannot start on device gpu: the faiss installed here has no GPU support"
        in done.stderr
    )
