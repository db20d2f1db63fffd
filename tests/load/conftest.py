"""A stack with a tiny admission limit, for overload tests; no recognition cache.

Without a cache every request really runs the pipeline (the probes repeat), which is what
an overload must exercise.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.runtime.triton_server import TritonServer
from tests.support.stack import Stack, sqlite_url

ADMISSION_LIMIT = 4


@pytest.fixture(scope="package")
def overload_stack(triton_server: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("overload")
    stack = Stack(
        root,
        triton_server,
        sqlite_url(root),
        None,
        api_env={"FACEREC_API__MAX_CONCURRENT_IMAGES": str(ADMISSION_LIMIT)},
    )
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
