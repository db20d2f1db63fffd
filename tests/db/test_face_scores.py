"""Faces' impostor and genuine scores: replaced, raised to the maximum, found by the face that gave
them, counted, dropped, and read as pairs of people who may be one."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sqlalchemy import select

from orchestrator.core.errors import InvalidRequest
from orchestrator.db import Gallery
from orchestrator.db.face_scores import SCORES, FaceScoreRow, ScoreKind, ScoreRaise
from orchestrator.db.tables import PersonCreate
from tests.db.test_faces import enrol, unit_vectors


def faces(gallery: Gallery, *counts: int) -> list[list[int]]:
    """People with that many faces each: their face ids, per person."""
    vectors = iter(unit_vectors(sum(counts), seed=7))
    people = []
    for number, count in enumerate(counts):
        person = gallery.create_person(PersonCreate(name=f"Person {number}"))
        people.append([enrol(gallery, person.id, next(vectors), tag=number) for _ in range(count)])
    return people


def stored(
    gallery: Gallery, version: str = "1"
) -> dict[int, tuple[float | None, int | None, float | None, int | None]]:
    """face id → (impostor, its face, genuine, its face) as stored for the version."""
    with gallery.engine.connect() as connection:
        rows = connection.execute(select(SCORES).where(SCORES.c.model_version == version)).all()
    return {
        row.face_id: (row.impostor, row.impostor_face_id, row.genuine, row.genuine_face_id) for row in rows
    }


def test_put_inserts_replaces_and_skips_faces_that_are_gone(gallery: Gallery) -> None:
    [[a, b], [c]] = faces(gallery, 2, 1)
    gallery.put_face_scores("1", [FaceScoreRow(a, 0.25, c, 0.8125, b), FaceScoreRow(c, 0.25, a)])
    assert stored(gallery) == {a: (0.25, c, 0.8125, b), c: (0.25, a, None, None)}
    # Replaced whole, down as well as up (a recompute after a deletion lowers scores).
    gallery.put_face_scores("1", [FaceScoreRow(a, 0.125, c), FaceScoreRow(10**9, 0.5, a)])
    assert stored(gallery) == {a: (0.125, c, None, None), c: (0.25, a, None, None)}
    gallery.put_face_scores("2", [FaceScoreRow(b, genuine=0.75, genuine_face_id=a)])
    assert stored(gallery, "2") == {b: (None, None, 0.75, a)}
    assert stored(gallery)[a] == (0.125, c, None, None)
    # A double comes back as it was written, on every backend.
    third = 1 / 3
    gallery.put_face_scores("1", [FaceScoreRow(c, third, b)])
    assert stored(gallery)[c] == (third, b, None, None)


def test_a_raise_takes_only_a_higher_score(gallery: Gallery) -> None:
    [[a, b], [c, d]] = faces(gallery, 2, 2)
    gallery.put_face_scores("1", [FaceScoreRow(a), FaceScoreRow(b, 0.5, c, 0.5, a)])
    gallery.raise_face_scores(
        "1",
        [
            ScoreRaise(a, "impostor", 0.25, c),  # over a null
            ScoreRaise(a, "genuine", 0.5, b),
            ScoreRaise(b, "impostor", 0.375, d),  # lower: kept as it was
            ScoreRaise(b, "genuine", 0.5, a),  # equal: kept as it was
            ScoreRaise(c, "impostor", 0.9, a),  # no row: nothing
        ],
    )
    assert stored(gallery) == {a: (0.25, c, 0.5, b), b: (0.5, c, 0.5, a)}
    gallery.raise_face_scores("1", [ScoreRaise(a, "impostor", 0.3, d), ScoreRaise(a, "impostor", 0.4, c)])
    assert stored(gallery)[a] == (0.4, c, 0.5, b)
    gallery.raise_face_scores("2", [ScoreRaise(a, "impostor", 0.99, d)])  # another version
    assert stored(gallery)[a] == (0.4, c, 0.5, b)


def test_concurrent_raises_keep_the_maximum(gallery: Gallery) -> None:
    [own, others] = faces(gallery, 4, 8)
    gallery.put_face_scores("1", [FaceScoreRow(face) for face in own])
    rng = np.random.default_rng(3)
    kinds: list[ScoreKind] = ["impostor", "genuine"]
    batches = [
        [
            ScoreRaise(int(face), kinds[int(kind)], float(rng.random()), int(by))
            for face, kind, by in zip(
                rng.choice(own, 12), rng.integers(0, 2, 12), rng.choice(others, 12), strict=True
            )
        ]
        for _ in range(24)
    ]
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda batch: gallery.raise_face_scores("1", batch), batches))
    expected: dict[int, list[float | int | None]] = {face: [None, None, None, None] for face in own}
    for lift in (lift for batch in batches for lift in batch):
        at = 0 if lift.kind == "impostor" else 2
        score = expected[lift.face_id][at]
        if score is None or lift.similarity > score:
            expected[lift.face_id][at : at + 2] = [lift.similarity, lift.by_face_id]
    assert stored(gallery) == {face: tuple(values) for face, values in expected.items()}


def test_faces_scored_against_a_face_by_either_score(gallery: Gallery) -> None:
    [[a, b], [c], [d]] = faces(gallery, 2, 1, 1)
    gallery.put_face_scores(
        "1",
        [
            FaceScoreRow(a, 0.2, c, 0.7, b),
            FaceScoreRow(b, 0.3, d, 0.7, a),
            FaceScoreRow(c, 0.2, a),
            FaceScoreRow(d, 0.3, b),
        ],
    )
    gallery.put_face_scores("2", [FaceScoreRow(d, 0.3, c)])
    assert gallery.faces_scored_against("1", [c]) == [a]
    assert gallery.faces_scored_against("1", [a, b]) == [a, b, c, d]
    assert gallery.faces_scored_against("1", [b]) == [a, d]
    assert gallery.faces_scored_against("2", [c]) == [d]
    assert gallery.faces_scored_against("1", []) == []


def test_the_distribution_counts_the_scores_there_are(gallery: Gallery) -> None:
    [[a, b], [c]] = faces(gallery, 2, 1)
    gallery.put_face_scores(
        "1", [FaceScoreRow(a, 0.2, c, 0.7, b), FaceScoreRow(b, 0.3, c, 0.7, a), FaceScoreRow(c)]
    )
    gallery.put_face_scores("2", [FaceScoreRow(c, 0.6, a)])
    impostor, genuine = gallery.score_distribution("1")
    assert (sorted(impostor), genuine) == ([0.2, 0.3], [0.7, 0.7])
    assert gallery.score_distribution("2") == ([0.6], [])
    assert gallery.score_distribution("3") == ([], [])


def test_a_face_takes_its_scores_along_when_it_goes(gallery: Gallery) -> None:
    [[a, b], [c]] = faces(gallery, 2, 1)
    gallery.put_face_scores(
        "1", [FaceScoreRow(a, 0.2, c, 0.7, b), FaceScoreRow(b, 0.3, c, 0.7, a), FaceScoreRow(c, 0.3, b)]
    )
    gallery.put_face_scores("2", [FaceScoreRow(a, 0.2, c)])
    gallery.delete_face(a)
    assert set(stored(gallery)) == {b, c} and stored(gallery, "2") == {}
    # The score b had from a stays until the keeper recomputes b; the query finds it.
    assert gallery.faces_scored_against("1", [a]) == [b]
    person = gallery.faces_by_id([c])[c][0]
    gallery.delete_person(person)
    assert set(stored(gallery)) == {b}
    assert gallery.score_distribution("1") == ([0.3], [0.7])


def test_dropping_a_version_leaves_the_others(gallery: Gallery) -> None:
    [[a, b]] = faces(gallery, 2)
    gallery.put_face_scores("1", [FaceScoreRow(a, genuine=0.7, genuine_face_id=b), FaceScoreRow(b)])
    gallery.put_face_scores("2", [FaceScoreRow(a)])
    assert gallery.drop_face_scores("1") == 2
    assert gallery.drop_face_scores("1") == 0
    assert set(stored(gallery, "2")) == {a}


def test_duplicate_pairs_one_per_pair_of_people_best_first(gallery: Gallery) -> None:
    [[a1, a2], [b1, b2], [c1], [d1], [e1]] = faces(gallery, 2, 2, 1, 1, 1)
    owner = {face: person for face, (person, _) in gallery.faces_by_id([a1, a2, b1, b2, c1, d1, e1]).items()}
    gallery.put_face_scores(
        "1",
        [
            FaceScoreRow(a1, 0.81, b2, 0.9, a2),  # A–B three times: the best of them counts
            FaceScoreRow(a2, 0.86, b1, 0.9, a1),
            FaceScoreRow(b1, 0.86, a2, 0.88, b2),  # the same pair, seen from the other side
            FaceScoreRow(b2, 0.7, c1, 0.88, b1),  # under the threshold
            FaceScoreRow(c1, 0.95, e1),  # C–E, the best pair
            FaceScoreRow(d1, 0.86, a1),  # A–D, as good as A–B: ordered by the people's ids
            FaceScoreRow(e1, 0.95, c1),
        ],
    )
    pairs, total = gallery.duplicate_pairs("1", 0.8, limit=10, offset=0)
    assert total == 3
    found = [([p.id for p in pair.people], pair.similarity, pair.face_ids) for pair in pairs]
    assert found == [
        ([owner[c1], owner[e1]], 0.95, [c1, e1]),
        ([owner[a1], owner[b1]], 0.86, [a2, b1]),
        ([owner[a1], owner[d1]], 0.86, [a1, d1]),
    ]
    assert pairs[0].people[0].name == "Person 2"
    page, total = gallery.duplicate_pairs("1", 0.8, limit=1, offset=1)
    assert total == 3 and [p.id for p in page[0].people] == [owner[a1], owner[b1]]
    assert gallery.duplicate_pairs("1", 0.9, limit=10, offset=0)[1] == 1
    assert gallery.duplicate_pairs("2", 0.0, limit=10, offset=0) == ([], 0)
    # A pair whose face is gone no longer shows (its faces are recomputed by the keeper).
    gallery.delete_face(e1)
    pairs, total = gallery.duplicate_pairs("1", 0.8, limit=10, offset=0)
    assert total == 2 and all(owner[c1] not in [p.id for p in pair.people] for pair in pairs)


@pytest.mark.parametrize(("limit", "offset"), [(0, 0), (1001, 0), (10, -1)])
def test_duplicate_pairs_page_bounds(gallery: Gallery, limit: int, offset: int) -> None:
    with pytest.raises(InvalidRequest):
        gallery.duplicate_pairs("1", 0.5, limit=limit, offset=offset)
