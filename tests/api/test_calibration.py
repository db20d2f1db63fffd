"""The gallery calibration in-process: the threshold in force, each match's evidence, the routes.

Recognitions run through the real :class:`Recognition` and :class:`LiveView` over the SQLite
gallery, whose scores the tests write as the score keeper would; the pipeline and the search
service are stand-ins (every image holds one face, nearest to the seeded face at 0.8), and
the cache keeps answers in a dict under the real cache's keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, cast

import httpx
import numpy as np
import pytest

from orchestrator.core.resources import Resources
from orchestrator.core.settings import MatchSettings
from orchestrator.db.face_scores import FaceScoreRow
from orchestrator.db.gallery import Gallery
from orchestrator.db.tables import PersonCreate
from orchestrator.gallery.calibration import calibrate_gallery, scores_needed
from orchestrator.gallery.live_view import LiveView
from orchestrator.pipeline.face_pipeline import FacePipeline
from orchestrator.recognition.answers import ImageRecognition, evidence
from orchestrator.recognition.cache import RecognitionCache
from orchestrator.recognition.log_writer import RecognitionLogWriter
from orchestrator.recognition.search_batching import SearchBatcher
from orchestrator.recognition.service import Recognition
from tests.api.conftest import Api, assert_problem
from tests.api.fakes import BOX, png
from tests.api.test_log_and_stats import OneFacePipeline, OneHitSearch

pytestmark = pytest.mark.unit

TARGET = 0.05
NEEDED = scores_needed(TARGET)  # 59
SHIPPED = 0.38
IMAGE = png(64, 64)
ROUTES = [("GET", "/v1/calibration"), ("POST", "/v1/calibration/recompute"), ("GET", "/v1/people/duplicates")]


class KeptAnswers:
    """The cache's keys, answers kept in a dict: what a shared Redis would do."""

    def __init__(self) -> None:
        self.keys = RecognitionCache(None)
        self.kept: dict[str, ImageRecognition] = {}

    def key(self, image_sha256: str, params: Any, model_version: str, generation: int) -> str:
        return self.keys.key(image_sha256, params, model_version, generation)

    async def get(self, key: str) -> ImageRecognition | None:
        return self.kept.get(key)

    async def set(self, key: str, value: ImageRecognition) -> None:
        self.kept[key] = value


