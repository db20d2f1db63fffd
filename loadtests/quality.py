"""The enrolment quality gate's measures on the test photos and their degradations.

``python -m loadtests.quality`` runs the real pipeline (its own Triton on free ports, or
``--triton-url``) on each test photo of the face_recognition==1.3.0 sdist and on variants:
JPEG re-encoding, down-scaling, Gaussian blur (sigma in pixels of the stored image) and
synthetic head turns (``tests.support.augment.turned``, a 2.5-D warp, relative to the pose
the photo already has). Per face it prints the gate's measures (``orchestrator.pipeline.
quality``), the eye distance, the cosine between the variant's embedding and the clean
photo's (what the degradation costs recognition) and the reasons the default thresholds
give. Then one line per variant: each measure's range over the photos and how many of them
the gate refuses. Writes both tables to ``--out`` as Markdown; the README's "Quality gate"
quotes the summary.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from orchestrator.clients.triton import TritonModels
from orchestrator.core.settings import QualitySettings
from orchestrator.modelrepo.catalog import SERVED_MODELS
from orchestrator.modelrepo.fetch import fetch_models
from orchestrator.pipeline import quality
from orchestrator.pipeline.face_pipeline import Analysis, FacePipeline
from orchestrator.pipeline.vision.faces import Face
from orchestrator.runtime.triton_env import ensure_environment
from orchestrator.runtime.triton_server import TritonPorts, TritonServer
from tests.support import augment
from tests.support.photos import IMAGES, fetch_photos

ROOT = Path(__file__).resolve().parent.parent

Variant = Callable[[bytes, Face], bytes]
"""(stored photo, its clean face) → degraded photo."""


def _jpeg(quality: int) -> Variant:
    return lambda data, face: augment.reencoded(data, quality)


def _scaled(factor: float) -> Variant:
    return lambda data, face: augment.scaled(data, factor)


def _blurred(sigma: float) -> Variant:
    return lambda data, face: augment.blurred(data, sigma)


def _turned(yaw: float, pitch: float) -> Variant:
    return lambda data, face: augment.turned(data, landmarks(face), yaw, pitch)


def _darkened(data: bytes, face: Face) -> bytes:
    return augment.encode(
        (augment.read_rgb(data) * 0.15).astype(np.uint8), params=[cv2.IMWRITE_JPEG_QUALITY, 95]
    )


def _noisy(data: bytes, face: Face) -> bytes:
    rgb = augment.read_rgb(data).astype(np.float64)
    noisy = rgb + np.random.default_rng(0).normal(0.0, 40.0, rgb.shape)
    return augment.encode(np.clip(noisy, 0, 255).astype(np.uint8), params=[cv2.IMWRITE_JPEG_QUALITY, 95])


def _covered(part: str) -> Variant:
    """A grey band over the eyes (sunglasses) or from under the nose down (a mask)."""

    def cover(data: bytes, face: Face) -> bytes:
        rgb = augment.read_rgb(data)
        p = landmarks(face)
        d = float(np.linalg.norm(p[1] - p[0]))
        x1, _, x2, y2 = face.box
        if part == "eyes":
            top, bottom = p[:2, 1].min() - 0.3 * d, p[:2, 1].max() + 0.3 * d
            left, right = p[:2, 0].min() - 0.5 * d, p[:2, 0].max() + 0.5 * d
        else:
            top, bottom, left, right = p[2, 1] + 0.1 * d, y2, x1, x2
        rgb[max(0, int(top)) : int(bottom), max(0, int(left)) : int(right)] = 40
        return augment.encode(rgb, params=[cv2.IMWRITE_JPEG_QUALITY, 95])

    return cover


def _variants() -> dict[str, Variant]:
    variants: dict[str, Variant] = {"clean": lambda data, face: data}
    variants |= {f"JPEG q{q}": _jpeg(q) for q in (50, 25, 10)}
    variants |= {f"scale ×{f:g}": _scaled(f) for f in (0.5, 0.45, 0.3, 0.2, 0.15, 0.1)}
    variants |= {f"blur σ{s}": _blurred(s) for s in (1, 2, 3, 4, 5, 6, 8)}
    variants |= {f"yaw {y:+d}°": _turned(y, 0) for y in (-40, -20, 20, 40, 55)}
    variants |= {f"pitch {p:+d}°": _turned(0, p) for p in (-40, -20, 20, 40)}
    variants |= {
        "dark ×0.15": _darkened,
        "noise σ40": _noisy,
        "eyes covered": _covered("eyes"),
        "mouth covered": _covered("mouth"),
    }
    return variants


VARIANTS = _variants()


def landmarks(face: Face) -> np.ndarray:
    assert face.points5 is not None
    return face.points5


@dataclass(frozen=True)
class Row:
    photo: str
    variant: str
    measures: quality.Measures | None
    """None: no face found."""
    eye_distance_px: float = 0.0
    cosine: float = 0.0
    refused: tuple[str, ...] = ()


def measured(photo: str, variant: str, analysis: Analysis, clean: Face | None, gate: QualitySettings) -> Row:
    if not analysis.faces:
        return Row(photo, variant, None)
    face = analysis.faces[0]
    assert face.points5 is not None and face.embedding is not None
    measures = quality.measure(face, analysis.width, analysis.height)
    reference = face if clean is None else clean
    assert reference.embedding is not None
    return Row(
        photo,
        variant,
        measures,
        eye_distance_px=round(float(np.linalg.norm(face.points5[1] - face.points5[0])), 1),
        cosine=round(float(face.embedding @ reference.embedding), 3),
        refused=tuple(reason.criterion for reason in quality.check(measures, gate)),
    )


async def measure_all(triton_url: str, photos: Path, gate: QualitySettings) -> list[Row]:
    rows: list[Row] = []
    async with TritonModels(triton_url, timeout_s=120.0) as triton:
        pipeline = FacePipeline(triton)
        for photo in sorted(IMAGES):
            data = (photos / photo).read_bytes()
            clean_analysis = await pipeline.analyse(data)
            clean = clean_analysis.faces[0]
            for variant, make in VARIANTS.items():
                image = await asyncio.to_thread(make, data, clean)
                row = measured(photo, variant, await pipeline.analyse(image), clean, gate)
                rows.append(row)
                print(line(row), flush=True)
    return rows


def line(row: Row) -> str:
    m = row.measures
    if m is None:
        return f"| {row.photo} | {row.variant} | no face | | | | | | | |"
    refused = ", ".join(row.refused) or "—"
    return (
        f"| {row.photo} | {row.variant} | {m.face_px:.0f} | {row.eye_distance_px:.0f} | {m.sharpness:.1f} "
        f"| {m.yaw_deg:+.1f} | {m.pitch_deg:+.1f} | {m.det_score:.3f} | {row.cosine:.3f} | {refused} |"
    )


def span(values: list[float], digits: int, signed: bool = False) -> str:
    low, high = min(values), max(values)
    sign = "+" if signed else ""
    return f"{low:{sign}.{digits}f} … {high:{sign}.{digits}f}"


def summary(rows: list[Row]) -> list[str]:
    lines = [
        "| variant | face px | eye distance px | sharpness | yaw ° | pitch ° | det score | cosine to clean "
        "| refused (photos) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for variant in VARIANTS:
        found = [r for r in rows if r.variant == variant and r.measures is not None]
        missed = sum(1 for r in rows if r.variant == variant and r.measures is None)
        if not found:
            lines.append(f"| {variant} | no face in any | | | | | | | |")
            continue
        ms = [r.measures for r in found if r.measures is not None]
        counts: dict[str, int] = {}
        for r in found:
            for criterion in r.refused:
                counts[criterion] = counts.get(criterion, 0) + 1
        refused = sum(1 for r in found if r.refused)
        why = ", ".join(f"{c} {n}" for c, n in counts.items())
        verdict = f"{refused} of {len(found)}" + (f" ({why})" if why else "")
        if missed:
            verdict += f"; no face in {missed}"
        eyes = [r.eye_distance_px for r in found]
        lines.append(
            f"| {variant} | {span([m.face_px for m in ms], 0)} | {span(eyes, 0)} "
            f"| {span([m.sharpness for m in ms], 1)} | {span([m.yaw_deg for m in ms], 1, True)} "
            f"| {span([m.pitch_deg for m in ms], 1, True)} | {span([m.det_score for m in ms], 3)} "
            f"| {span([r.cosine for r in found], 3)} | {verdict} |"
        )
    return lines


def report(rows: list[Row], gate: QualitySettings) -> str:
    thresholds = (
        f"min_face_px {gate.min_face_px:g}, min_sharpness {gate.min_sharpness:g}, "
        f"max_yaw_deg {gate.max_yaw_deg:g}, max_pitch_deg {gate.max_pitch_deg:g}, "
        f"min_det_score {gate.min_det_score:g}"
    )
    head = "| photo | variant | face px | eye px | sharpness | yaw ° | pitch ° | det | cosine | refused |"
    return "\n".join(
        [
            "# Enrolment quality gate: measurements",
            "",
            f"Thresholds: {thresholds}.",
            "",
            "## Per variant (range over the photos)",
            "",
            *summary(rows),
            "",
            "## Per photo",
            "",
            head,
            "|---|---|---|---|---|---|---|---|---|---|",
            *(line(row) for row in rows),
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--triton-url", help="a running Triton's gRPC host:port (default: start one)")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "var")
    parser.add_argument("--out", type=Path, default=ROOT / "loadtests" / "results" / "quality.md")
    args = parser.parse_args()

    gate = QualitySettings()
    photos = fetch_photos(args.data_dir / "testdata")
    if args.triton_url:
        rows = asyncio.run(measure_all(args.triton_url, photos, gate))
    else:
        store = fetch_models(args.data_dir / "models")
        with tempfile.TemporaryDirectory() as work:
            triton = TritonServer(
                ensure_environment(args.data_dir / "triton-env"),
                store.repository("cpu"),
                Path(work) / "triton.log",
                TritonPorts.free(),
                list(SERVED_MODELS),
            )
            with triton:
                rows = asyncio.run(measure_all(triton.grpc_url, photos, gate))
    text = report(rows, gate)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print()
    print("\n".join(summary(rows)))


if __name__ == "__main__":
    main()
