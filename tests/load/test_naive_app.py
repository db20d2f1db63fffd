"""The naive baseline of the load report answers as the API does, and rightly."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from loadtests.naive_app import create_app
from loadtests.probes import check_recognition, recognition_probes
from orchestrator.modelrepo.fetch import ModelStore
from orchestrator.recognition.answers import RecognizeAnswer

pytestmark = [pytest.mark.load, pytest.mark.integration]


async def test_the_naive_server_names_every_probe_in_the_apis_answer_shape(
    model_store: ModelStore, photos: Path
) -> None:
    app = create_app(model_store.repository("cpu"), photos)
    transport = httpx.ASGITransport(app=app)
    # ASGITransport runs no lifespan: enter the app's own, which loads the models.
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://naive") as client,
    ):
        for probe in recognition_probes(photos)[::4]:
            response = await client.post("/v1/recognize", files={"file": ("probe.jpg", probe.data)})
            assert response.status_code == 200, response.text
            answer = response.json()
            RecognizeAnswer.model_validate(answer)  # the schema the Locust users read
            check_recognition(answer, probe.expected)
