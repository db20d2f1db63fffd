"""Similarity warp of a face onto the ArcFace 112×112 five-point template."""

from __future__ import annotations

import cv2
import numpy as np

CROP_SIZE = 112
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping src to dst.

    Umeyama (1991) without reflection. [N, 2] points each → [2, 3] affine matrix.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    variance = (src_c**2).sum() / len(src)
    scale = float((s * sign).sum() / variance) if variance > 0 else 1.0
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def align(rgb: np.ndarray, points5: np.ndarray) -> np.ndarray:
    """[H, W, 3] uint8 image and [5, 2] points → [112, 112, 3] uint8 aligned crop."""
    matrix = similarity_transform(points5, ARCFACE_TEMPLATE)
    return cv2.warpAffine(rgb, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR, borderValue=0)


def embedder_input(crops: np.ndarray) -> np.ndarray:
    """[N, 112, 112, 3] uint8 RGB crops → [N, 3, 112, 112] float32, (x − 127) / 128."""
    return ((crops.astype(np.float32) - 127.0) / 128.0).transpose(0, 3, 1, 2).copy()


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of the gray crop: low for blurred or flat faces."""
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())
