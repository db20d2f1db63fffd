"""Augmentations of real photos for tests: EXIF rotation, scaling, re-encoding, a group."""

from __future__ import annotations

import math
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


def blurred(data: bytes, sigma: float) -> bytes:
    """Gaussian blur of ``sigma`` pixels of the image as stored, saved as JPEG quality 95."""
    rgb = cv2.GaussianBlur(read_rgb(data), (0, 0), sigma)
    return encode(rgb, params=[cv2.IMWRITE_JPEG_QUALITY, 95])


def turned(data: bytes, points5: np.ndarray, yaw_deg: float, pitch_deg: float = 0.0) -> bytes:
    """The face turned by ``yaw_deg`` (positive: towards the image's right) and then tilted by
    ``pitch_deg`` (positive: up), as a 2.5-D warp: the image is draped over a smooth head (a
    Gaussian dome one eye distance high with a nose on it, placed from the 5 landmarks
    ``points5``), the surface rotated and projected orthographically. No self-occlusion: fine
    to about 55°, where the far cheek starts to fold. Saved as JPEG quality 95.
    """
    rgb = read_rgb(data)
    p = np.asarray(points5, np.float64)
    across = p[1] - p[0]
    d = float(np.hypot(*across))
    u = across / d
    v = np.array([-u[1], u[0]])
    centre = (p[0] + p[1]) / 2 + 0.6 * d * v
    nose_a, nose_b = (p[2] - centre) @ u, (p[2] - centre) @ v

    def depth(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        head = d * np.exp(-0.5 * ((a / d) ** 2 + (b / (1.3 * d)) ** 2))
        nose = 0.25 * d * np.exp(-0.5 * (((a - nose_a) / (0.22 * d)) ** 2 + ((b - nose_b) / (0.35 * d)) ** 2))
        return np.asarray(head + nose)

    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)

    def source(out_a: np.ndarray, out_b: np.ndarray, z: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of b' = b cos p − z sin p, a' = a cos y + (b sin p + z cos p) sin y at depth z."""
        b = (out_b + z * math.sin(pitch)) / math.cos(pitch)
        a = (out_a - (b * math.sin(pitch) + z * math.cos(pitch)) * math.sin(yaw)) / math.cos(yaw)
        return a, b

    ys, xs = np.mgrid[0 : rgb.shape[0], 0 : rgb.shape[1]].astype(np.float64)
    out_a = (xs - centre[0]) * u[0] + (ys - centre[1]) * u[1]
    out_b = (xs - centre[0]) * v[0] + (ys - centre[1]) * v[1]
    a, b = source(out_a, out_b, 0.0)  # the flat background, exact
    # Near the head (5 eye distances out, the dome is under a tenth of a pixel), each pixel's
    # source point on the surface by damped fixed-point iteration.
    reach = 5 * d
    rows = slice(max(0, int(centre[1] - reach)), max(0, int(centre[1] + reach)))
    cols = slice(max(0, int(centre[0] - reach)), max(0, int(centre[0] + reach)))
    near_a, near_b = out_a[rows, cols], out_b[rows, cols]
    head_a, head_b = near_a.copy(), near_b.copy()
    for _ in range(30):
        source_a, source_b = source(near_a, near_b, depth(head_a, head_b))
        head_a, head_b = (head_a + source_a) / 2, (head_b + source_b) / 2
    a[rows, cols], b[rows, cols] = head_a, head_b
    map_x = (centre[0] + a * u[0] + b * v[0]).astype(np.float32)
    map_y = (centre[1] + a * u[1] + b * v[1]).astype(np.float32)
    warped = cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return encode(warped, params=[cv2.IMWRITE_JPEG_QUALITY, 95])
