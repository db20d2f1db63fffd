"""Child processes of the stack: wait until one answers over HTTP, noticing an early exit."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import httpx


class StartError(RuntimeError):
    """A process of the stack did not come up."""


def wait_http_ready(
    url: str,
    process: subprocess.Popen[bytes],
    timeout_s: float,
    *,
    name: str,
    log_tail: Callable[[], str] = lambda: "",
    interval_s: float = 0.2,
) -> None:
    """Poll ``url`` until it answers 200; raise StartError if the process exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            raise StartError(f"{name} exited with {code}:\n{log_tail()}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(interval_s)
    raise StartError(f"{name} not ready after {timeout_s}s:\n{log_tail()}")
