"""The `facerec` command line against the real Triton."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.pipeline.calibration import DEFAULT_MATCH_THRESHOLD
from orchestrator.runtime.triton_server import TritonServer

pytestmark = pytest.mark.integration


def facerec(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_verify_says_match_for_the_same_person_and_unknown_otherwise(
    triton_server: TritonServer, photos: Path, data_dir: Path
) -> None:
    url = ["--triton-url", triton_server.grpc_url, "--json"]
    same = facerec("verify", str(photos / "obama.jpg"), str(photos / "obama3.jpg"), *url, data_dir=data_dir)
    assert same.returncode == 0, same.stderr
    result = json.loads(same.stdout)
    assert result["decision"] == "match" and result["similarity"] > DEFAULT_MATCH_THRESHOLD
    other = facerec("verify", str(photos / "obama.jpg"), str(photos / "biden.jpg"), *url, data_dir=data_dir)
    result = json.loads(other.stdout)
    assert result["decision"] == "unknown" and result["similarity"] < DEFAULT_MATCH_THRESHOLD
    human = facerec(
        "verify",
        str(photos / "obama2.jpg"),
        str(photos / "obama.jpg"),
        "--triton-url",
        triton_server.grpc_url,
        data_dir=data_dir,
    )
    assert "→ match" in human.stdout and "similarity 0." in human.stdout


def test_verify_reports_bad_input_without_a_traceback(
    triton_server: TritonServer, photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    gif = tmp_path / "animation.gif"
    gif.write_bytes(b"GIF89a" + bytes(64))
    run = facerec(
        "verify",
        str(gif),
        str(photos / "obama.jpg"),
        "--triton-url",
        triton_server.grpc_url,
        data_dir=data_dir,
    )
    assert run.returncode == 2
    assert "GIF is not supported" in run.stderr and "Traceback" not in run.stderr


def test_models_list_shows_every_model(data_dir: Path, model_store) -> None:
    run = facerec("models", "list", data_dir=data_dir)
    assert run.returncode == 0
    assert [line.split("\t")[0] for line in run.stdout.splitlines()] == [
        "face_detector",
        "face_landmarks",
        "arcface",
    ]
