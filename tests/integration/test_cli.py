"""The `facerec` command line: against the real Triton, and the secrets it hands over."""

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from orchestrator.cli.serve import start_search_service
from orchestrator.core.secret_files import FIRST_ADMIN_KEY_FILE, SEARCH_TOKEN_FILE
from orchestrator.core.settings import Settings
from orchestrator.db import Gallery, default_database_url, make_engine
from orchestrator.modelrepo.catalog import DEFAULT_MODELS
from orchestrator.modelrepo.repository import parse
from orchestrator.modelrepo.tuning import Tuning, cores, cpu_name
from orchestrator.pipeline.calibration import DEFAULT_MATCH_THRESHOLD
from orchestrator.runtime.processes import free_port
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
    lines = run.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines if not line.startswith("\t")] == [
        "face_detector",
        "face_landmarks",
        "arcface",
    ]
    # Then the embedder's versions as GET /v1/models describes them: version, source, created_at.
    versions = [line.split("\t")[1:] for line in lines if line.startswith("\t")]
    assert [v[0] for v in versions] == [str(v) for v in model_store.versions("arcface")]
    assert versions[0][1] == "fetched"
    assert all(v[1] in ("fetched", "imported", "derived") and datetime.fromisoformat(v[2]) for v in versions)


def test_up_shares_a_search_token_kept_in_the_data_dir_and_off_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FACEREC_SEARCH_TOKEN", raising=False)
    tokens = []
    for _ in range(2):  # a second start in the same data dir keeps the token
        settings = Settings(data_dir=tmp_path, port=free_port() - 4)  # the search service: port + 4
        with contextlib.ExitStack() as stack:
            search = start_search_service(settings, stack)
            assert settings.search_token is not None
            token = settings.search_token.get_secret_value()
            tokens.append(token)
            process = Path(f"/proc/{search.pid}")
            assert token.encode() not in (process / "cmdline").read_bytes()
            assert f"FACEREC_SEARCH_TOKEN={token}".encode() in (process / "environ").read_bytes().split(b"\0")
            url = settings.search_service_urls[0]
            assert httpx.get(f"{url}/collections").status_code == 401
            answer = httpx.get(f"{url}/collections", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200 and answer.json() == []
    token_file = tmp_path / SEARCH_TOKEN_FILE
    assert tokens[0] == tokens[1] == token_file.read_text().strip()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert tokens[0] not in (tmp_path / "logs" / "search.log").read_text()


def test_the_first_admin_key_goes_to_an_owner_only_file_and_never_to_the_output(tmp_path: Path) -> None:
    """Started with no servers behind it, the API creates the key, then fails at Triton and exits."""
    unreachable = {
        "FACEREC_TRITON__URL": f"127.0.0.1:{free_port()}",
        "FACEREC_TRITON__TIMEOUT_S": "1",
        "FACEREC_SEARCH_URLS": json.dumps([f"http://127.0.0.1:{free_port()}"]),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACEREC_") and k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", "orchestrator.cli", "orchestrator", "--data-dir", str(tmp_path)],
        env={**env, **unreachable, "FACEREC_PORT": str(free_port())},
        capture_output=True,  # not a terminal: the output is a log stream
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, "it cannot serve without Triton"
    key_file = tmp_path / FIRST_ADMIN_KEY_FILE
    key = key_file.read_text().strip()
    assert key.startswith("frk_") and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key not in done.stdout + done.stderr
    assert f"first admin API key written to {key_file}" in done.stderr
    engine = make_engine(default_database_url(tmp_path))
    try:
        found = Gallery(engine).authenticate(key)
    finally:
        engine.dispose()
    assert found is not None and found.role == "admin"


def test_models_tune_measures_this_cpu_once_and_writes_the_configs(tmp_path: Path, model_store) -> None:
    # A private store: hard links, and configs replaced by rename, so the shared one is untouched.
    shutil.copytree(model_store.root, tmp_path / "models", copy_function=os.link)
    shared = {
        s.name: (model_store.repository("cpu") / s.name / "config.pbtxt").read_text() for s in DEFAULT_MODELS
    }
    run = facerec("models", "tune", "--seconds", "0.2", data_dir=tmp_path)
    assert run.returncode == 0, run.stderr
    assert [line.split()[0] for line in run.stdout.splitlines() if line.split()[0] in shared] == list(shared)
    (cached,) = (tmp_path / "models" / "tuning").iterdir()
    tuning = Tuning.from_json(cached.read_text())
    assert tuning.cpu == cpu_name() and tuning.cores == cores()
    for spec in DEFAULT_MODELS:
        chosen = tuning.models[spec.name]
        assert all(chosen.measured[f"level={level}"] > 0 for level in ("basic", "extended", "all"))
        config = parse((tmp_path / "models" / "repository" / "cpu" / spec.name / "config.pbtxt").read_text())
        assert config.instance_group[0].count == chosen.instances
        assert config.parameters["graph_optimization"].string_value == chosen.graph_optimization
        assert config.parameters["intra_op_threads"].string_value == str(chosen.intra_op_threads)
        assert (model_store.repository("cpu") / spec.name / "config.pbtxt").read_text() == shared[spec.name]
    # What `up` does on every start: the cached tuning, not measured again (a child that ends).
    again = facerec("models", "tune", "--if-needed", "--seconds", "0.2", data_dir=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "" and Tuning.from_json(cached.read_text()) == tuning
