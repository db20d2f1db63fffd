import numpy as np
import pytest

from orchestrator.pipeline.vision.faces import Face
from orchestrator.recognition.answers import person_matches, recognized_face
from search_service.schema import Hit

pytestmark = pytest.mark.unit


def test_one_match_per_person_best_face_first_and_orphans_dropped() -> None:
    hits = [Hit(id=7, score=0.9), Hit(id=99, score=0.85), Hit(id=3, score=0.8), Hit(id=5, score=0.5)]
    owners = {7: (1, "Ann"), 3: (1, "Ann"), 5: (2, "Bob")}  # face 99 is not in the database
    matches = person_matches(hits, owners, top_k=5)
    assert matches == [
        {"person_id": 1, "name": "Ann", "face_id": 7, "similarity": 0.9},
        {"person_id": 2, "name": "Bob", "face_id": 5, "similarity": 0.5},
    ]
    assert person_matches(hits, owners, top_k=1) == matches[:1]


def test_decision_uses_the_threshold_on_the_best_match() -> None:
    face = Face(box=np.array([0, 0, 112, 112], np.float32), det_score=0.99, sharpness=500.0)
    face.points5 = np.zeros((5, 2), np.float32)
    best = [{"person_id": 1, "name": "Ann", "face_id": 7, "similarity": 0.4}]
    assert recognized_face(face, best, threshold=0.38)["decision"] == "match"
    assert recognized_face(face, best, threshold=0.41)["decision"] == "unknown"
    assert recognized_face(face, [], threshold=0.0)["decision"] == "unknown"
