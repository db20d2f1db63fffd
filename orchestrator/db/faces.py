"""Faces and their embeddings: the data the search index is built and rebuilt from."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import cast

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sqlalchemy import Row, delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped
from sqlmodel import col

from orchestrator.core.errors import NotFound
from orchestrator.db.state import bump_in
from orchestrator.db.store import Store, chunks
from orchestrator.db.tables import Face, FaceEmbedding, FacePublic, Person

log = logging.getLogger(__name__)

# Primary keys are Optional on the models (None until inserted), never NULL in a row.
FACE_ID = cast("Mapped[int]", Face.id)
PERSON_ID = cast("Mapped[int]", Person.id)

_SHA256 = re.compile(r"[0-9a-f]{64}")
EMBEDDING_DTYPE = np.dtype("<f4")
"""Stored byte order: little-endian float32, whatever the machine."""


def _vector_bytes(embedding: ArrayLike) -> tuple[bytes, int]:
    vector = np.asarray(embedding, dtype=EMBEDDING_DTYPE)
    if vector.ndim != 1 or vector.size == 0 or not np.isfinite(vector).all():
        raise ValueError(f"an embedding is a finite 1-D vector, got shape {vector.shape}")
    return vector.tobytes(), int(vector.size)


def _stacked(
    model_version: str, rows: Sequence[Row[int, bytes, int]]
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """(face id, embedding bytes, dim) rows → ids [n] int64, vectors [n, D] float32;
    shapes [0] and [0, 0] without rows."""
    ids = np.array([row[0] for row in rows], dtype=np.int64)
    if not rows:
        return ids, np.empty((0, 0), dtype=np.float32)
    dims = {row[2] for row in rows}
    if len(dims) != 1:
        raise ValueError(f"version {model_version!r} mixes dimensions {sorted(dims)}")
    blob = b"".join(row[1] for row in rows)
    vectors = np.frombuffer(blob, dtype=EMBEDDING_DTYPE).reshape(len(rows), dims.pop())
    return ids, vectors.astype(np.float32)  # a writable copy in native byte order


def _public(face: Face) -> FacePublic:
    assert face.id is not None
    return FacePublic(
        face_id=face.id,
        person_id=face.person_id,
        created_at=face.created_at,
        model_version=face.model_version,
        quality=face.quality,
        det_score=face.det_score,
        box=face.box,
    )


class Faces(Store):
    def add_face(
        self,
        person_id: int,
        *,
        embedding: NDArray[np.float32],
        model_version: str,
        crop_png: bytes,
        image_sha256: str,
        quality: float,
        det_score: float,
        box: Sequence[float],
    ) -> FacePublic:
        """Store a face and its embedding ([D] float32) in one transaction.

        NotFound when the person does not exist (or is deleted meanwhile). The caller
        adds the vector to the index and bumps the generation afterwards.
        """
        data, dim = _vector_bytes(embedding)
        if not _SHA256.fullmatch(image_sha256):
            raise ValueError("image_sha256 must be 64 lowercase hex digits")
        if len(box) != 4:
            raise ValueError("box is [x1, y1, x2, y2]")
        if not model_version:
            raise ValueError("model_version must not be empty")
        face = Face(
            person_id=person_id,
            model_version=model_version,
            crop_png=crop_png,
            image_sha256=image_sha256,
            quality=float(quality),
            det_score=float(det_score),
            box=[float(value) for value in box],
        )
        try:
            with self._writing() as session:
                if session.get(Person, person_id) is None:
                    raise NotFound(f"person {person_id} not found")
                session.add(face)
                session.flush()
                assert face.id is not None
                session.add(
                    FaceEmbedding(face_id=face.id, model_version=model_version, embedding=data, dim=dim)
                )
        except IntegrityError:
            # The person was deleted between the check and the insert.
            raise NotFound(f"person {person_id} not found") from None
        return _public(face)

    def list_faces(self, person_id: int) -> list[FacePublic]:
        """A person's faces, oldest first; NotFound when the person does not exist."""
        with self._reading() as session:
            if session.get(Person, person_id) is None:
                raise NotFound(f"person {person_id} not found")
            faces = session.scalars(
                select(Face).where(col(Face.person_id) == person_id).order_by(col(Face.id))
            ).all()
            return [_public(face) for face in faces]

    def delete_face(self, face_id: int) -> int:
        """Delete a face and its embeddings; returns its person's id."""
        with self._writing() as session:
            person_id = session.scalar(
                select(col(Face.person_id)).where(col(Face.id) == face_id).with_for_update()
            )
            if person_id is None:
                raise NotFound(f"face {face_id} not found")
            session.execute(delete(Face).where(col(Face.id) == face_id))
            bump_in(session)
        return int(person_id)

    def faces_by_id(self, ids: Sequence[int]) -> dict[int, tuple[int, str]]:
        """face id → (person id, person name); ids no longer in the gallery are absent."""
        wanted = sorted({int(face_id) for face_id in ids})
        found: dict[int, tuple[int, str]] = {}
        with self._reading() as session:
            for chunk in chunks(wanted):
                rows = session.execute(
                    select(FACE_ID, PERSON_ID, col(Person.name))
                    .join(Person, col(Person.id) == col(Face.person_id))
                    .where(col(Face.id).in_(chunk))
                )
                found.update((face_id, (person_id, name)) for face_id, person_id, name in rows)
        return found

    def embeddings(
        self, model_version: str, after_id: int = 0, limit: int = 1000
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The next ``limit`` embeddings of a version with face id > ``after_id``.

        Returns ids [n] int64 ascending and vectors [n, D] float32; both empty (shape
        [0] and [0, 0]) past the end. Pass the last id back as ``after_id`` to go on.
        """
        with self._reading() as session:
            rows = session.execute(
                select(col(FaceEmbedding.face_id), col(FaceEmbedding.embedding), col(FaceEmbedding.dim))
                .where(col(FaceEmbedding.model_version) == model_version)
                .where(col(FaceEmbedding.face_id) > after_id)
                .order_by(col(FaceEmbedding.face_id))
                .limit(limit)
            ).all()
        return _stacked(model_version, rows)

    def embeddings_of(
        self, model_version: str, ids: ArrayLike
    ) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
        """The embeddings of a version of those face ``ids`` [n] that have one.

        Returns ids [m] int64 ascending (without repeats) and vectors [m, D] float32, as
        :meth:`embeddings` does; ids without such an embedding are left out.
        """
        wanted = np.unique(np.asarray(ids, dtype=np.int64).reshape(-1)).tolist()
        rows: list[Row[int, bytes, int]] = []
        with self._reading() as session:
            for chunk in chunks(wanted):
                rows += session.execute(
                    select(col(FaceEmbedding.face_id), col(FaceEmbedding.embedding), col(FaceEmbedding.dim))
                    .where(col(FaceEmbedding.model_version) == model_version)
                    .where(col(FaceEmbedding.face_id).in_(chunk))
                    .order_by(col(FaceEmbedding.face_id))
                ).all()
        return _stacked(model_version, rows)

    def face_ids(self, model_version: str) -> NDArray[np.int64]:
        """All face ids with an embedding of this version, ascending."""
        with self._reading() as session:
            ids = session.scalars(
                select(col(FaceEmbedding.face_id))
                .where(col(FaceEmbedding.model_version) == model_version)
                .order_by(col(FaceEmbedding.face_id))
            ).all()
        return np.array(ids, dtype=np.int64)

    def crops(
        self, after_id: int = 0, limit: int = 256, *, unembedded_by: str | None = None
    ) -> list[tuple[int, bytes]]:
        """(face id, aligned crop PNG) with face id > ``after_id``, ascending: for re-embedding.

        With ``unembedded_by``, only faces that have no embedding of that version yet.
        """
        query = select(FACE_ID, col(Face.crop_png)).where(col(Face.id) > after_id)
        if unembedded_by is not None:
            embedded = select(col(FaceEmbedding.face_id)).where(
                col(FaceEmbedding.face_id) == FACE_ID, col(FaceEmbedding.model_version) == unembedded_by
            )
            query = query.where(~embedded.exists())
        with self._reading() as session:
            rows = session.execute(query.order_by(col(Face.id)).limit(limit)).all()
        return [(int(face_id), bytes(png)) for face_id, png in rows]

    def add_embeddings(self, model_version: str, ids: ArrayLike, vectors: ArrayLike) -> int:
        """Insert or replace the embeddings of a version: ids [n], vectors [n, D].

        Faces deleted meanwhile are skipped. Returns how many rows were written.
        """
        face_ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        matrix = np.asarray(vectors, dtype=EMBEDDING_DTYPE)
        if matrix.ndim != 2 or len(matrix) != len(face_ids) or not np.isfinite(matrix).all():
            raise ValueError(f"need vectors [{len(face_ids)}, D] finite, got shape {matrix.shape}")
        if not model_version:
            raise ValueError("model_version must not be empty")
        by_id = {int(face_id): row for face_id, row in zip(face_ids, matrix, strict=True)}
        written = 0
        with self._writing() as session:
            for chunk in chunks(sorted(by_id)):
                # Locked so a concurrent delete cannot remove a face between this check
                # and the insert (which would then fail its foreign key).
                alive = session.scalars(select(FACE_ID).where(FACE_ID.in_(chunk)).with_for_update()).all()
                # Delete then insert: the one upsert spelled the same on all three databases.
                session.execute(
                    delete(FaceEmbedding)
                    .where(col(FaceEmbedding.model_version) == model_version)
                    .where(col(FaceEmbedding.face_id).in_(chunk))
                )
                rows = [
                    {
                        "face_id": face_id,
                        "model_version": model_version,
                        "embedding": by_id[face_id].tobytes(),
                        "dim": matrix.shape[1],
                    }
                    for face_id in alive
                ]
                if rows:
                    session.execute(insert(FaceEmbedding), rows)
                written += len(rows)
        log.info("embeddings stored", extra={"model_version": model_version, "count": written})
        return written

    def face_image(self, face_id: int) -> bytes:
        """The stored aligned crop of a face, PNG; NotFound when there is no such face."""
        with self._reading() as session:
            png = session.scalar(select(col(Face.crop_png)).where(col(Face.id) == face_id))
        if png is None:
            raise NotFound(f"face {face_id} not found")
        return bytes(png)

    def count_faces(self) -> int:
        with self._reading() as session:
            return session.scalar(select(func.count(col(Face.id)))) or 0
