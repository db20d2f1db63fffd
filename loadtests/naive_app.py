"""The naive baseline: one FastAPI process running the models per request, no Triton.

How a single-process design serves recognition: each request runs decode → detect →
landmarks → align → embed in ONNX Runtime in the request's own thread (FastAPI's thread
pool), then a numpy top-k over a gallery held in memory. Nothing batches requests
together. It answers ``POST /v1/recognize`` with the same JSON shape as the orchestrator
so the same Locust scenario drives both; the gallery is built at start-up from the same
enrolment photos (so Locust runs with ``FACEREC_LOAD_GALLERY=none``). The API key header
is accepted and ignored.

    python -m loadtests.naive_app --port 9100 --repository var/models/repository/cpu
"""

from __future__ import annotations

import argparse
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, UploadFile
from fastapi.responses import JSONResponse

from loadtests.chain import GalleryMatrix, OrtChain, build_gallery
from loadtests.probes import GALLERY, photos_dir
from orchestrator.api.problems import PROBLEM_JSON, problem_of
from orchestrator.core.errors import FacerecError
from orchestrator.db.tables import PersonSummary
from orchestrator.pipeline.calibration import DEFAULT_MATCH_THRESHOLD
from orchestrator.recognition.answers import Match, RecognizeAnswer, recognized_face


def _summary(person_id: int, name: str) -> PersonSummary:
    external_id = next(p.external_id for p in GALLERY if p.name == name)
    return PersonSummary(
        id=person_id, name=name, external_id=external_id, age=None, gender=None, address=None, attributes={}
    )


def _answer(chain: OrtChain, gallery: GalleryMatrix, image: bytes, top_k: int) -> RecognizeAnswer:
    started = time.perf_counter()
    (found,) = chain.analyse([image])
    faces = []
    if found:
        queries = np.stack([f.embedding for f in found if f.embedding is not None])
        for face, hits in zip(found, gallery.top_k(queries, top_k * 4), strict=True):
            best: dict[int, Match] = {}
            for row, score in hits:
                person = gallery.person_ids[row]
                if person not in best:
                    best[person] = Match(
                        person_id=person,
                        name=gallery.names[row],
                        face_id=row + 1,
                        similarity=round(score, 4),
                        far=1.0,  # no impostor scores kept here: "1 without any", as the API says
                        person=_summary(person, gallery.names[row]),
                    )
            matches = sorted(best.values(), key=lambda m: -m.similarity)[:top_k]
            faces.append(recognized_face(face, matches, DEFAULT_MATCH_THRESHOLD))
    took_ms = round((time.perf_counter() - started) * 1000, 2)
    return RecognizeAnswer(
        faces=faces,
        model_version="1",
        threshold=DEFAULT_MATCH_THRESHOLD,
        threshold_source="shipped",
        took_ms=took_ms,
        cached=False,
    )


def create_app(repository: Path, photos: Path) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        chain = OrtChain(repository)
        enrolled = [
            (i, person.name, (photos / name).read_bytes())
            for i, person in enumerate(GALLERY, start=1)
            for name in person.enrol_from
        ]
        app.state.chain = chain
        app.state.gallery = build_gallery(chain, enrolled)
        yield

    app = FastAPI(title="facerec naive baseline", lifespan=lifespan)

    @app.get("/health/ready")
    def ready() -> dict[str, str]:
        return {"status": "ok"}

    # A plain ``def``: FastAPI runs it in its thread pool, as a straightforward server would.
    @app.post("/v1/recognize", response_model=None)
    def recognize(file: UploadFile, top_k: int = 5) -> RecognizeAnswer | JSONResponse:
        try:
            return _answer(app.state.chain, app.state.gallery, file.file.read(), top_k)
        except FacerecError as error:
            problem = problem_of(error)
            return JSONResponse(problem, status_code=problem["status"], media_type=PROBLEM_JSON)

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description="naive single-process recognition server (baseline)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--repository", type=Path, required=True, help="the CPU Triton repository")
    parser.add_argument("--photos", type=Path, help="default: the test photos cache")
    args = parser.parse_args(argv)
    app = create_app(args.repository, args.photos or photos_dir())
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
