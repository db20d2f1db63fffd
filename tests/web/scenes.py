"""What the browser tests set up: a group photo, a job waited for."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np


def group_photo(photos: Path, names: tuple[str, ...] = ("obama3.jpg", "biden.jpg")) -> bytes:
    """The photos side by side on one canvas, left to right, each scaled to the same height."""
    images = [cv2.imread(str(photos / name)) for name in names]
    height = min(image.shape[0] for image in images)
    scaled = [cv2.resize(i, (round(i.shape[1] * height / i.shape[0]), height)) for i in images]
    ok, encoded = cv2.imencode(".jpg", np.hstack(scaled), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return encoded.tobytes()


def wait_for_job(api: httpx.Client, job_id: int, timeout_s: float = 120.0) -> dict[str, Any]:
    """The job's record once it has ended."""
    deadline = time.monotonic() + timeout_s
    while True:
        record = api.get(f"/v1/jobs/{job_id}").json()
        if record["state"] in ("done", "failed", "cancelled"):
            return dict(record)
        assert time.monotonic() < deadline, f"job {job_id} is still {record['state']} after {timeout_s} s"
        time.sleep(0.3)
