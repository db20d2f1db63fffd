"""Recognise, verify and detect faces in uploaded images."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, UploadFile

from orchestrator.api.deps import AdmissionDep, CurrentPrincipal, ResourcesDep, current_principal
from orchestrator.api.image_body import REQUEST_BODY, ImageUpload
from orchestrator.api.params import LeftOut
from orchestrator.api.problems import problem_of
from orchestrator.api.responses import IMAGE_UPLOAD, problems
from orchestrator.api.schemas import BatchAnswer
from orchestrator.core.errors import FacerecError
from orchestrator.recognition.answers import DetectAnswer, RecognizeAnswer, VerifyAnswer
from orchestrator.recognition.log_writer import Origin

router = APIRouter(
    prefix="/v1", tags=["recognition"], dependencies=[Depends(current_principal)], responses=problems(401)
)

TopK = Annotated[int | None, Query(ge=1, le=100, description="people per face (default 5)"), LeftOut()]
Threshold = Annotated[
    float | None,
    Query(ge=-1, le=1, description="cosine similarity for a match (default: calibrated)"),
    LeftOut(),
]
MaxFaces = Annotated[int | None, Query(ge=1, le=64, description="largest faces to consider"), LeftOut()]
MAX_BATCH_IMAGES = 16
"""Images per batch request, a bound of the API that its spec states."""
BatchFiles = Annotated[
    list[UploadFile], File(min_length=1, max_length=MAX_BATCH_IMAGES, description="the images, in order")
]


@router.post(
    "/recognize",
    response_model=RecognizeAnswer,
    responses=problems(*IMAGE_UPLOAD),
    openapi_extra=REQUEST_BODY,
)
async def recognize(
    upload: ImageUpload,
    resources: ResourcesDep,
    principal: CurrentPrincipal,
    top_k: TopK = None,
    threshold: Threshold = None,
    max_faces: MaxFaces = None,
) -> Any:
    """The people in an image: a multipart form's ``file`` part, or the whole body as
    image/jpeg, image/png, image/webp, image/bmp (or application/octet-stream: sniffed)."""
    return await resources.recognition.recognize(
        upload.data,
        top_k=top_k or resources.settings.api.default_top_k,
        threshold=threshold,
        max_faces=max_faces,
        origin=Origin.of(principal, upload.filename),
    )


@router.post(
    "/recognize/batch",
    response_model=BatchAnswer,
    # An image that fails has its problem in the answer, in its place: the batch is still a 200.
    responses=problems(400, 413, 422, 503, why={400: "the body cannot be parsed"}),
)
async def recognize_batch(
    files: BatchFiles,
    resources: ResourcesDep,
    admission: AdmissionDep,
    principal: CurrentPrincipal,
    top_k: TopK = None,
    threshold: Threshold = None,
    max_faces: MaxFaces = None,
) -> Any:
    images = [await f.read() for f in files]
    results: list[RecognizeAnswer | dict[str, Any]] = []
    async with admission.more(len(images) - 1):  # the door took one for the request
        for upload, image in zip(files, images, strict=True):
            try:
                results.append(
                    await resources.recognition.recognize(
                        image,
                        top_k=top_k or resources.settings.api.default_top_k,
                        threshold=threshold,
                        max_faces=max_faces,
                        origin=Origin.of(principal, upload.filename),
                    )
                )
            except FacerecError as error:
                results.append(problem_of(error))
    return {"results": results}


@router.post(
    "/verify",
    response_model=VerifyAnswer,
    responses=problems(
        *IMAGE_UPLOAD, why={422: "no face in one of the images; or the request does not validate"}
    ),
)
async def verify(
    file1: UploadFile,
    file2: UploadFile,
    resources: ResourcesDep,
    admission: AdmissionDep,
    threshold: Threshold = None,
) -> Any:
    first, second = await file1.read(), await file2.read()
    async with admission.more(1):  # the door took one for the request
        return await resources.recognition.verify(first, second, threshold)


@router.post(
    "/detect", response_model=DetectAnswer, responses=problems(*IMAGE_UPLOAD), openapi_extra=REQUEST_BODY
)
async def detect(upload: ImageUpload, resources: ResourcesDep, max_faces: MaxFaces = None) -> Any:
    """The faces in an image, sent as for ``POST /v1/recognize``."""
    return await resources.recognition.detect(upload.data, max_faces)


ANALYSE_IMAGES = (recognize, recognize_batch, verify, detect)
"""Admitted at the door (:mod:`orchestrator.api.door`) as one image each, before their body."""
