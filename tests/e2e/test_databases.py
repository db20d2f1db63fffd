"""The core flow end to end on PostgreSQL and MariaDB, as on SQLite in the other modules."""

from pathlib import Path

import pytest

from orchestrator.runtime.triton_server import TritonServer
from tests.e2e.flows import best_name, make_gallery, recognize
from tests.support.databases import SERVERS, scratch_database
from tests.support.stack import Stack, redis_url

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", sorted(SERVERS))
def test_enrol_recognise_delete_restart(
    backend: str, triton_server: TritonServer, photos: Path, tmp_path: Path
) -> None:
    with scratch_database(SERVERS[backend]) as url:
        stack = Stack(tmp_path, triton_server, url, redis_url()).start()
        try:
            with stack.client() as client:
                people = make_gallery(client, photos)
                assert best_name(recognize(client, photos / "obama3.jpg")) == "Barack Obama"
                assert client.delete(f"/v1/people/{people['biden']['id']}").status_code == 204
                answer = recognize(client, photos / "biden.jpg")
                assert people["biden"]["id"] not in [m["person_id"] for m in answer["faces"][0]["matches"]]
                stack.stop()
                stack.start()
                detailed = client.get("/health/detailed").json()
                assert detailed["gallery"]["in_agreement"] is True and detailed["gallery"]["faces"] == 2
                assert detailed["startup_reconciliation"]["rebuilt"] is False
                assert best_name(recognize(client, photos / "obama2.jpg")) == "Barack Obama"
        finally:
            stack.stop()
