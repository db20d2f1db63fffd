"""A face already enrolled under another person, refused as a duplicate identity.

The enrolment's second gate after the quality gate, before anything is written: enrolling
the same person under a second name would split their matches between two records and make
each an impostor of the other. An admin may force it (twins, a deliberate second record).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from orchestrator.clients.search import SearchServiceError
from orchestrator.core.errors import DuplicateIdentity, UpstreamUnavailable
from orchestrator.gallery.score_keeper import ScoreKeeper

log = logging.getLogger(__name__)


async def refuse_duplicates(
    scores: ScoreKeeper,
    collection: str,
    embeddings: np.ndarray,
    person_id: int | None,
    threshold: float,
    files: Sequence[str] = (),
) -> None:
    """Raise DuplicateIdentity for the first of the faces ``embeddings`` [n, D] that matches an
    enrolled face of a person other than ``person_id`` (None: a new person, so anyone) at or
    above ``threshold`` in ``collection``; its detail names the file when ``files`` are given."""
    try:
        found = await scores.check_duplicates(collection, embeddings, person_id, threshold)
    except SearchServiceError as error:
        raise UpstreamUnavailable(f"search service: {error}") from error
    for number, match in enumerate(found, 1):
        if match is None:
            continue
        person, similarity = match
        where = f"file {number} ({files[number - 1]!r}): " if files else ""
        log.info("enrolment refused: the face matches person %s at %.4f", person.id, similarity)
        raise DuplicateIdentity(
            f"{where}the face matches {person.name!r} (person {person.id}) at similarity "
            f"{similarity:.3f}, at or above the threshold {threshold:.3f}: the same person under "
            "another name? (force=true enrols it anyway)",
            person.model_dump(mode="json"),
            similarity,
        )