class RecordedRecompute:
    """The score keeper's recompute: records the call, writes the scores it was given."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self.calls: list[tuple[str, str]] = []
        self.rows: list[FaceScoreRow] = []

    async def recompute(self, collection: str, model_version: str) -> int:
        self.calls.append((collection, model_version))
        self.gallery.put_face_scores(model_version, self.rows)
        return len(self.rows)


@dataclass
class Calibrated:
    api: Api
    gallery: Gallery
    scores: RecordedRecompute

    def add_people(self, count: int, faces_each: int = 1, version: str = "1") -> list[list[int]]:
        """People with ``faces_each`` faces each (no scores yet): their face ids, per person."""
        people = []
        vector = np.full(512, 1 / np.sqrt(512), np.float32)
        for number in range(count):
            person = self.gallery.create_person(PersonCreate(name=f"Person {number}"))
            people.append(
                [
                    self.gallery.add_face(
                        person.id,
                        embedding=vector,
                        model_version=version,
                        crop_png=png(112, 112),
                        image_sha256=hashlib.sha256(b"%d/%d" % (number, face)).hexdigest(),
                        quality=0.9,
                        det_score=0.99,
                        box=BOX,
                    ).face_id
                    for face in range(faces_each)
                ]
            )
        return people

    def score(self, impostor: Sequence[float], version: str = "1") -> list[FaceScoreRow]:
        """As many faces, of people of their own, with these impostor scores (and a genuine one)."""
        faces = [face for (face,) in self.add_people(len(impostor), version=version)]
        rows = [
            FaceScoreRow(face, float(score), self.api.seeded.face_id, 0.9 - i / 1000, self.api.seeded.face_id)
            for i, (face, score) in enumerate(zip(faces, impostor, strict=True))
        ]
        self.gallery.put_face_scores(version, rows)
        return rows


@pytest.fixture
def calibrated(api: Api) -> Calibrated:
    """The app with a target of 0.05, read again at every change of the gallery."""
    resources: Resources = api.app.state.resources
    gallery = resources.gallery
    match = MatchSettings(target_far=TARGET, recalibrate_s=0.0)
    live = LiveView(gallery, 0.0, match, SHIPPED)
    recognition = Recognition(
        live,
        cast(SearchBatcher, OneHitSearch(api.seeded.face_id)),
        cast(FacePipeline, OneFacePipeline()),
        cast(RecognitionCache, KeptAnswers()),
        RecognitionLogWriter(gallery),
        SHIPPED,
    )
    scores = RecordedRecompute(gallery)
    settings = resources.settings.model_copy(update={"match": match, "match_threshold": SHIPPED})
    changed = replace(resources, settings=settings, live=live, recognition=recognition)
    changed.scores = scores  # type: ignore[attr-defined]  # or the field, once Resources has it
    api.app.state.resources = changed
    return Calibrated(api, gallery, scores)


async def recognize(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    answer = await client.post(
        "/v1/recognize", files={"file": ("face.png", IMAGE, "image/png")}, params=params
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def settled(client: httpx.AsyncClient, source: str) -> dict[str, Any]:
    """A recognition once the background recalibration has given ``source``."""
    for _ in range(200):
        answer = await recognize(client)
        if answer["threshold_source"] == source:
            return answer
    raise AssertionError(f"the threshold never came from the {source}")


async def test_without_enough_scores_the_shipped_threshold_stands_and_matches_carry_their_far(
    calibrated: Calibrated, admin: httpx.AsyncClient
) -> None:
    calibrated.score([0.1] * 10)  # 10 impostor scores cannot certify 0.05
    answer = await recognize(admin)
    assert (answer["threshold"], answer["threshold_source"]) == (SHIPPED, "shipped")
    (match,) = answer["faces"][0]["matches"]
    assert match["similarity"] == 0.8 and answer["faces"][0]["decision"] == "match"
    assert match["far"] == evidence(1 - 0.05 ** (1 / 10)) == 0.26  # none of 10 at or above 0.8
    asked = await recognize(admin, threshold=0.85)
    assert (asked["threshold"], asked["threshold_source"]) == (0.85, "request")
    assert asked["faces"][0]["decision"] == "unknown"
    assert asked["faces"][0]["matches"][0]["far"] == match["far"]  # the evidence is the gallery's


async def test_the_threshold_switches_to_the_gallery_once_the_scores_certify_the_target(
    calibrated: Calibrated, admin: httpx.AsyncClient
) -> None:
    impostor = [0.3 + 0.55 * i / NEEDED for i in range(NEEDED)]  # 0.3 … 0.84, two of them ≥ 0.8
    calibrated.score(impostor[:-1])
    before = await recognize(admin)
    assert before["threshold_source"] == "shipped"
    calibrated.score(impostor[-1:])
    calibrated.gallery.bump_generation()  # as the enrolment of that face does
    after = await settled(admin, "gallery")
    impostors, genuines = calibrated.gallery.score_distribution("1")
    expected = calibrate_gallery("1", impostors, genuines, TARGET, SHIPPED)
    assert after["threshold"] == expected.threshold > 0.8  # the gallery is crowded up there
    (face,) = after["faces"]
    assert face["decision"] == "unknown"  # 0.8 matched with the shipped 0.38; not here
    assert face["matches"][0]["far"] == evidence(expected.far(0.8))
    assert face["matches"][0]["far"] > TARGET  # a similarity the gallery's impostors reach


async def test_a_cached_answer_does_not_outlive_the_calibration_it_was_made_with(
    calibrated: Calibrated, admin: httpx.AsyncClient
) -> None:
    calibrated.score([0.1] * 10)
    first = await recognize(admin)
    assert (await recognize(admin))["cached"] is True
    # Scores recomputed (POST /v1/calibration/recompute): the same generation, other scores.
    calibrated.scores.rows = [FaceScoreRow(row.face_id, 0.82) for row in calibrated.score([0.1] * 50)]
    assert (await admin.post("/v1/calibration/recompute")).status_code == 200
    fresh = await recognize(admin)
    assert fresh["cached"] is False
    assert fresh["faces"][0]["matches"][0]["far"] > first["faces"][0]["matches"][0]["far"]
    assert (await recognize(admin))["cached"] is True


async def test_the_threshold_switches_with_the_model_version(
    calibrated: Calibrated, admin: httpx.AsyncClient
) -> None:
    calibrated.score([0.1] * 10)
    calibrated.score([0.2] * NEEDED, version="2")  # a rollout scores the new version first
    before = await recognize(admin)
    assert (before["model_version"], before["threshold_source"]) == ("1", "shipped")
    calibrated.gallery.set_active("2", "arcface-v2-g1")  # the rollout's switch
    after = await recognize(admin)  # a version's first answer waits for its calibration
    assert (after["model_version"], after["threshold_source"]) == ("2", "gallery")
    assert after["threshold"] == calibrate_gallery("1", [0.2] * NEEDED, [], TARGET, SHIPPED).threshold
    assert after["cached"] is False


async def test_calibration_shows_both_distributions_and_what_they_rest_on(
    calibrated: Calibrated, admin: httpx.AsyncClient
) -> None:
    impostor = list(np.linspace(-0.1, 0.3, NEEDED + 41))
    calibrated.score(impostor)
    answer = await admin.get("/v1/calibration")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = calibrate_gallery("1", *calibrated.gallery.score_distribution("1"), TARGET, SHIPPED)
    assert {name: body[name] for name in ("model_version", "target_far", "source", "scores_needed")} == {
        "model_version": "1",
        "target_far": TARGET,
        "source": "gallery",
        "scores_needed": NEEDED,
    }
    assert body["threshold"] == expected.threshold and body["shipped_threshold"] == SHIPPED
    assert body["estimated_far"] == expected.far(expected.threshold) <= TARGET
    assert body["estimated_frr"] == 0.0  # every genuine score (0.8…0.9) is above
    for kind, count in (("impostor", NEEDED + 41), ("genuine", NEEDED + 41)):
        drawn = body[kind]
        assert drawn["count"] == count and sum(drawn["histogram"]["counts"]) == count
        assert len(drawn["histogram"]["edges"]) == len(drawn["histogram"]["counts"]) + 1
        assert drawn["histogram"]["edges"][0] == -1.0 and drawn["histogram"]["edges"][-1] == 1.0
    other = (await admin.get("/v1/calibration", params={"model_version": "2"})).json()
    assert (other["model_version"], other["source"], other["impostor"]["count"]) == ("2", "shipped", 0)
    assert other["estimated_far"] == 1.0 and other["estimated_frr"] is None
    for version in ("abc", "0", "1 ", ""):
        assert_problem(await admin.get("/v1/calibration", params={"model_version": version}), 422)


async def test_recompute_runs_the_keeper_on_the_active_version_and_answers_the_new_calibration(
    calibrated: Calibrated, admin: httpx.AsyncClient
) -> None:
    calibrated.score([0.1] * 10)
    assert (await admin.get("/v1/calibration")).json()["source"] == "shipped"
    calibrated.scores.rows = calibrated.score([0.2] * NEEDED)
    answer = await admin.post("/v1/calibration/recompute")
    assert answer.status_code == 200, answer.text
    assert calibrated.scores.calls == [("arcface-v1-g1", "1")]
    assert answer.json()["source"] == "gallery" and answer.json()["impostor"]["count"] == NEEDED + 10
    assert (await recognize(admin))["threshold_source"] == "gallery"


async def test_duplicates_are_pairs_of_people_at_the_threshold_in_force_best_first(
    calibrated: Calibrated, admin: httpx.AsyncClient
) -> None:
    (ann,), (bob,), (cy,), (di,) = calibrated.add_people(4)
    calibrated.gallery.put_face_scores(
        "1",
        [
            FaceScoreRow(ann, 0.91, bob),
            FaceScoreRow(bob, 0.91, ann),
            FaceScoreRow(cy, 0.5, di),
            FaceScoreRow(di, 0.2, cy),  # below the shipped 0.38: the pair shows through cy
        ],
    )
    answer = await admin.get("/v1/people/duplicates")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["total"] == 2
    assert [(pair["similarity"], pair["face_ids"]) for pair in body["items"]] == [
        (0.91, [ann, bob]),
        (0.5, [cy, di]),
    ]
    assert [person["name"] for person in body["items"][0]["people"]] == ["Person 0", "Person 1"]
    page = (await admin.get("/v1/people/duplicates", params={"limit": 1, "offset": 1})).json()
    assert (page["total"], [pair["face_ids"] for pair in page["items"]]) == (2, [[cy, di]])
    for params in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
        assert_problem(await admin.get("/v1/people/duplicates", params=params), 422)


async def test_duplicates_follow_the_gallery_threshold(
    calibrated: Calibrated, admin: httpx.AsyncClient
) -> None:
    (ann,), (bob,) = calibrated.add_people(2)
    calibrated.gallery.put_face_scores("1", [FaceScoreRow(ann, 0.5, bob)])
    assert (await admin.get("/v1/people/duplicates")).json()["total"] == 1  # 0.5 ≥ the shipped 0.38
    calibrated.score([0.6] * NEEDED)  # a crowded gallery: its threshold goes above 0.6
    assert (await admin.post("/v1/calibration/recompute")).json()["threshold"] > 0.6
    duplicates = (await admin.get("/v1/people/duplicates")).json()
    assert duplicates["total"] == 0


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_calibration_routes_are_for_admins(
    calibrated: Calibrated,
    recognizer: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    method: str,
    path: str,
) -> None:
    assert_problem(await recognizer.request(method, path), 403)
    assert_problem(await anonymous.request(method, path), 401)
    assert calibrated.scores.calls == []
