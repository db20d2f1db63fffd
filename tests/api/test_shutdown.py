"""Draining before a stop: out of rotation, connections closed after each answer, still serving."""

from __future__ import annotations

from tests.api.conftest import ADMIN_KEY, Api


async def test_a_draining_replica_is_unready_but_still_answers_with_connection_close(api: Api) -> None:
    async with api.client(ADMIN_KEY) as client:
        before = await client.get("/health/ready")
        assert before.status_code == 200 and "close" not in before.headers.get("connection", "")
        api.app.state.draining.begin()
        ready = await client.get("/health/ready")
        assert ready.status_code == 503
        # Only the drain is reported: no dependency round trip delays the balancer's news.
        assert ready.json()["checks"] == {"shutdown": {"ok": False, "detail": "draining before a stop"}}
        people = await client.get("/v1/people")
        assert people.status_code == 200 and people.json()["total"] >= 1
        for answer in (ready, people):
            assert answer.headers["connection"] == "close"
