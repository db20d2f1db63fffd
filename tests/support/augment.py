"""Augmentations of real photos for tests: EXIF rotation, scaling, re-encoding, a group."""

from __future__ import annotations

import struct

import cv2
import numpy as np


def read_rgb(data: bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode(rgb: np.ndarray, ext: str = ".jpg", params: list[int] | None = None) -> bytes:
    ok, buffer = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params or [])
    assert ok
    return buffer.tobytes()


def with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """Insert an APP1/Exif segment whose IFD0 holds only the Orientation tag (0x0112)."""
    tiff = b"II*\x00" + struct.pack("<I", 8)
    tiff += struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)
    tiff += struct.pack("<I", 0)
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]


def rotated_by_exif(jpeg: bytes) -> bytes:
    """Pixels stored rotated 90° counter-clockwise, with EXIF saying 'rotate 90° CW to view'."""
    stored = np.ascontiguousarray(np.rot90(read_rgb(jpeg), k=1))
    return with_exif_orientation(encode(stored, params=[cv2.IMWRITE_JPEG_QUALITY, 95]), 6)


def scaled(data: bytes, factor: float) -> bytes:
    rgb = read_rgb(data)
    size = (round(rgb.shape[1] * factor), round(rgb.shape[0] * factor))
    return encode(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))


def reencoded(data: bytes, quality: int) -> bytes:
    return encode(read_rgb(data), params=[cv2.IMWRITE_JPEG_QUALITY, quality])


def group_photo(photos: list[bytes], height: int = 480) -> bytes:
    """Side by side at a common height: one image with one face per source photo."""
    tiles = []
    for data in photos:
        rgb = read_rgb(data)
        width = round(rgb.shape[1] * height / rgb.shape[0])
        tiles.append(cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA))
    return encode(np.concatenate(tiles, axis=1), params=[cv2.IMWRITE_JPEG_QUALITY, 92])


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The same pixels with a COM segment: new bytes, so no cache can answer for them."""
    payload = text.encode()
    return jpeg[:2] + b"\xff\xfe" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]
