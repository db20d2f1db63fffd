"""JSON shapes of the recognition answers (API.md), built from pipeline faces and search hits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from orchestrator.pipeline.vision.faces import Face
from search_service.schema import Hit


def _round(values: Any, digits: int = 1) -> list[Any]:
    return [round(float(v), digits) for v in values]


def detected_face(face: Face) -> dict[str, Any]:
    points = [] if face.points5 is None else [_round(p) for p in face.points5]
    return {"box": _round(face.box), "det_score": round(face.det_score, 4), "landmarks": points}


def person_matches(
    hits: Sequence[Hit], owners: Mapping[int, tuple[int, str]], top_k: int
) -> list[dict[str, Any]]:
    """Best face per person, best first; hits whose face is gone from the database are dropped.

    Dropping unknown ids is what keeps an index entry orphaned by a crash from ever being
    served, before the start-up reconciliation removes it.
    """
    best: dict[int, dict[str, Any]] = {}
    for hit in hits:
        owner = owners.get(hit.id)
        if owner is None:
            continue
        person_id, name = owner
        if person_id not in best:
            best[person_id] = {
                "person_id": person_id,
                "name": name,
                "face_id": hit.id,
                "similarity": round(hit.score, 4),
            }
    return sorted(best.values(), key=lambda m: (-m["similarity"], m["person_id"]))[:top_k]


def recognized_face(face: Face, matches: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    decision = "match" if matches and matches[0]["similarity"] >= threshold else "unknown"
    return {**detected_face(face), "quality": face.quality, "decision": decision, "matches": matches}
