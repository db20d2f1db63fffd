"""The whole face chain on real photos through the real Triton."""

import itertools
from pathlib import Path

import numpy as np
import pytest

from orchestrator.clients.triton import TritonModels
from orchestrator.core.errors import ImageError, ImageTooLarge, UnsupportedImage
from orchestrator.pipeline.face_pipeline import Analysis, FacePipeline
from tests.support import augment
from tests.support.photos import BIDEN, OBAMA
from tests.unit.test_decode import png_header

pytestmark = pytest.mark.integration


async def one_face(pipeline: FacePipeline, data: bytes) -> np.ndarray:
    analysis = await pipeline.analyse(data)
    assert len(analysis.faces) == 1, f"{len(analysis.faces)} faces"
    embedding = analysis.faces[0].embedding
    assert embedding is not None
    return embedding


async def test_every_obama_pair_beats_every_obama_biden_pair(triton: TritonModels, photos: Path) -> None:
    pipeline = FacePipeline(triton)
    emb = {name: await one_face(pipeline, (photos / name).read_bytes()) for name in OBAMA + BIDEN}
    same = [float(emb[a] @ emb[b]) for a, b in itertools.combinations(OBAMA, 2)]
    different = [float(emb[a] @ emb[b]) for a in OBAMA for b in BIDEN]
    assert min(same) > max(different), (same, different)
    for vector in emb.values():
        assert vector.shape == (512,) and abs(np.linalg.norm(vector) - 1) < 1e-5


async def test_a_group_photo_yields_one_face_per_person(triton: TritonModels, photos: Path) -> None:
    sources = [(photos / n).read_bytes() for n in ["obama.jpg", "biden.jpg", "obama3.jpg", "obama2.jpg"]]
    pipeline = FacePipeline(triton)
    analysis: Analysis = await pipeline.analyse(augment.group_photo(sources))
    assert len(analysis.faces) == 4
    areas = [face.area for face in analysis.faces]
    assert areas == sorted(areas, reverse=True)
    # Faces sit in different tiles: their centres are spread across the width.
    centres = sorted(float(f.box[0] + f.box[2]) / 2 for f in analysis.faces)
    assert all(b - a > analysis.width / 8 for a, b in itertools.pairwise(centres))
    for face in analysis.faces:
        assert face.landmarks68 is not None and face.points5 is not None
        x1, y1, x2, y2 = face.box
        assert np.all((face.points5[:, 0] >= x1) & (face.points5[:, 0] <= x2))
        assert np.all((face.points5[:, 1] >= y1) & (face.points5[:, 1] <= y2))
        assert 0 < face.quality <= 1


@pytest.mark.parametrize(
    "variant",
    [
        pytest.param(augment.rotated_by_exif, id="exif-rotated-90"),
        pytest.param(lambda d: augment.scaled(d, 0.3), id="scaled-30pct"),
        pytest.param(lambda d: augment.reencoded(d, 25), id="jpeg-quality-25"),
    ],
)
async def test_an_altered_photo_still_matches_its_original(
    triton: TritonModels, photos: Path, variant
) -> None:
    pipeline = FacePipeline(triton)
    for name in OBAMA + BIDEN:
        original = (photos / name).read_bytes()
        a = await one_face(pipeline, original)
        b = await one_face(pipeline, variant(original))
        other = await one_face(
            pipeline, (photos / ("biden.jpg" if name in OBAMA else "obama.jpg")).read_bytes()
        )
        assert float(a @ b) > 0.8, name
        assert float(a @ b) > float(b @ other) + 0.4, name


async def test_boxes_are_in_the_coordinates_of_the_image_as_sent(triton: TritonModels, photos: Path) -> None:
    data = (photos / "obama.jpg").read_bytes()
    pipeline = FacePipeline(triton)
    normal = (await pipeline.analyse(data)).faces[0]
    big = augment.scaled(data, 3.0)
    from orchestrator.pipeline.vision.decode import DecodeLimits

    reduced = FacePipeline(triton, limits=DecodeLimits(reduce_min_side=1000))
    far = await reduced.analyse(big)
    assert far.width == augment.read_rgb(big).shape[1]
    np.testing.assert_allclose(far.faces[0].box / 3.0, normal.box, atol=12)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", ImageError),
        (b"plain text, not an image", UnsupportedImage),
        (b"GIF89a" + bytes(100), UnsupportedImage),
        (png_header(30000, 30000) + bytes(64), ImageTooLarge),
    ],
    ids=["zero-bytes", "text", "gif", "png-bomb"],
)
async def test_bad_input_is_a_clear_error(triton: TritonModels, data: bytes, error: type) -> None:
    with pytest.raises(error):
        await FacePipeline(triton).analyse(data)


async def test_a_truncated_photo_is_a_clear_error(triton: TritonModels, photos: Path) -> None:
    data = (photos / "obama.jpg").read_bytes()
    with pytest.raises(ImageError, match="truncated"):
        await FacePipeline(triton).analyse(data[: len(data) // 3])


async def test_an_image_without_a_face_gives_no_faces(triton: TritonModels) -> None:
    rng = np.random.default_rng(5)
    noise = augment.encode(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    assert (await FacePipeline(triton).analyse(noise)).faces == []
