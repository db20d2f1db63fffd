import json

import numpy as np
import pytest

from orchestrator.db.tables import PersonSummary
from orchestrator.gallery.calibration import calibrate_gallery
from orchestrator.pipeline.vision.faces import Face
from orchestrator.recognition.answers import (
    DetectedFace,
    ImageRecognition,
    Match,
    RecognizeAnswer,
    detected_face,
    evidence,
    person_matches,
    recognized_face,
)
from search_service.schema import Hit

pytestmark = pytest.mark.unit


def person(person_id: int, name: str) -> PersonSummary:
    return PersonSummary(
        id=person_id, name=name, external_id=None, age=None, gender=None, address=None, attributes={}
    )


ANN, BOB = person(1, "Ann"), person(2, "Bob")
UNCALIBRATED = calibrate_gallery("1", [], [], None, 0.38)
"""No scores: every match's false-accept rate is 1."""


def a_face() -> Face:
    face = Face(box=np.array([10.04, 20.06, 130.0, 160.0], np.float32), det_score=0.998712, sharpness=500.0)
    face.points5 = np.array(
        [[40.46, 70.0], [90.5, 70.04], [65.0, 95.0], [45.0, 120.0], [85.0, 120.0]], np.float32
    )
    return face


def test_one_match_per_person_best_face_first_and_orphans_dropped() -> None:
    hits = [Hit(id=7, score=0.9), Hit(id=99, score=0.85), Hit(id=3, score=0.8), Hit(id=5, score=0.5)]
    owners = {7: ANN, 3: ANN, 5: BOB}  # face 99 is not in the database
    matches = person_matches(hits, owners, top_k=5, calibration=UNCALIBRATED)
    assert matches == [
        Match(person_id=1, name="Ann", face_id=7, similarity=0.9, far=1.0, person=ANN),
        Match(person_id=2, name="Bob", face_id=5, similarity=0.5, far=1.0, person=BOB),
    ]
    assert person_matches(hits, owners, top_k=1, calibration=UNCALIBRATED) == matches[:1]


def test_each_match_carries_the_bound_of_its_similarity_in_the_gallery() -> None:
    impostor = np.linspace(-0.2, 0.3, 1000)  # 1000 impostor scores, none above 0.3
    calibration = calibrate_gallery("1", impostor, [], 0.01, 0.38)
    hits = [Hit(id=7, score=0.61), Hit(id=5, score=0.25)]
    ann, bob = person_matches(hits, {7: ANN, 5: BOB}, top_k=5, calibration=calibration)
    assert ann.far == evidence(calibration.far(0.61)) == 0.003  # none exceed: 1 − 0.05^(1/1000)
    assert bob.far == evidence(calibration.far(0.25)) > 0.1  # a tenth of the scores are above it
    assert bob.far >= calibration.far(0.25)


@pytest.mark.parametrize(
    ("rate", "shown"),
    [(0.0029914, 0.003), (0.012, 0.012), (0.01234, 0.013), (3.1e-6, 3.1e-6), (0.995, 1.0), (1.0, 1.0)],
)
def test_a_false_accept_rate_is_shown_rounded_up_to_two_digits(rate: float, shown: float) -> None:
    assert evidence(rate) == shown


def test_similarities_are_rounded_and_ties_go_to_the_lower_person_id() -> None:
    hits = [Hit(id=8, score=0.612349), Hit(id=4, score=0.61234)]
    matches = person_matches(
        hits, {8: person(9, "Cy"), 4: person(3, "Di")}, top_k=5, calibration=UNCALIBRATED
    )
    assert [(m.person_id, m.similarity) for m in matches] == [(3, 0.6123), (9, 0.6123)]


def test_decision_uses_the_threshold_on_the_best_match() -> None:
    face = a_face()
    best = [Match(person_id=1, name="Ann", face_id=7, similarity=0.4, far=1.0, person=ANN)]
    assert recognized_face(face, best, threshold=0.38).decision == "match"
    assert recognized_face(face, best, threshold=0.4).decision == "match"
    assert recognized_face(face, best, threshold=0.41).decision == "unknown"
    assert recognized_face(face, [], threshold=0.0).decision == "unknown"


def test_a_face_without_landmarks_has_an_empty_list() -> None:
    face = Face(box=np.array([0, 0, 50, 50], np.float32), det_score=0.5)
    assert detected_face(face) == DetectedFace(box=[0.0, 0.0, 50.0, 50.0], det_score=0.5, landmarks=[])


def test_wire_json_of_a_recognize_answer() -> None:
    """Field names, their order and the rounding, as API.md shows them."""
    ann = PersonSummary(
        id=1, name="Ann", external_id="E-1", age=36, gender="f", address="London", attributes={"k": [1]}
    )
    matches = [Match(person_id=1, name="Ann", face_id=7, similarity=0.4, far=0.00042, person=ann)]
    found = ImageRecognition(faces=[recognized_face(a_face(), matches, 0.38)], model_version="2")
    answer = RecognizeAnswer(
        faces=found.faces,
        model_version=found.model_version,
        threshold=0.38,
        threshold_source="shipped",
        took_ms=12.34,
        cached=True,
    )
    assert json.loads(answer.model_dump_json()) == {
        "faces": [
            {
                "box": [10.0, 20.1, 130.0, 160.0],
                "det_score": 0.9987,
                "landmarks": [[40.5, 70.0], [90.5, 70.0], [65.0, 95.0], [45.0, 120.0], [85.0, 120.0]],
                "quality": 0.9987,
                "decision": "match",
                "matches": [
                    {
                        "person_id": 1,
                        "name": "Ann",
                        "face_id": 7,
                        "similarity": 0.4,
                        "far": 0.00042,
                        "person": {
                            "id": 1,
                            "name": "Ann",
                            "external_id": "E-1",
                            "age": 36,
                            "gender": "f",
                            "address": "London",
                            "attributes": {"k": [1]},
                        },
                    }
                ],
            }
        ],
        "model_version": "2",
        "threshold": 0.38,
        "threshold_source": "shipped",
        "took_ms": 12.34,
        "cached": True,
    }
    assert list(answer.model_dump()) == [
        "faces",
        "model_version",
        "threshold",
        "threshold_source",
        "took_ms",
        "cached",
    ]
    assert list(answer.model_dump()["faces"][0]) == [
        "box",
        "det_score",
        "landmarks",
        "quality",
        "decision",
        "matches",
    ]
