"""Image bytes → RGB pixels, with limits checked before any pixel is decoded.

The format is sniffed from magic bytes and the dimensions read from the header, so a
decompression bomb (a tiny file declaring 30000×30000 pixels) is refused without
allocating it. JPEGs are decoded at 1/2, 1/4 or 1/8 scale by libjpeg itself (its DCT
scaling: less work than decoding every pixel, and no aliasing) down to a shorter side of
480 px (``DecodeLimits.reduce_min_side``); the analysis decodes again at a finer scale
only for faces too small there to give good 112×112 crops (``finer_reduction``). EXIF
orientation is honoured (OpenCV applies it unless told not to).
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from orchestrator.core.errors import ImageError, ImageTooLarge, UnsupportedImage

ImageFormat = Literal["jpeg", "png", "webp", "bmp"]

_REDUCED_FLAGS = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    min_side: int = 16
    reduce_min_side: int = 480
    """Reduced-scale JPEG decoding never takes the shorter side below this. The detector sees
    every image at 320×240, but a face must keep ``face_min_side`` pixels to be cut from the
    same decode: at 480 a face of a quarter of the shorter side does, so most photos are
    decoded once (at 240, 15 of the 22 load probes were decoded twice, 26 % slower)."""
    face_min_side: int = 112
    """A face whose box's shorter side is below this many decoded pixels is aligned from a
    finer decode, so its 112×112 crop is never upsampled from a reduced image."""


@dataclass(frozen=True)
class DecodedImage:
    rgb: np.ndarray
    """[H, W, 3] uint8, RGB, orientation applied."""
    format: ImageFormat
    scale: float
    """Decoded size / stored size (1, 1/2, 1/4 or 1/8)."""

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])


def sniff_format(data: bytes) -> ImageFormat:
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"BM"):
        return "bmp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        raise UnsupportedImage("GIF is not supported; send JPEG, PNG, WebP or BMP")
    raise UnsupportedImage("not a JPEG, PNG, WebP or BMP image")


@dataclass(frozen=True)
class _JpegLayout:
    width: int
    height: int
    scan_start: int


def _jpeg_layout(data: bytes) -> _JpegLayout:
    """Walk the JPEG segments to the frame header and the first scan of the main image."""
    pos, size = 2, None
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ImageError("corrupt JPEG: bad segment marker")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            size = (width, height)
        if marker == 0xDA:
            if size is None:
                raise ImageError("corrupt JPEG: scan before frame header")
            return _JpegLayout(size[0], size[1], pos)
        pos += 2 + length
    raise ImageError("truncated JPEG: no image data")


def _dimensions(data: bytes, fmt: ImageFormat) -> tuple[int, int]:
    try:
        if fmt == "jpeg":
            layout = _jpeg_layout(data)
            return layout.width, layout.height
        if fmt == "png":
            if data[12:16] != b"IHDR":
                raise ImageError("corrupt PNG: no IHDR chunk")
            return struct.unpack(">II", data[16:24])
        if fmt == "bmp":
            width, height = struct.unpack("<ii", data[18:26])
            return width, abs(height)
        chunk = data[12:16]
        if chunk == b"VP8X":
            width = int.from_bytes(data[24:27], "little") + 1
            return width, int.from_bytes(data[27:30], "little") + 1
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if chunk == b"VP8 ":
            width, height = struct.unpack("<HH", data[26:30])
            return width & 0x3FFF, height & 0x3FFF
        raise ImageError("corrupt WebP: unknown chunk")
    except struct.error as error:
        raise ImageError(f"truncated {fmt.upper()} header") from error


def _check_complete(data: bytes, fmt: ImageFormat) -> None:
    # libjpeg only warns on a truncated stream and fills the rest with grey: refuse it instead.
    if fmt == "jpeg" and data.rfind(b"\xff\xd9") <= _jpeg_layout(data).scan_start:
        raise ImageError("truncated JPEG: the image data ends early")
    if fmt == "png" and b"IEND" not in data[-12:]:
        raise ImageError("truncated PNG: no IEND chunk")


def _reduction(width: int, height: int, limits: DecodeLimits) -> int:
    factor = 1
    for candidate in (2, 4, 8):
        if min(width, height) // candidate >= limits.reduce_min_side:
            factor = candidate
    return factor


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, checked against the limits; nothing decoded yet."""

    format: ImageFormat
    width: int
    height: int
    reduction: int
    """libjpeg's scale-down factor (1, 2, 4 or 8) the pixels will be decoded at."""

    @property
    def decoded_pixels(self) -> int:
        """Pixels the decoder will produce (libjpeg rounds a reduced side up)."""
        return -(-self.width // self.reduction) * -(-self.height // self.reduction)


def read_header(data: bytes, limits: DecodeLimits = DecodeLimits()) -> ImageHeader:
    """Format, size and decode scale from the header; every limit checked, no pixel decoded."""
    if not data:
        raise ImageError("empty image")
    if len(data) > limits.max_bytes:
        raise ImageTooLarge(f"image is {len(data)} bytes; the limit is {limits.max_bytes}")
    fmt = sniff_format(data)
    width, height = _dimensions(data, fmt)
    if width <= 0 or height <= 0:
        raise ImageError(f"image declares an invalid size {width}×{height}")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(
            f"image is {width}×{height} = {width * height} pixels; the limit is {limits.max_pixels}"
        )
    if min(width, height) < limits.min_side:
        raise ImageError(f"image is {width}×{height}; the shorter side must be ≥ {limits.min_side}")
    _check_complete(data, fmt)
    reduction = _reduction(width, height, limits) if fmt == "jpeg" else 1
    return ImageHeader(fmt, width, height, reduction)


def finer_reduction(header: ImageHeader, smallest_face: float, limits: DecodeLimits) -> int:
    """The scale-down factor at which a face whose box's shorter side is ``smallest_face``
    pixels at the header's reduction gets ``limits.face_min_side``: the header's own if it
    already does, else the coarsest finer one that does (1 at most)."""
    full_size = smallest_face * header.reduction
    for factor in (8, 4, 2):
        if factor <= header.reduction and full_size / factor >= limits.face_min_side:
            return factor
    return 1


def decode_pixels(data: bytes, header: ImageHeader) -> DecodedImage:
    """The pixels of an image whose header :func:`read_header` has checked."""
    flags = _REDUCED_FLAGS.get(header.reduction, cv2.IMREAD_COLOR)
    buffer = np.frombuffer(data, dtype=np.uint8)
    bgr = cv2.imdecode(buffer, flags)
    if bgr is None:
        raise ImageError(f"corrupt {header.format.upper()} image: it could not be decoded")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return DecodedImage(rgb=rgb, format=header.format, scale=1.0 / header.reduction)


def for_faces(
    data: bytes,
    header: ImageHeader,
    image: DecodedImage,
    boxes: list[np.ndarray],
    limits: DecodeLimits,
    reserve: Callable[[ImageHeader], None] = lambda header: None,
) -> tuple[DecodedImage, list[np.ndarray]]:
    """The image to cut the faces from, and their boxes in its pixels.

    ``image`` (decoded at ``header``'s reduction) with ``boxes`` (found in it) as they are,
    unless the smallest face is too small there: then the image decoded again at the
    reduction that gives it ``limits.face_min_side``; ``reserve`` is called first with what
    that decode will be, for its memory.
    """
    smallest = min(min(box[2] - box[0], box[3] - box[1]) for box in boxes)
    finer = finer_reduction(header, float(smallest), limits)
    if finer == header.reduction:
        return image, boxes
    finer_header = dataclasses.replace(header, reduction=finer)
    reserve(finer_header)
    factor = header.reduction / finer
    return decode_pixels(data, finer_header), [box * factor for box in boxes]


def decode(data: bytes, limits: DecodeLimits = DecodeLimits()) -> DecodedImage:
    return decode_pixels(data, read_header(data, limits))
