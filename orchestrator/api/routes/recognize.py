"""Recognise, verify and detect faces in uploaded images."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, UploadFile

from orchestrator.api.deps import AdmissionDep, CurrentKey, ResourcesDep, current_key
from orchestrator.api.problems import problem_of
from orchestrator.api.schemas import BatchAnswer
from orchestrator.core.errors import FacerecError, InvalidRequest
from orchestrator.recognition.answers import DetectAnswer, RecognizeAnswer, VerifyAnswer

router = APIRouter(prefix="/v1", tags=["recognition"], dependencies=[Depends(current_key)])

TopK = Annotated[int | None, Query(ge=1, le=100, description="people per face (default 5)")]
Threshold = Annotated[
    float | None, Query(ge=-1, le=1, description="cosine similarity for a match (default: calibrated)")
]
MaxFaces = Annotated[int | None, Query(ge=1, le=64, description="largest faces to consider")]


@router.post("/recognize", response_model=RecognizeAnswer)
async def recognize(
    file: UploadFile,
    resources: ResourcesDep,
    admission: AdmissionDep,
    key: CurrentKey,
    top_k: TopK = None,
    threshold: Threshold = None,
    max_faces: MaxFaces = None,
) -> Any:
    image = await file.read()
    async with admission.slot():
        return await resources.recognition.recognize(
            image,
            top_k=top_k or resources.settings.api.default_top_k,
            threshold=threshold,
            max_faces=max_faces,
            api_key_id=key.id,
        )


@router.post("/recognize/batch", response_model=BatchAnswer)
async def recognize_batch(
    files: list[UploadFile],
    resources: ResourcesDep,
    admission: AdmissionDep,
    key: CurrentKey,
    top_k: TopK = None,
    threshold: Threshold = None,
    max_faces: MaxFaces = None,
) -> Any:
    limit = resources.settings.api.max_batch_images
    if len(files) > limit:
        raise InvalidRequest(f"{len(files)} images sent; at most {limit} per batch")
    images = [await f.read() for f in files]
    results: list[RecognizeAnswer | dict[str, Any]] = []
    async with admission.slot(len(images)):
        for image in images:
            try:
                results.append(
                    await resources.recognition.recognize(
                        image,
                        top_k=top_k or resources.settings.api.default_top_k,
                        threshold=threshold,
                        max_faces=max_faces,
                        api_key_id=key.id,
                    )
                )
            except FacerecError as error:
                results.append(problem_of(error))
    return {"results": results}


@router.post("/verify", response_model=VerifyAnswer)
async def verify(
    file1: UploadFile,
    file2: UploadFile,
    resources: ResourcesDep,
    admission: AdmissionDep,
    threshold: Threshold = None,
) -> Any:
    first, second = await file1.read(), await file2.read()
    async with admission.slot(2):
        return await resources.recognition.verify(first, second, threshold)


@router.post("/detect", response_model=DetectAnswer)
async def detect(
    file: UploadFile,
    resources: ResourcesDep,
    admission: AdmissionDep,
    max_faces: MaxFaces = None,
) -> Any:
    image = await file.read()
    async with admission.slot():
        return await resources.recognition.detect(image, max_faces)
