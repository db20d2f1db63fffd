"""Each face's impostor and genuine scores per embedder version, and the people they show twice.

The score keeper (``gallery/score_keeper.py``) writes them; the gallery calibration counts
them (``gallery/calibration.py``). A face's row goes with the face (ON DELETE CASCADE); the
face that gave a score has no foreign key, so its deletion leaves the score for the keeper
to recompute, found by :meth:`FaceScores.faces_scored_against`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any, Literal, cast

from sqlalchemy import Double, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.orm import Mapped, aliased
from sqlmodel import col

from orchestrator.db.store import Store, check_page, chunks
from orchestrator.db.tables import DuplicatePair, Face, FaceScore, Person, PersonSummary, metadata

ScoreKind = Literal["impostor", "genuine"]
SCORES = metadata.tables[FaceScore.__tablename__]
FACE_ID = cast("Mapped[int]", Face.id)  # Optional on the model, never NULL in a row


@dataclass(frozen=True)
class FaceScoreRow:
    """A face's scores as a full search found them; None where no such face was among its neighbours."""

    face_id: int
    impostor: float | None = None
    """Its best similarity to a face of another person."""
    impostor_face_id: int | None = None
    genuine: float | None = None
    """Its best similarity to another face of its own person."""
    genuine_face_id: int | None = None


@dataclass(frozen=True)
class ScoreRaise:
    """A new face ``by_face_id`` at ``similarity`` to ``face_id``: its score of that kind, if higher."""

    face_id: int
    kind: ScoreKind
    similarity: float
    by_face_id: int


def _raise_statement(kind: ScoreKind) -> Any:
    """UPDATE one face's score of ``kind`` where the new similarity beats it: the database keeps the
    maximum however writers interleave. One kind per statement: MySQL evaluates SET left to right,
    so a CASE on the score in a later assignment would see the new value."""
    score, by = SCORES.c[kind], SCORES.c[f"{kind}_face_id"]
    similarity = bindparam("b_similarity", type_=Double)
    return (
        update(SCORES)
        .where(SCORES.c.face_id == bindparam("b_face"), SCORES.c.model_version == bindparam("b_version"))
        .where(or_(score.is_(None), score < similarity))
        .values({score: similarity, by: bindparam("b_by")})
    )


def _summary(person: Person) -> PersonSummary:
    return PersonSummary.model_validate({name: getattr(person, name) for name in PersonSummary.model_fields})


