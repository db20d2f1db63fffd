"""Three shard processes behind the orchestrator's client give one exact index's answers."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import numpy as np
import pytest

from orchestrator.clients.search import SearchClient, SearchServiceError
from search_service.checksum import checksum_of_ids
from search_service.schema import CollectionSpec
from tests.search_service.conftest import (
    ServiceProcess,
    assert_same_topk,
    brute_force,
    unit_vectors,
)

pytestmark = pytest.mark.integration

DIM = 32
SHARDS = 3


async def test_three_shards_equal_one_exact_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    gallery = unit_vectors(rng, 3000, DIM)
    ids = rng.choice(10**9, 3000, replace=False).astype(np.int64)
    probes = unit_vectors(rng, 40, DIM)
    token = secrets.token_urlsafe(32)
    shards = [
        ServiceProcess(tmp_path / f"shard{i}", shard=f"{i}/{SHARDS}", token=token) for i in range(SHARDS)
    ]
    for shard in shards:
        shard.start()
    try:
        await asyncio.gather(*(asyncio.to_thread(s.wait_ready) for s in shards))
        async with SearchClient([s.url for s in shards], token=token) as client:
            info = await client.create_collection("faces", CollectionSpec(dim=DIM))
            assert info.count == 0 and info.device == "cpu"
            for rows in np.array_split(np.arange(3000), 3):
                assert await client.add("faces", ids[rows], gallery[rows]) == rows.size
            doomed = ids[::7]
            assert await client.delete("faces", doomed) == doomed.size
            kept = ~np.isin(ids, doomed)
            for k in (1, 10, 25):
                hits = await client.search("faces", probes, k)
                assert_same_topk(
                    [[h.id for h in row] for row in hits],
                    [[h.score for h in row] for row in hits],
                    *brute_force(gallery[kept], ids[kept], probes, k),
                )
            info = await client.info("faces")
            assert info.count == kept.sum()
            assert info.checksum == checksum_of_ids(ids[kept])
            assert [h.shard for h in await client.health()] == ["0/3", "1/3", "2/3"]
            # Each shard holds only its own ids and refuses others.
            async with SearchClient([shards[0].url], token=token) as direct:
                assert (await direct.info("faces")).count == (ids[kept] % 3 == 0).sum()
                with pytest.raises(SearchServiceError) as err:
                    await direct.add("faces", [1], gallery[:1])
                assert err.value.status == 422
            await client.drop_collection("faces")
            await client.drop_collection("faces", missing_ok=True)
            with pytest.raises(SearchServiceError) as err:
                await client.info("faces")
            assert err.value.status == 404 and err.value.problem["status"] == 404
    finally:
        for shard in shards:
            shard.stop()
