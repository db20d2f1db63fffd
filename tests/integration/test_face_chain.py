"""Triton's face_chain model against the orchestrator's own three-call pipeline, on the real
Triton: the same faces, and the errors that only the decoder can find."""

import asyncio
import struct
from pathlib import Path

import numpy as np
import pytest

from orchestrator.clients.triton import TritonModels
from orchestrator.core.errors import ImageError, UpstreamUnavailable
from orchestrator.pipeline.face_pipeline import CHAIN, FacePipeline, ModelVersions
from orchestrator.pipeline.vision.decode import DecodeLimits
from tests.support import augment

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: (p / "obama2.jpg").read_bytes(), id="obama2"),
        # Faces a quarter of the shorter side and less: some are cut from a finer decode.
        pytest.param(
            lambda p: augment.group_photo(
                [(p / n).read_bytes() for n in ("obama.jpg", "biden.jpg", "obama3.jpg")]
            ),
            id="group",
        ),
        pytest.param(lambda p: augment.rotated_by_exif((p / "biden.jpg").read_bytes()), id="exif-rotated"),
    ],
)
async def test_the_chain_finds_what_the_three_calls_find(triton: TritonModels, photos: Path, make) -> None:
    data = make(photos)
    chain = await FacePipeline(triton, chain=True).analyse(data)
    three = await FacePipeline(triton, chain=False).analyse(data)
    assert (chain.width, chain.height) == (three.width, three.height)
    assert len(chain.faces) == len(three.faces) >= 1
    for a, b in zip(chain.faces, three.faces, strict=True):
        assert np.abs(a.box - b.box).max() < 0.01
        assert a.landmarks68 is not None and b.landmarks68 is not None
        assert np.abs(a.landmarks68 - b.landmarks68).max() < 0.05
        # Triton's stub has OpenCV 4 (numpy<2), the orchestrator 5: warps differ in rounding.
        assert a.crop is not None and b.crop is not None
        assert np.abs(a.crop.astype(int) - b.crop.astype(int)).mean() < 0.5
        assert a.sharpness == pytest.approx(b.sharpness, rel=1e-2)
        assert a.embedding is not None and b.embedding is not None
        assert float(a.embedding @ b.embedding) > 0.999
        assert abs(np.linalg.norm(a.embedding) - 1) < 1e-5
    assert set(chain.timings_ms) == {"decode", "detect", "landmarks", "align", "embed"}


async def test_without_embedding_the_faces_come_back_bare(triton: TritonModels, photos: Path) -> None:
    analysis = await FacePipeline(triton).analyse((photos / "obama.jpg").read_bytes(), embed=False)
    assert len(analysis.faces) == 1
    face = analysis.faces[0]
    assert face.embedding is None and face.crop is not None and face.crop.shape == (112, 112, 3)
    assert "embed" not in analysis.timings_ms


async def test_concurrent_images_batched_together_keep_their_own_answers(
    triton: TritonModels, photos: Path
) -> None:
    """Triton batches concurrent requests; each must get its own image's faces and options."""
    obama = (photos / "obama2.jpg").read_bytes()
    group = augment.group_photo([(photos / n).read_bytes() for n in ("obama.jpg", "biden.jpg", "obama3.jpg")])
    pipeline = FacePipeline(triton)
    alone = {name: await pipeline.analyse(data) for name, data in (("obama", obama), ("group", group))}
    asked = [("obama", obama, None), ("group", group, None), ("group", group, 1)] * 6
    answers = await asyncio.gather(*(pipeline.analyse(data, max_faces=cap) for _, data, cap in asked))
    for (name, _, cap), answer in zip(asked, answers, strict=True):
        expected = alone[name].faces[: cap or None]
        assert len(answer.faces) == len(expected)
        for got, want in zip(answer.faces, expected, strict=True):
            assert got.embedding is not None and want.embedding is not None
            assert float(got.embedding @ want.embedding) > 0.999


def bad_sampling(jpeg: bytes) -> bytes:
    """A JPEG whose header is whole but whose frame gives its first component a sampling
    factor of 0: only the decoder can tell."""
    pos = 2
    while not (0xC0 <= jpeg[pos + 1] <= 0xCF and jpeg[pos + 1] not in (0xC4, 0xC8, 0xCC)):
        pos += 2 + struct.unpack(">H", jpeg[pos + 2 : pos + 4])[0]
    return jpeg[: pos + 11] + b"\x00" + jpeg[pos + 12 :]


async def test_an_image_only_the_decoder_rejects_is_an_image_error(
    triton: TritonModels, photos: Path
) -> None:
    data = bad_sampling((photos / "obama.jpg").read_bytes())
    with pytest.raises(ImageError, match="corrupt JPEG"):
        await FacePipeline(triton, chain=False).analyse(data)
    with pytest.raises(ImageError, match="corrupt JPEG"):
        await FacePipeline(triton).analyse(data)


async def test_a_malformed_request_fails_alone_and_the_next_is_served(
    triton: TritonModels, photos: Path
) -> None:
    data = (photos / "obama.jpg").read_bytes()
    with pytest.raises(UpstreamUnavailable, match="malformed face_chain request"):
        await triton.infer_bytes(CHAIN, {"image": data, "options": b"{not json"})
    assert len((await FacePipeline(triton).analyse(data)).faces) == 1


async def test_an_embedder_version_that_is_not_loaded_is_a_503(triton: TritonModels, photos: Path) -> None:
    pipeline = FacePipeline(triton, limits=DecodeLimits())
    with pytest.raises(UpstreamUnavailable, match="arcface version 99"):
        await pipeline.analyse((photos / "obama.jpg").read_bytes(), versions=ModelVersions(embedder="99"))
