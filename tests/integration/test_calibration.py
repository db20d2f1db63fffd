"""Re-measure the match threshold on real photos and their augmentations.

Genuine pairs: every two distinct samples of Obama (the sdist's photos, the partial-face
crops, and the EXIF-rotated, 30 %-scaled and quality-25 variants of each). Impostor pairs:
every Obama sample against every Biden sample. The shipped DEFAULT_MATCH_THRESHOLD must
separate them; the measured figures are printed (``pytest -s``) and quoted in the README.
"""

import itertools
from pathlib import Path

import numpy as np
import pytest

from orchestrator.clients.triton import TritonModels
from orchestrator.pipeline.calibration import DEFAULT_MATCH_THRESHOLD, calibrate
from orchestrator.pipeline.face_pipeline import FacePipeline
from tests.support import augment

pytestmark = pytest.mark.integration

OBAMA_SAMPLES = ["obama.jpg", "obama2.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"]
VARIANTS = {
    "": lambda d: d,
    "exif90": augment.rotated_by_exif,
    "x0.3": lambda d: augment.scaled(d, 0.3),
    "q25": lambda d: augment.reencoded(d, 25),
}


async def embeddings(pipeline: FacePipeline, photos: Path, names: list[str]) -> dict[str, np.ndarray]:
    out = {}
    for name in names:
        data = (photos / name).read_bytes()
        for tag, variant in VARIANTS.items():
            analysis = await pipeline.analyse(variant(data))
            assert analysis.faces, f"no face in {name} {tag}"
            out[f"{name}{tag}"] = analysis.faces[0].embedding
    return out


async def test_the_shipped_threshold_separates_genuine_from_impostor_pairs(
    triton: TritonModels, photos: Path
) -> None:
    pipeline = FacePipeline(triton)
    obama = await embeddings(pipeline, photos, OBAMA_SAMPLES)
    biden = await embeddings(pipeline, photos, ["biden.jpg"])
    genuine = [float(obama[a] @ obama[b]) for a, b in itertools.combinations(obama, 2)]
    impostor = [float(a @ b) for a in obama.values() for b in biden.values()]
    measured = calibrate(genuine, impostor)
    print(
        f"\ncalibration: {len(genuine)} genuine pairs, min {measured.min_genuine:.3f}; "
        f"{len(impostor)} impostor pairs, max {measured.max_impostor:.3f}; "
        f"threshold {measured.threshold:.3f} (shipped {DEFAULT_MATCH_THRESHOLD})"
    )
    assert measured.max_impostor < DEFAULT_MATCH_THRESHOLD < measured.min_genuine
    assert abs(measured.threshold - DEFAULT_MATCH_THRESHOLD) < 0.1
