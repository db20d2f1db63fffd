"""Faces and embeddings: what the search index is built and rebuilt from."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from sqlalchemy import func, select

from orchestrator.core.errors import NotFound
from orchestrator.db import Gallery
from orchestrator.db.store import CHUNK
from orchestrator.db.tables import Face, FaceEmbedding, PersonCreate

DIM = 512


def unit_vectors(n: int, seed: int = 0, dim: int = DIM) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def enrol(gallery: Gallery, person_id: int, vector: np.ndarray, version: str = "1", tag: int = 0) -> int:
    crop = b"\x89PNG\r\n\x1a\n" + bytes([tag % 256]) * 64
    face = gallery.add_face(
        person_id,
        embedding=vector,
        model_version=version,
        crop_png=crop,
        image_sha256=hashlib.sha256(crop).hexdigest(),
        quality=0.875,
        det_score=0.99,
        box=[10.5, 20.0, 110.25, 140.0],
    )
    return face.face_id


def rows(gallery: Gallery, table: type[Face] | type[FaceEmbedding]) -> int:
    with gallery.engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(table)) or 0


def test_add_list_delete_face(gallery: Gallery) -> None:
    person = gallery.create_person(PersonCreate(name="Enrolled"))
    face = gallery.add_face(
        person.id,
        embedding=unit_vectors(1)[0],
        model_version="1",
        crop_png=b"png",
        image_sha256="ab" * 32,
        quality=0.5,
        det_score=0.75,
        box=[1, 2, 3, 4],
    )
    assert (face.person_id, face.model_version, face.quality, face.det_score, face.box) == (
        person.id,
        "1",
        0.5,
        0.75,
        [1.0, 2.0, 3.0, 4.0],
    )
    assert gallery.list_faces(person.id) == [face]
    assert gallery.get_person(person.id).face_count == 1
    assert gallery.count_faces() == 1
    assert gallery.delete_face(face.face_id) == person.id
    assert gallery.list_faces(person.id) == []
    assert rows(gallery, FaceEmbedding) == 0
    with pytest.raises(NotFound):
        gallery.delete_face(face.face_id)
    with pytest.raises(NotFound):
        gallery.list_faces(person.id + 1000)


def test_add_face_needs_a_person_and_a_valid_embedding(gallery: Gallery) -> None:
    with pytest.raises(NotFound):
        enrol(gallery, 424242, unit_vectors(1)[0])
    person = gallery.create_person(PersonCreate(name="P"))
    for bad in (np.zeros((2, DIM), np.float32), np.array([np.nan, 1.0], np.float32), np.array([])):
        with pytest.raises(ValueError):
            enrol(gallery, person.id, bad)
    assert rows(gallery, Face) == 0


def test_large_crop_is_kept_whole(gallery: Gallery) -> None:
    """A crop over MySQL's 64 KB BLOB limit survives: the column is LONGBLOB there."""
    person = gallery.create_person(PersonCreate(name="Big crop"))
    crop = np.random.default_rng(1).bytes(1_100_000)
    face = gallery.add_face(
        person.id,
        embedding=unit_vectors(1)[0],
        model_version="1",
        crop_png=crop,
        image_sha256=hashlib.sha256(crop).hexdigest(),
        quality=1.0,
        det_score=1.0,
        box=[0, 0, 112, 112],
    )
    assert gallery.crops() == [(face.face_id, crop)]


def test_embeddings_round_trip_exactly(gallery: Gallery) -> None:
    person = gallery.create_person(PersonCreate(name="Exact"))
    vectors = unit_vectors(5, seed=3)
    vectors[0, :4] = [np.float32(1e-38), np.float32(-0.0), np.finfo(np.float32).max, np.float32(1 / 3)]
    ids = [enrol(gallery, person.id, vector) for vector in vectors]
    got_ids, got = gallery.embeddings("1")
    assert got_ids.dtype == np.int64 and got.dtype == np.float32
    assert got_ids.tolist() == ids
    assert got.tobytes() == vectors.tobytes()
    got[0, 0] = 0.0  # a writable copy, not a view of the database's bytes
    np.testing.assert_array_equal(gallery.face_ids("1"), ids)
    assert gallery.embeddings("2")[1].shape == (0, 0)


def test_keyset_pagination_covers_every_face_once(gallery: Gallery) -> None:
    people = [gallery.create_person(PersonCreate(name=f"P{i}")).id for i in range(3)]
    vectors = unit_vectors(23, seed=5)
    ids = [enrol(gallery, people[i % 3], vector, tag=i) for i, vector in enumerate(vectors)]
    gallery.delete_face(ids[10])
    expected = [face_id for face_id in ids if face_id != ids[10]]

    seen: list[int] = []
    parts: list[np.ndarray] = []
    after = 0
    while True:
        page_ids, page = gallery.embeddings("1", after_id=after, limit=5)
        if len(page_ids) == 0:
            break
        assert len(page_ids) <= 5
        seen.extend(page_ids.tolist())
        parts.append(page)
        after = int(page_ids[-1])
    assert seen == expected
    np.testing.assert_array_equal(np.concatenate(parts), np.delete(vectors, 10, axis=0))

    crops: list[int] = []
    after = 0
    while batch := gallery.crops(after_id=after, limit=4):
        crops.extend(face_id for face_id, _ in batch)
        after = batch[-1][0]
    assert crops == expected


