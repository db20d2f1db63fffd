"""``facerec calibrate``: what it asks the API, what it prints, what it draws."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from orchestrator.api.schemas import CalibrationAnswer
from orchestrator.cli import calibrate
from orchestrator.cli.main import main
from orchestrator.gallery.calibration import calibrate_gallery

pytestmark = pytest.mark.unit

KEY = "frk_a-key-for-the-command-line-tests-0123"


def answer(target: float | None = 0.01, impostors: int = 500) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    found = calibrate_gallery("2", rng.normal(0.05, 0.08, impostors), rng.normal(0.7, 0.1, 300), target, 0.38)
    return CalibrationAnswer.of(found).model_dump(mode="json")


class Api:
    """The API as the command sees it: records each request, answers with ``body``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, body: dict[str, Any], status: int = 200) -> None:
        self.requests: list[httpx.Request] = []
        real = httpx.Client

        def handler(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            return httpx.Response(status, json=body)

        def client(**options: Any) -> httpx.Client:
            return real(transport=httpx.MockTransport(handler), **options)

        monkeypatch.setattr(calibrate.httpx, "Client", client)


def parsed(*argv: str) -> Any:
    from orchestrator.cli.main import parser

    return parser().parse_args(list(argv))


def test_it_prints_the_threshold_its_source_the_counts_and_the_rates(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = answer()
    api = Api(monkeypatch, body)
    assert main(["calibrate", "--api-key", KEY, "--url", "http://api", "--model-version", "2"]) == 0
    (request,) = api.requests
    assert (request.method, request.url.path, request.url.params["model_version"]) == (
        "GET",
        "/v1/calibration",
        "2",
    )
    assert request.headers["x-api-key"] == KEY
    printed = capsys.readouterr().out
    assert f"threshold {body['threshold']:.4f} (gallery: set for a false-accept rate of 0.01)" in printed
    assert "impostor scores 500, genuine scores 300 (299 impostor scores certify the target)" in printed
    assert f"estimated FAR ≤ {body['estimated_far']:.3g}" in printed and "FRR 0.00 %" in printed


def test_recompute_posts_and_waits(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    api = Api(monkeypatch, answer(target=1e-4))
    assert main(["calibrate", "--recompute", "--api-key", KEY, "--url", "http://api"]) == 0
    (request,) = api.requests
    assert (request.method, request.url.path) == ("POST", "/v1/calibration/recompute")
    assert "shipped: 500 impostor scores, 29956 needed for 0.0001" in capsys.readouterr().out


def test_without_a_target_it_says_so() -> None:
    assert "(shipped: no FACEREC_MATCH__TARGET_FAR)" in calibrate.describe(answer(target=None))


def test_a_refusal_is_printed_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    Api(monkeypatch, {"detail": "this needs an admin key"}, status=403)
    assert main(["calibrate", "--api-key", KEY, "--url", "http://api"]) == 2
    assert "403 this needs an admin key" in capsys.readouterr().err


def test_no_key_is_exit_2(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("FACEREC_API_KEY", raising=False)
    assert calibrate.cmd_calibrate(parsed("calibrate")) == 2
    assert "an admin key is needed" in capsys.readouterr().err


def test_plot_draws_both_histograms_and_the_threshold(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    Api(monkeypatch, answer())
    out = tmp_path / "calibration.png"
    assert main(["calibrate", "--api-key", KEY, "--url", "http://api", "--plot", str(out)]) == 0
    image = cv2.imread(str(out))
    assert image is not None and image.shape[:2] == (540, 960)
    assert f"drawn to {out}" in capsys.readouterr().out


def test_plot_without_matplotlib_says_which_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api = Api(monkeypatch, answer())
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    assert (
        main(["calibrate", "--api-key", KEY, "--url", "http://api", "--plot", str(tmp_path / "x.png")]) == 2
    )
    assert "pip install 'facerec[plot]'" in capsys.readouterr().err
    assert api.requests == []  # refused before the API is asked
    assert not (tmp_path / "x.png").exists()
