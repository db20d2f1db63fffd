"""Enrol, recognise, delete and restart against the whole running stack."""

from pathlib import Path

import httpx
import pytest

from orchestrator.pipeline.calibration import DEFAULT_MATCH_THRESHOLD
from tests.e2e.flows import best_name, create_person, enrol, make_gallery, recognize
from tests.support import augment
from tests.support.stack import BACKENDS, Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=BACKENDS)
def search_backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on the FAISS service, then on Milvus (Lite)."""
    return str(request.param)


@pytest.fixture(scope="module")
def people(admin: httpx.Client, photos: Path) -> dict:
    return make_gallery(admin, photos)


def test_a_new_photo_of_an_enrolled_person_is_recognised_by_name(admin, people, photos: Path) -> None:
    answer = recognize(admin, photos / "obama3.jpg")
    assert answer["model_version"] == "1" and answer["cached"] is False
    face = answer["faces"][0]
    assert face["decision"] == "match"
    assert face["matches"][0]["name"] == "Barack Obama"
    assert face["matches"][0]["person_id"] == people["obama"]["id"]
    assert face["matches"][0]["similarity"] >= DEFAULT_MATCH_THRESHOLD
    assert len(face["landmarks"]) == 5 and len(face["box"]) == 4
    # One entry per person, best first: Obama's two faces count once.
    ids = [m["person_id"] for m in face["matches"]]
    assert len(ids) == len(set(ids))
    similarities = [m["similarity"] for m in face["matches"]]
    assert similarities == sorted(similarities, reverse=True)


def test_the_same_image_again_is_served_from_the_cache(admin, people, photos: Path) -> None:
    data = augment.reencoded((photos / "obama3.jpg").read_bytes(), 90)
    first = recognize(admin, data)
    second = recognize(admin, data)
    assert first["cached"] is False and second["cached"] is True
    assert second["faces"] == first["faces"]
    other_params = recognize(admin, data, top_k=1)
    assert other_params["cached"] is False and len(other_params["faces"][0]["matches"]) == 1


def test_a_stranger_is_unknown(admin, people, photos: Path) -> None:
    stranger = create_person(admin, "Stranger Without Faces")
    # Biden mirrored: the same face to a person, another to the embedder (a half-scale copy of
    # the enrolled photo is not: it is decoded at that scale too, and scores 0.997).
    mirrored = augment.encode(augment.read_rgb((photos / "biden.jpg").read_bytes())[:, ::-1])
    answer = recognize(admin, mirrored, threshold=0.99)
    assert answer["faces"][0]["decision"] == "unknown"
    assert all(m["person_id"] != stranger["id"] for m in answer["faces"][0]["matches"])


def test_every_face_of_a_group_photo_is_named(admin, people, photos: Path) -> None:
    group = augment.group_photo([(photos / n).read_bytes() for n in ["obama3.jpg", "biden.jpg"]])
    answer = recognize(admin, group)
    assert len(answer["faces"]) == 2
    names = {best_name(answer, 0), best_name(answer, 1)}
    assert names == {"Barack Obama", "Joe Biden"}
    areas = [(f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]) for f in answer["faces"]]
    assert areas == sorted(areas, reverse=True)


def test_batch_verify_and_detect(admin, people, photos: Path) -> None:
    files = [
        ("files", ("a.jpg", (photos / "obama3.jpg").read_bytes())),
        ("files", ("b.gif", b"GIF89a" + bytes(64))),
        ("files", ("c.jpg", (photos / "biden.jpg").read_bytes())),
    ]
    results = admin.post("/v1/recognize/batch", files=files).json()["results"]
    assert best_name(results[0]) == "Barack Obama"
    assert results[1]["status"] == 415 and "GIF" in results[1]["detail"]
    assert best_name(results[2]) == "Joe Biden"

    same = admin.post(
        "/v1/verify",
        files={
            "file1": ("a.jpg", (photos / "obama.jpg").read_bytes()),
            "file2": ("b.jpg", (photos / "obama3.jpg").read_bytes()),
        },
    ).json()
    assert (
        same["match"] is True
        and same["threshold"] == DEFAULT_MATCH_THRESHOLD
        and same["model_version"] == "1"
    )
    different = admin.post(
        "/v1/verify",
        files={
            "file1": ("a.jpg", (photos / "obama.jpg").read_bytes()),
            "file2": ("b.jpg", (photos / "biden.jpg").read_bytes()),
        },
    ).json()
    assert different["match"] is False and different["similarity"] < same["similarity"]

    detected = admin.post(
        "/v1/detect",
        files={
            "file": (
                "g.jpg",
                augment.group_photo(
                    [(photos / n).read_bytes() for n in ["obama.jpg", "biden.jpg", "obama3.jpg"]]
                ),
            )
        },
    ).json()
    assert len(detected["faces"]) == 3 and all(f["det_score"] > 0.7 for f in detected["faces"])


def test_people_search_update_and_faces(admin, people) -> None:
    found = admin.get("/v1/people", params={"q": "potus-46"}).json()
    assert found["total"] == 1 and found["items"][0]["name"] == "Joe Biden"
    assert found["items"][0]["face_count"] == 1
    by_attribute = admin.get("/v1/people", params={"q": "democratic"}).json()
    assert [p["name"] for p in by_attribute["items"]] == ["Barack Obama"]
    patched = admin.patch(f"/v1/people/{people['biden']['id']}", json={"attributes": {"age": 82}}).json()
    assert patched["attributes"] == {"age": 82} and patched["name"] == "Joe Biden"
    faces = admin.get(f"/v1/people/{people['obama']['id']}/faces").json()["items"]
    assert len(faces) == 2 and {f["model_version"] for f in faces} == {"1"}


def test_deleting_a_person_removes_them_from_answers_and_the_cache(admin, photos: Path) -> None:
    person = create_person(admin, "Obama Twin")
    # Forced: a second record of an enrolled person is otherwise refused as a duplicate identity.
    enrol(admin, person["id"], photos / "obama_partial_face2.jpg", force="true")
    probe = (photos / "obama_partial_face.jpg").read_bytes()
    before = recognize(admin, probe)
    assert person["id"] in [m["person_id"] for m in before["faces"][0]["matches"]]
    assert recognize(admin, probe)["cached"] is True
    assert admin.delete(f"/v1/people/{person['id']}").status_code == 204
    after = recognize(admin, probe)
    assert after["cached"] is False
    assert person["id"] not in [m["person_id"] for m in after["faces"][0]["matches"]]
    assert admin.get(f"/v1/people/{person['id']}").status_code == 404


def test_a_renamed_person_is_answered_by_the_new_name_at_once(admin, photos: Path) -> None:
    """Names are remembered per generation; a rename bumps it, so neither the in-memory owners
    nor the answer cache serve the old name."""
    person = create_person(admin, "Obama Lookalike")
    enrol(admin, person["id"], photos / "obama_partial_face2.jpg", force="true")  # a second record
    probe = augment.reencoded((photos / "obama_partial_face.jpg").read_bytes(), 85)
    names = {m["person_id"]: m["name"] for m in recognize(admin, probe)["faces"][0]["matches"]}
    assert names[person["id"]] == "Obama Lookalike"
    renamed = admin.patch(f"/v1/people/{person['id']}", json={"name": "Obama Double"})
    assert renamed.json()["name"] == "Obama Double"
    after = recognize(admin, probe)
    assert after["cached"] is False
    names = {m["person_id"]: m["name"] for m in after["faces"][0]["matches"]}
    assert names[person["id"]] == "Obama Double"
    assert admin.delete(f"/v1/people/{person['id']}").status_code == 204


def test_deleting_one_face(admin, photos: Path) -> None:
    person = create_person(admin, "One Face")
    biden = augment.scaled((photos / "biden.jpg").read_bytes(), 0.6)
    face = enrol(admin, person["id"], biden, force="true")  # Biden is enrolled already, as himself
    assert admin.delete(f"/v1/faces/{face['face_id']}").status_code == 204
    assert admin.get(f"/v1/people/{person['id']}/faces").json()["items"] == []
    assert admin.delete(f"/v1/faces/{face['face_id']}").status_code == 404
    answer = recognize(admin, photos / "biden.jpg")
    assert face["face_id"] not in [m["face_id"] for m in answer["faces"][0]["matches"]]


def test_health_metrics_and_docs(stack: Stack, admin, people) -> None:
    assert httpx.get(stack.api.url + "/health/live").json() == {"status": "ok"}
    ready = httpx.get(stack.api.url + "/health/ready").json()
    assert ready["status"] == "ok" and set(ready["checks"]) == {"triton", "search", "database", "shutdown"}
    detailed = admin.get("/health/detailed").json()
    assert detailed["gallery"]["in_agreement"] is True
    assert detailed["gallery"]["faces"] == detailed["gallery"]["index_count"] >= 3
    assert detailed["cache"]["state"] == "ok"
    arcface = next(m for m in detailed["triton"] if m["model"] == "arcface")
    assert arcface["inference_count"] >= arcface["execution_count"] > 0
    metrics = httpx.get(stack.api.url + "/metrics").text
    assert (
        'facerec_http_request_duration_seconds_bucket{le="0.005",method="POST",route="/v1/recognize"}'
        in metrics
    )
    assert 'route="/v1/people/{person_id}/faces"' in metrics
    schema = httpx.get(stack.api.url + "/openapi.json").json()
    assert "example" in schema["components"]["schemas"]["RecognizeAnswer"]
    assert httpx.get(stack.api.url + "/docs").status_code == 200


def test_everything_survives_a_restart_of_every_process(stack: Stack, people, photos: Path) -> None:
    with stack.client() as client:
        before = client.get("/health/detailed").json()["gallery"]
    stack.stop()
    stack.triton.stop()
    stack.triton.start()
    stack.triton.wait_ready()
    stack.start()
    with stack.client() as client:
        after = client.get("/health/detailed").json()["gallery"]
        assert after["index_checksum"] == before["index_checksum"] and after["in_agreement"] is True
        assert best_name(recognize(client, photos / "obama3.jpg")) == "Barack Obama"
        assert (
            best_name(recognize(client, augment.reencoded((photos / "biden.jpg").read_bytes(), 60)))
            == "Joe Biden"
        )
