"""The server's own bound sits far above admission, and reaches uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from orchestrator.api.shutdown import DrainingServer
from orchestrator.cli import serve
from orchestrator.core.settings import ApiSettings, Settings

pytestmark = pytest.mark.unit


def test_the_defaults_leave_uvicorn_far_above_admission() -> None:
    api = ApiSettings()
    assert api.limit_concurrency >= 4 * api.max_concurrent_images
    assert api.pixel_budget_bytes == 1 << 30


def test_a_server_bound_near_the_admission_limit_is_refused() -> None:
    with pytest.raises(ValidationError, match="LIMIT_CONCURRENCY"):
        ApiSettings(max_concurrent_images=300)
    assert ApiSettings(max_concurrent_images=300, limit_concurrency=1200).limit_concurrency == 1200


def test_uvicorn_runs_with_the_setting(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    given: dict[str, Any] = {}
    monkeypatch.setattr(
        DrainingServer, "run", lambda server, sockets: given.update(vars(server.config), server=server)
    )
    monkeypatch.setattr("orchestrator.runtime.allocator.keep_freed_memory", lambda: True)
    api = ApiSettings(limit_concurrency=777, shutdown_drain_s=4, workers=1)
    serve._serve(Settings(data_dir=tmp_path, api=api))
    assert given["limit_concurrency"] == 777
    assert given["server"].drain_s == 4
