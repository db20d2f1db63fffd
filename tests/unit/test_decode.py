import struct
import zlib

import cv2
import numpy as np
import pytest

from orchestrator.core.errors import ImageError, ImageTooLarge, UnsupportedImage
from orchestrator.pipeline.vision.decode import (
    DecodeLimits,
    decode,
    decode_pixels,
    finer_reduction,
    for_faces,
    read_header,
    sniff_format,
)
from tests.support.augment import encode, with_exif_orientation

pytestmark = pytest.mark.unit


def gradient(width: int = 64, height: int = 48) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None, None]
    return np.concatenate(
        [
            np.broadcast_to(x, (height, width, 1)),
            np.broadcast_to(y, (height, width, 1)),
            np.full((height, width, 1), 128, np.uint8),
        ],
        axis=2,
    )


@pytest.mark.parametrize("ext", [".png", ".bmp", ".webp", ".jpg"])
def test_every_supported_format_decodes_to_rgb_of_the_right_size(ext: str) -> None:
    rgb = gradient()
    params = [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else []
    image = decode(encode(rgb, ext, params))
    assert image.rgb.shape == (48, 64, 3)
    tolerance = 12 if ext == ".jpg" else 0
    assert np.abs(image.rgb.astype(int) - rgb.astype(int)).max() <= tolerance
    assert image.format == ext.strip(".").replace("jpg", "jpeg")


def test_lossy_webp_and_a_grayscale_png_decode() -> None:
    assert decode(encode(gradient(), ".webp", [cv2.IMWRITE_WEBP_QUALITY, 80])).rgb.shape == (48, 64, 3)
    ok, png = cv2.imencode(".png", gradient()[:, :, 0])
    assert ok
    assert decode(png.tobytes()).rgb.shape == (48, 64, 3)


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", ImageError, "empty"),
        (b"hello, this is text and not an image at all", UnsupportedImage, "not a JPEG"),
        (b"GIF89a" + b"\x00" * 64, UnsupportedImage, "GIF"),
        (png_header(30000, 30000) + b"\x00" * 100, ImageTooLarge, "900000000 pixels"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(data: bytes, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        decode(data)


def test_a_truncated_jpeg_is_refused() -> None:
    jpeg = encode(gradient(256, 256))
    with pytest.raises(ImageError, match="truncated JPEG"):
        decode(jpeg[: len(jpeg) // 2])
    with pytest.raises(ImageError, match="truncated JPEG"):
        decode(jpeg[:40])


def test_a_truncated_png_is_refused() -> None:
    png = encode(gradient(256, 256), ".png")
    with pytest.raises(ImageError, match="truncated PNG"):
        decode(png[: len(png) - 20])


def test_byte_limit_is_checked_before_anything_else() -> None:
    with pytest.raises(ImageTooLarge, match="bytes"):
        decode(encode(gradient()), DecodeLimits(max_bytes=100))


def test_exif_orientation_is_honoured() -> None:
    rgb = gradient(64, 48)
    image = decode(with_exif_orientation(encode(rgb, params=[cv2.IMWRITE_JPEG_QUALITY, 100]), 6))
    # Orientation 6: rotate 90° clockwise to display.
    expected = np.rot90(rgb, k=-1)
    assert image.rgb.shape == expected.shape == (64, 48, 3)
    assert np.abs(image.rgb.astype(int) - expected.astype(int)).mean() < 4


def test_large_jpeg_is_decoded_at_reduced_scale_but_never_too_small() -> None:
    big = encode(np.tile(gradient(64, 48), (60, 60, 1)))  # 3840×2880
    image = decode(big, DecodeLimits(reduce_min_side=1000))
    assert image.scale == 0.5
    assert image.rgb.shape == (1440, 1920, 3)
    assert decode(big, DecodeLimits(reduce_min_side=5000)).scale == 1.0
    assert decode(big).scale == 1 / 4  # by default down to a shorter side of 480


def test_sniff_format() -> None:
    assert sniff_format(encode(gradient(), ".bmp")) == "bmp"
    with pytest.raises(UnsupportedImage):
        sniff_format(b"\x00\x00\x00\x0cjP  ")  # JPEG 2000


def test_the_faces_are_cut_from_a_finer_decode_only_when_too_small_at_the_detectors_scale() -> None:
    big = encode(np.tile(gradient(64, 48), (60, 60, 1)))  # 3840×2880
    limits = DecodeLimits(reduce_min_side=240)  # the detector's 240 rows
    header = read_header(big, limits)
    image = decode_pixels(big, header)
    assert header.reduction == 8 and image.rgb.shape == (360, 480, 3)
    reserved: list[int] = []

    def cut(side: float) -> tuple[float, list[np.ndarray]]:
        box = np.array([10.0, 20.0, 10.0 + side, 20.0 + side], np.float32)
        source, boxes = for_faces(big, header, image, [box], limits, lambda h: reserved.append(h.reduction))
        return source.scale, boxes

    # 120 px at 1/8 is enough: the same image, the same box, nothing decoded again.
    scale, boxes = cut(120)
    assert scale == 1 / 8 and reserved == [] and boxes[0][2] == 130
    # 30 px at 1/8 is 240 px in the file: 120 at 1/2, the coarsest scale that gives 112.
    scale, boxes = cut(30)
    assert scale == 1 / 2 and reserved == [2]
    np.testing.assert_allclose(boxes[0], [40, 80, 160, 200])
    # 12 px at 1/8 is 96 px in the file: decoded whole.
    assert cut(12)[0] == 1.0 and reserved == [2, 1]
    assert finer_reduction(header, 14, limits) == 1 and finer_reduction(header, 28, limits) == 2
