"""Retention: log entries and request statistics older than ``FACEREC_LOG__RETENTION_DAYS`` go,
and jobs (with their images) ended more than ``FACEREC_JOBS__RETENTION_DAYS`` ago.

Every replica runs it, at start and every ``prune_s``; deleting what another replica has
just deleted is a no-op, so they need no coordination.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from orchestrator.core.settings import LogSettings
from orchestrator.db.gallery import Gallery
from orchestrator.db.types import utcnow

log = logging.getLogger(__name__)


async def prune_once(gallery: Gallery, retention_days: int) -> tuple[int, int]:
    """Remove what is past the retention now: (log entries, statistics rows) removed."""
    before = utcnow() - timedelta(days=retention_days)
    entries = await asyncio.to_thread(gallery.prune_recognitions, before)
    minutes = await asyncio.to_thread(gallery.prune_request_minutes, before)
    return entries, minutes


async def keep_retention(gallery: Gallery, settings: LogSettings, job_retention_days: int) -> None:
    """Forever: prune now, then every ``settings.prune_s``; a failure waits for the next round."""
    while True:
        try:
            entries, minutes = await prune_once(gallery, settings.retention_days)
            jobs = await asyncio.to_thread(gallery.prune_jobs, utcnow() - timedelta(days=job_retention_days))
            if jobs:
                log.info("retention (%d days): %d ended jobs removed", job_retention_days, jobs)
            if entries or minutes:
                log.info(
                    "retention (%d days): %d log entries and %d statistics rows removed",
                    settings.retention_days,
                    entries,
                    minutes,
                )
        except Exception as error:
            log.warning("retention: pruning failed, next try in %.0f s: %s", settings.prune_s, error)
        await asyncio.sleep(settings.prune_s)
