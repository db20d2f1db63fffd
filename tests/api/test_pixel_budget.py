"""The memory budget through the API: the real pipeline's decode, a stand-in detector.

An image is refused with 503 while the budget is taken and served once it is given back;
one larger than the whole budget is 413. What an analysis holds is its upload's size and
its header's count, taken before decoding and given back when it ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any, cast

import numpy as np
import pytest

from orchestrator.clients.triton import TritonModels
from orchestrator.core.resources import Resources
from orchestrator.pipeline.face_pipeline import FacePipeline
from orchestrator.pipeline.memory_budget import PixelBudget, decoded_bytes
from orchestrator.pipeline.vision.chain import to_tensors
from orchestrator.pipeline.vision.decode import read_header
from orchestrator.pipeline.vision.faces import Analysis
from orchestrator.recognition.log_writer import RecognitionLogWriter
from orchestrator.recognition.search_batching import SearchBatcher
from orchestrator.recognition.service import Recognition
from tests.api.conftest import Api, assert_problem
from tests.api.fakes import png

pytestmark = pytest.mark.unit

IMAGE = png(200, 100)
IMAGE_BYTES = len(IMAGE) + decoded_bytes(read_header(IMAGE))
"""What analysing IMAGE holds: its upload and its decoded pixels."""


class NoFaceDetector:
    """Finds no face, as the detector model or as the face_chain; notes what the budget held
    while it ran."""

    def __init__(self, budget: PixelBudget) -> None:
        self.budget = budget
        self.held: list[int] = []

    async def infer(self, model: str, batch: np.ndarray, version: str = "1") -> dict[str, np.ndarray]:
        self.held.append(self.budget.in_use)
        n = len(batch)
        return {"scores": np.zeros((n, 4420, 2), np.float32), "boxes": np.zeros((n, 4420, 4), np.float32)}

    async def infer_bytes(
        self, model: str, values: dict[str, bytes], version: str = "1"
    ) -> dict[str, np.ndarray]:
        self.held.append(self.budget.in_use)
        header = read_header(values["image"])
        answer = to_tensors(Analysis([], header.width, header.height))
        return {name: value[None] for name, value in answer.items()}


def with_budget(api: Api, capacity: int, chain: bool = True) -> tuple[PixelBudget, NoFaceDetector]:
    """The app's detection through a real pipeline holding a budget of ``capacity`` bytes;
    ``chain``: the pixels decoded in Triton's face_chain (reserved all the same), else here."""
    resources: Resources = api.app.state.resources
    budget = PixelBudget(capacity)
    detector = NoFaceDetector(budget)
    pipeline = FacePipeline(cast(TritonModels, detector), budget=budget, chain=chain)
    recognition = Recognition(
        resources.live,
        cast(SearchBatcher, None),
        pipeline,
        resources.cache,
        cast(RecognitionLogWriter, None),
        resources.settings.match_threshold,
    )
    api.app.state.resources = replace(resources, pipeline=pipeline, recognition=recognition)
    return budget, detector


@pytest.fixture(params=[True, False], ids=["chain", "three-calls"])
def budgeted(api: Api, request: pytest.FixtureRequest) -> Iterator[tuple[Api, PixelBudget, NoFaceDetector]]:
    budget, detector = with_budget(api, 2 * IMAGE_BYTES, chain=request.param)
    yield api, budget, detector
    assert budget.in_use == 0, "an analysis kept its share of the budget"


async def detect(api: Api) -> Any:
    async with api.client(api.seeded.recognize_key) as client:
        return await client.post("/v1/detect", files={"file": ("f.png", IMAGE, "image/png")})


async def test_an_image_is_refused_while_the_budget_is_taken_and_served_after(
    budgeted: tuple[Api, PixelBudget, NoFaceDetector],
) -> None:
    api, budget, detector = budgeted
    with budget.hold() as other:
        other.take(budget.capacity - IMAGE_BYTES + 1)  # one byte too many left for the image
        refused = await detect(api)
    assert "busy" in assert_problem(refused, 503)["detail"]
    assert int(refused.headers["retry-after"]) >= 1
    assert detector.held == [], "a refused image reached the detector"

    served = await detect(api)
    assert served.status_code == 200, served.text
    assert served.json() == {"faces": []}
    assert detector.held == [IMAGE_BYTES]  # its own share while it was analysed, and only that
    assert budget.in_use == 0


async def test_an_image_larger_than_the_whole_budget_is_413(api: Api) -> None:
    budget, detector = with_budget(api, IMAGE_BYTES - 1)
    assert_problem(await detect(api), 413, "limit for images being analysed")
    assert detector.held == [] and budget.in_use == 0