class FaceScores(Store):
    def put_face_scores(self, model_version: str, rows: Sequence[FaceScoreRow]) -> None:
        """Insert or replace these faces' scores; faces no longer in the gallery are skipped."""
        by_face = {row.face_id: row for row in rows}
        with self._writing() as session:
            for chunk in chunks(sorted(by_face)):
                # The faces locked, as add_embeddings does, so a delete cannot slip between the
                # check and the insert; then their rows, in id order as the raises lock them.
                alive = session.scalars(
                    select(FACE_ID).where(FACE_ID.in_(chunk)).order_by(FACE_ID).with_for_update()
                ).all()
                mine = (SCORES.c.model_version == model_version) & SCORES.c.face_id.in_(chunk)
                session.execute(
                    select(SCORES.c.face_id).where(mine).order_by(SCORES.c.face_id).with_for_update()
                )
                session.execute(delete(SCORES).where(mine))
                if alive:
                    session.execute(
                        insert(SCORES),
                        [
                            {
                                "face_id": face_id,
                                "model_version": model_version,
                                "impostor": by_face[face_id].impostor,
                                "impostor_face_id": by_face[face_id].impostor_face_id,
                                "genuine": by_face[face_id].genuine,
                                "genuine_face_id": by_face[face_id].genuine_face_id,
                            }
                            for face_id in alive
                        ],
                    )

    def raise_face_scores(self, model_version: str, raises: Sequence[ScoreRaise]) -> None:
        """Set each face's score of the raise's kind to its similarity (and face) where that is higher
        than the stored one or none is stored; faces without a row are left as they are."""
        best: dict[tuple[int, ScoreKind], ScoreRaise] = {}
        for lift in raises:
            key = (lift.face_id, lift.kind)
            if key not in best or lift.similarity > best[key].similarity:
                best[key] = lift
        # In face id order, as put_face_scores locks: concurrent writers cannot deadlock.
        ordered = [best[key] for key in sorted(best)]
        with self._writing() as session:
            for kind, lifts in groupby(ordered, key=lambda lift: lift.kind):
                session.execute(
                    _raise_statement(kind),
                    [
                        {
                            "b_face": lift.face_id,
                            "b_version": model_version,
                            "b_similarity": float(lift.similarity),
                            "b_by": lift.by_face_id,
                        }
                        for lift in lifts
                    ],
                )

    def faces_scored_against(self, model_version: str, face_ids: Sequence[int]) -> list[int]:
        """Faces whose impostor or genuine score came from one of ``face_ids``, ascending."""
        wanted = sorted({int(face_id) for face_id in face_ids})
        found: set[int] = set()
        with self._reading() as session:
            for chunk in chunks(wanted):
                for by in (SCORES.c.impostor_face_id, SCORES.c.genuine_face_id):
                    found.update(
                        session.scalars(
                            select(SCORES.c.face_id).where(
                                SCORES.c.model_version == model_version, by.in_(chunk)
                            )
                        )
                    )
        return sorted(found)

    def score_distribution(self, model_version: str) -> tuple[list[float], list[float]]:
        """(impostor scores, genuine scores) of the version's faces, the ones there are."""
        with self._reading() as session:
            rows = session.execute(
                select(SCORES.c.impostor, SCORES.c.genuine)
                .join(Face, col(Face.id) == SCORES.c.face_id)
                .where(SCORES.c.model_version == model_version)
            ).all()
        impostor = [float(row.impostor) for row in rows if row.impostor is not None]
        genuine = [float(row.genuine) for row in rows if row.genuine is not None]
        return impostor, genuine

    def person_ids_of(self, face_ids: Sequence[int]) -> dict[int, int]:
        """face id → its person's id; faces no longer in the gallery are absent."""
        wanted = sorted({int(face_id) for face_id in face_ids})
        found: dict[int, int] = {}
        with self._reading() as session:
            for chunk in chunks(wanted):
                rows = session.execute(select(FACE_ID, col(Face.person_id)).where(FACE_ID.in_(chunk)))
                found.update((int(face_id), int(person_id)) for face_id, person_id in rows)
        return found

    def duplicate_pairs(
        self, model_version: str, threshold: float, limit: int, offset: int
    ) -> tuple[list[DuplicatePair], int]:
        """Pairs of people with faces at or above ``threshold`` to each other, best first, and how many.

        One entry per pair of people, with its best similarity and the two faces giving it.
        Read from the impostor scores: a pair shows when a face's nearest face of another
        person is of the other one (a face close to two other people shows with the closer).
        """
        check_page(limit, offset)
        mine, theirs = aliased(Face), aliased(Face)
        lower_first = col(mine.person_id) < col(theirs.person_id)
        low = case((lower_first, col(mine.person_id)), else_=col(theirs.person_id))
        high = case((lower_first, col(theirs.person_id)), else_=col(mine.person_id))
        low_face = case((lower_first, SCORES.c.face_id), else_=SCORES.c.impostor_face_id)
        high_face = case((lower_first, SCORES.c.impostor_face_id), else_=SCORES.c.face_id)
        candidates = (
            select(
                low.label("low"),
                high.label("high"),
                SCORES.c.impostor.label("similarity"),
                low_face.label("low_face"),
                high_face.label("high_face"),
                func.row_number()
                .over(partition_by=(low, high), order_by=(SCORES.c.impostor.desc(), low_face, high_face))
                .label("rank"),
            )
            .select_from(SCORES)
            .join(mine, col(mine.id) == SCORES.c.face_id)
            .join(theirs, col(theirs.id) == SCORES.c.impostor_face_id)
            .where(
                SCORES.c.model_version == model_version,
                SCORES.c.impostor >= threshold,
                col(mine.person_id) != col(theirs.person_id),
            )
            .subquery()
        )
        pairs = select(candidates).where(candidates.c.rank == 1)
        with self._reading() as session:
            total = session.scalar(select(func.count()).select_from(pairs.subquery())) or 0
            page = session.execute(
                pairs.order_by(candidates.c.similarity.desc(), candidates.c.low, candidates.c.high)
                .limit(limit)
                .offset(offset)
            ).all()
            ids = {row.low for row in page} | {row.high for row in page}
            people = {
                int(person.id): _summary(person)
                for person in session.scalars(select(Person).where(col(Person.id).in_(ids)))
                if person.id is not None
            }
        found = [
            DuplicatePair(
                people=[people[row.low], people[row.high]],
                similarity=float(row.similarity),
                face_ids=[int(row.low_face), int(row.high_face)],
            )
            for row in page
            if row.low in people and row.high in people  # deleted between the two reads
        ]
        return found, int(total)

    def drop_face_scores(self, model_version: str) -> int:
        """Forget every score of a version (one no longer live); how many rows went."""
        with self._writing() as session:
            gone = session.connection().execute(delete(SCORES).where(SCORES.c.model_version == model_version))
        return int(gone.rowcount)
