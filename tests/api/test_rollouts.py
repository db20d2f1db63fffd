"""The list of rollouts (GET /v1/models/rollouts): what a page shown again follows or rolls back."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from orchestrator.db.gallery import Gallery
from tests.api.conftest import Api, assert_problem

pytestmark = pytest.mark.unit

ROLLOUT_FIELDS = {
    "rollout_id",
    "kind",
    "from_version",
    "to_version",
    "collection",
    "from_collection",
    "reverses",
    "state",
    "progress",
    "error",
    "owner",
    "lease_expires_at",
    "created_at",
    "updated_at",
}


async def listed(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    answer = await client.get("/v1/models/rollouts", params=params)
    assert answer.status_code == 200, answer.text
    page: dict[str, Any] = answer.json()
    return page


async def test_rollouts_are_listed_newest_first_the_unfinished_one_too(
    api: Api, admin: httpx.AsyncClient
) -> None:
    gallery: Gallery = api.app.state.resources.gallery
    seeded = api.seeded.rollout_id  # 1 → 2, done
    back = gallery.start_rollout("2", "1", "arcface-v1-g2", reverses=seeded)
    gallery.update_rollout(back.rollout_id, state="done", progress=1.0)
    gallery.update_rollout(seeded, state="rolled_back")
    running = gallery.start_rollout("1", "3", "arcface-v3-g3")
    gallery.update_rollout(running.rollout_id, state="reembedding", progress=0.25)

    page = await listed(admin)
    assert page["total"] == 3
    assert all(item.keys() == ROLLOUT_FIELDS for item in page["items"])
    assert [(r["rollout_id"], r["state"], r["progress"], r["reverses"]) for r in page["items"]] == [
        (running.rollout_id, "reembedding", 0.25, None),
        (back.rollout_id, "done", 1.0, seeded),
        (seeded, "rolled_back", 1.0, None),
    ]
    assert page["items"][0] == (await admin.get(f"/v1/models/rollouts/{running.rollout_id}")).json()

    second = await listed(admin, limit=1, offset=1)
    assert ([r["rollout_id"] for r in second["items"]], second["total"]) == ([back.rollout_id], 3)
    assert (await listed(admin, offset=3))["items"] == []


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -1}])
async def test_a_page_out_of_bounds_is_a_422(admin: httpx.AsyncClient, params: dict[str, int]) -> None:
    assert_problem(await admin.get("/v1/models/rollouts", params=params), 422)


async def test_a_recognize_key_may_not_list_them(recognizer: httpx.AsyncClient) -> None:
    assert_problem(await recognizer.get("/v1/models/rollouts"), 403)