def test_crops_unembedded_by_a_version_are_those_it_still_lacks(gallery: Gallery) -> None:
    person = gallery.create_person(PersonCreate(name="Half done"))
    ids = [enrol(gallery, person.id, vector, tag=i) for i, vector in enumerate(unit_vectors(6, seed=9))]
    gallery.add_embeddings("2", ids[1::2], unit_vectors(3, seed=10))
    assert [face_id for face_id, _ in gallery.crops(unembedded_by="2")] == ids[0::2]
    assert [face_id for face_id, _ in gallery.crops(ids[0], 1, unembedded_by="2")] == [ids[2]]
    assert gallery.crops(unembedded_by="1") == []


def test_cascade_delete_removes_faces_and_embeddings(gallery: Gallery) -> None:
    gone = gallery.create_person(PersonCreate(name="Gone"))
    kept = gallery.create_person(PersonCreate(name="Kept"))
    vectors = unit_vectors(4)
    gone_faces = [enrol(gallery, gone.id, vector) for vector in vectors[:3]]
    kept_face = enrol(gallery, kept.id, vectors[3])
    gallery.add_embeddings("2", gone_faces, unit_vectors(3, seed=9, dim=128))

    assert gallery.delete_person(gone.id) == gone_faces
    assert rows(gallery, Face) == 1
    assert rows(gallery, FaceEmbedding) == 1
    assert gallery.face_ids("1").tolist() == [kept_face]
    assert gallery.face_ids("2").tolist() == []
    assert gallery.faces_by_id([*gone_faces, kept_face]) == {kept_face: (kept.id, "Kept")}


def test_faces_by_id_drops_missing_ids(gallery: Gallery) -> None:
    person = gallery.create_person(PersonCreate(name="Named"))
    ids = [enrol(gallery, person.id, vector) for vector in unit_vectors(3)]
    many = list(range(max(ids) + 1, max(ids) + 1200))  # more than one IN (...) chunk
    assert gallery.faces_by_id([*ids, *many, ids[0]]) == {face_id: (person.id, "Named") for face_id in ids}
    assert gallery.faces_by_id([]) == {}


def test_add_embeddings_upserts_a_new_version(gallery: Gallery) -> None:
    person = gallery.create_person(PersonCreate(name="Rolled out"))
    ids = [enrol(gallery, person.id, vector) for vector in unit_vectors(4)]
    first = unit_vectors(4, seed=11, dim=64)
    assert gallery.add_embeddings("2", ids, first) == 4
    second = unit_vectors(2, seed=12, dim=64)
    # Re-embedding replaces; a face deleted meanwhile is skipped, not an error.
    gallery.delete_face(ids[3])
    assert gallery.add_embeddings("2", [ids[0], ids[3]], second) == 1
    got_ids, got = gallery.embeddings("2")
    assert got_ids.tolist() == ids[:3]
    np.testing.assert_array_equal(got, np.stack([second[0], first[1], first[2]]))
    assert gallery.embeddings("1")[1].shape == (3, DIM)  # the old version is untouched
    with pytest.raises(ValueError):
        gallery.add_embeddings("2", ids[:2], first[:1])


def test_embeddings_of_looks_up_listed_faces_across_chunks(gallery: Gallery) -> None:
    person = gallery.create_person(PersonCreate(name="Looked up"))
    vectors = unit_vectors(8, seed=21)
    ids = [enrol(gallery, person.id, vector, tag=i) for i, vector in enumerate(vectors)]
    gallery.delete_face(ids[5])
    # Ids that are no face's (zero and below) put ids[0] last in the first IN (...) chunk.
    absent = list(range(1 - CHUNK + 1, 1))
    asked = [*reversed(ids), ids[2], *absent]
    got_ids, got = gallery.embeddings_of("1", asked)
    kept = [i for i in range(8) if i != 5]
    assert got_ids.dtype == np.int64 and got.dtype == np.float32
    assert got_ids.tolist() == [ids[i] for i in kept]
    assert got.tobytes() == vectors[kept].tobytes()

    gallery.add_embeddings("2", ids[:3], unit_vectors(3, seed=22, dim=64))
    other_ids, other = gallery.embeddings_of("2", np.array(ids))
    assert other_ids.tolist() == ids[:3] and other.shape == (3, 64)
    none_ids, none = gallery.embeddings_of("1", [])
    assert none_ids.shape == (0,) and none.shape == (0, 0)
