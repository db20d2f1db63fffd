"""What travels between the orchestrator and Triton's face_chain: the request's bytes and
options, the faces as tensors, and an image error carried back as the same error."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2

from orchestrator.clients.triton import ModelInfo, bytes_request, image_error
from orchestrator.core.errors import ImageError, ImageTooLarge, UnsupportedImage
from orchestrator.modelrepo.repository import CHAIN_FACE_COLUMNS, chain_config
from orchestrator.pipeline.vision.chain import (
    FACE_COLUMNS,
    ChainOptions,
    analyse_batch,
    from_tensors,
    to_tensors,
)
from orchestrator.pipeline.vision.decode import DecodeLimits
from orchestrator.pipeline.vision.detect import DetectParams
from orchestrator.pipeline.vision.faces import Analysis, Face
from tests.support import augment

pytestmark = pytest.mark.unit


def test_each_input_is_one_length_prefixed_bytes_element() -> None:
    info = ModelInfo("face_chain", "1", ("image", "options"), ("faces", "size"), 8)
    image, options = b"\xff\xd8 jpeg bytes \xff\xd9", b'{"embed":true}'
    request = service_pb2.ModelInferRequest.FromString(
        bytes_request(info, {"image": image, "options": options})
    )
    assert [(t.name, t.datatype, list(t.shape)) for t in request.inputs] == [
        ("image", "BYTES", [1, 1]),
        ("options", "BYTES", [1, 1]),
    ]
    assert request.raw_input_contents[0] == struct.pack("<I", len(image)) + image
    assert request.raw_input_contents[1] == struct.pack("<I", len(options)) + options
    assert [o.name for o in request.outputs] == ["faces", "size"]


def test_options_survive_json() -> None:
    options = ChainOptions(
        "3", False, DetectParams(0.5, 0.3, 12.0, 4), DecodeLimits(max_pixels=10, reduce_min_side=300)
    )
    assert ChainOptions.from_json(options.to_json()) == options
    assert ChainOptions.from_json(options.to_json().encode()) == options


def _face(rng: np.random.Generator, embedded: bool) -> Face:
    return Face(
        box=rng.uniform(0, 500, 4).astype(np.float32),
        det_score=0.93,
        landmarks68=rng.uniform(0, 500, (68, 2)).astype(np.float32),
        points5=rng.uniform(0, 500, (5, 2)).astype(np.float32),
        crop=rng.integers(0, 256, (112, 112, 3), dtype=np.uint8),
        sharpness=123.5,
        embedding=rng.standard_normal(512).astype(np.float32) if embedded else None,
    )


@pytest.mark.parametrize("embedded", [True, False])
def test_faces_survive_the_tensors(embedded: bool) -> None:
    rng = np.random.default_rng(4)
    analysis = Analysis([_face(rng, embedded) for _ in range(3)], 640, 480, {"decode": 1.5, "detect": 2.0})
    tensors = to_tensors(analysis)
    assert tensors["faces"].shape == (3, FACE_COLUMNS)
    assert tensors["embeddings"].shape == ((3, 512) if embedded else (3, 0))
    back = from_tensors(tensors)
    assert (back.width, back.height, back.timings_ms) == (640, 480, {"decode": 1.5, "detect": 2.0})
    for got, sent in zip(back.faces, analysis.faces, strict=True):
        assert np.array_equal(got.box, sent.box) and got.det_score == pytest.approx(sent.det_score)
        assert np.array_equal(got.landmarks68, sent.landmarks68)
        assert np.array_equal(got.points5, sent.points5)
        assert np.array_equal(got.crop, sent.crop) and got.sharpness == sent.sharpness
        if embedded:
            assert np.array_equal(got.embedding, sent.embedding)
        else:
            assert got.embedding is None


def test_no_face_is_empty_tensors() -> None:
    tensors = to_tensors(Analysis([], 100, 50))
    assert tensors["faces"].shape == (0, FACE_COLUMNS) and tensors["crops"].shape == (0, 112, 112, 3)
    assert from_tensors(tensors).faces == []


@pytest.mark.parametrize("error", [ImageError, UnsupportedImage, ImageTooLarge])
def test_an_image_error_comes_back_as_itself(error: type[ImageError]) -> None:
    found = image_error(f"in ensemble: [{error.__name__}] corrupt JPEG image: it could not be decoded")
    assert type(found) is error and found.detail == "corrupt JPEG image: it could not be decoded"


def test_other_errors_are_not_image_errors() -> None:
    assert image_error("[FacerecError] something") is None
    assert image_error("face_chain failed: arcface version 2: not found") is None


def test_an_image_that_cannot_be_decoded_fails_alone_in_its_batch() -> None:
    good = augment.encode(np.full((240, 320, 3), 80, np.uint8))
    seen: list[int] = []

    def detector(batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        seen.append(len(batch))
        return np.zeros((len(batch), 4420, 2), np.float32), np.zeros((len(batch), 4420, 4), np.float32)

    def unused(*args: object) -> np.ndarray:
        raise AssertionError("no face, so no landmarks and no embedding")

    images = [good, b"not an image", good[: len(good) // 2]]
    results = analyse_batch(images, [ChainOptions()] * 3, detector, unused, unused)
    assert seen == [1], "the detector ran once, on the one image that decoded"
    first, second, third = results
    assert isinstance(first, Analysis) and (first.faces, first.width, first.height) == ([], 320, 240)
    assert isinstance(second, UnsupportedImage)
    assert isinstance(third, ImageError) and "truncated" in third.detail


def test_the_chain_config_declares_what_the_chain_answers() -> None:
    tensors = to_tensors(Analysis([_face(np.random.default_rng(1), True)], 10, 10))
    config = chain_config()
    assert CHAIN_FACE_COLUMNS == FACE_COLUMNS
    declared = {o.name: (mc.DataType.Name(o.data_type), len(o.dims)) for o in config.output}
    numpy_types = {"float32": "TYPE_FP32", "uint8": "TYPE_UINT8", "int32": "TYPE_INT32"}
    assert declared == {name: (numpy_types[str(t.dtype)], t.ndim) for name, t in tensors.items()}
    assert [i.name for i in config.input] == ["image", "options"]
