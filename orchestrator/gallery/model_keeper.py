"""Keep the live embedder versions served by every Triton.

A Triton that restarts loads what its config on disk says, which may lack the version
requests use now, or the one a rollout is re-embedding with. Nothing is unloaded here:
during a rollout a Triton serves two versions on purpose, and the rollout unloads the old
one itself once it has drained.
"""

from __future__ import annotations

import asyncio
import logging

from orchestrator.clients.triton_control import ModelControl
from orchestrator.db.gallery import Gallery
from orchestrator.db.tables import GalleryStatePublic
from orchestrator.pipeline.face_pipeline import EMBEDDER

log = logging.getLogger(__name__)


def live_versions(state: GalleryStatePublic) -> set[str]:
    """The versions requests may use now: the active one, and a rollout's pending one."""
    return {state.active_model_version, *filter(None, [state.pending_model_version])}


async def ensure_live_versions(
    control: ModelControl, wanted: set[str], model: str = EMBEDDER
) -> dict[str, list[str]]:
    """Load ``wanted`` versions of ``model`` on every Triton that lacks one of them.

    Such a Triton is told to serve what it serves plus ``wanted``; the others are left
    alone. Returns, per Triton that was loaded, the versions it serves now: empty when all
    already served ``wanted``. Tritons are seen to at once; if some fail,
    UpstreamUnavailable names them after the others are done.
    """

    async def ensure(endpoint: str) -> list[str] | None:
        served = set(await control.versions_on(endpoint, model))
        if wanted <= served:
            return None
        versions = sorted(served | wanted, key=int)
        log.info("Triton %s serves %s versions %s; loading %s", endpoint, model, sorted(served), versions)
        await control.serve_on(endpoint, model, versions)
        return versions

    loaded = await control.on_every_triton(ensure, f"serve {model} versions {sorted(wanted, key=int)}")
    return {endpoint: versions for endpoint, versions in loaded.items() if versions is not None}


async def keep_live_versions(gallery: Gallery, control: ModelControl, interval_s: float) -> None:
    """Forever: every ``interval_s``, reload a live version that a Triton has lost (it restarted)."""
    failing = False
    while True:
        await asyncio.sleep(interval_s)
        try:
            state = await asyncio.to_thread(gallery.state)
            await ensure_live_versions(control, live_versions(state))
            failing = False
        except Exception as error:
            # Said once per outage: readiness already reports a Triton that is down.
            if not failing:
                log.warning("cannot check the live versions on every Triton: %s", error)
            failing = True
