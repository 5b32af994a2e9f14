"""Image <-> network geometry: the official affine constructions and one way to apply them.

The official code builds its image-to-network matrices two ways, and both are kept because
their bits matter: training crops (:func:`affine_matrix`, float64 matrix algebra with rotation;
the augmentation must stay bit-identical) and the test-time resize (:func:`affine_transform`,
three float32 point pairs through ``cv2.getAffineTransform``; the warped input and the mapped
keypoints match the official test path). Points are moved by :func:`transform_points` only;
:class:`Transform` records a test-time mapping so decoding can invert it without recomputing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to the x, y of (..., >=2) points (float64); other columns kept."""
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., :2] = out[..., :2] @ matrix[:, :2].T + matrix[:, 2]
    return out


def affine_matrix(
    center: Sequence[float], scale: float, res: int, rotation: float = 0.0
) -> np.ndarray:
    """(2, 3) matrix mapping image pixels to a ``res x res`` crop (official _get_affine_matrix)."""
    h = 200 * scale
    t = np.array(
        [
            [res / h, 0, res * (-float(center[0]) / h + 0.5)],
            [0, res / h, res * (-float(center[1]) / h + 0.5)],
            [0, 0, 1],
        ]
    )
    if rotation != 0:
        rad = -rotation * np.pi / 180
        sn, cs = np.sin(rad), np.cos(rad)
        rot = np.array([[cs, -sn, 0], [sn, cs, 0], [0, 0, 1]])
        shift = np.array([[1, 0, -res / 2], [0, 1, -res / 2], [0, 0, 1]])
        unshift = np.array([[1, 0, res / 2], [0, 1, res / 2], [0, 0, 1]])
        t = unshift @ rot @ shift @ t
    return t[:2]


def affine_transform(
    center: tuple[float, float],
    scale: tuple[float, float],
    size: tuple[int, int],
    inverse: bool = False,
) -> np.ndarray:
    """(2, 3) image -> ``size`` map affine (no rotation), built as the official test code does.

    Three float32 point pairs through ``cv2.getAffineTransform``, so results match bit for bit.
    """
    src_w = scale[0] * 200.0
    dst_w, dst_h = size
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = np.array(center) + np.array([0.0, src_w * -0.5])
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([0, dst_w * -0.5], np.float32)
    for pts in (src, dst):
        d = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-d[1], d[0]], np.float32)
    if inverse:
        return cv2.getAffineTransform(np.float32(dst), np.float32(src))
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def input_size_for(
    image_size: tuple[int, int], input_size: int = 512, scale: float = 1.0, min_scale: float = 1.0
) -> tuple[tuple[int, int], tuple[float, float], tuple[float, float]]:
    """(w, h) of the network input, integer centre and scale for an image of (w, h) pixels.

    The short side goes to the input size (times the test scale), the long side is rounded up to
    a multiple of 64; equal to the official ``get_multi_scale_size``.
    """
    w, h = image_size
    if w < 1 or h < 1:
        raise ValueError(f"image must be at least 1x1 pixels, got {w}x{h}")
    center = (float(int(w / 2.0 + 0.5)), float(int(h / 2.0 + 0.5)))
    min_input = int((min_scale * input_size + 63) // 64 * 64)
    if w < h:
        w_r = int(min_input * scale / min_scale)
        h_r = int(int((min_input / w * h + 63) // 64 * 64) * scale / min_scale)
        scale_w, scale_h = w / 200.0, h_r / w_r * w / 200.0
    else:
        h_r = int(min_input * scale / min_scale)
        w_r = int(int((min_input / h * w + 63) // 64 * 64) * scale / min_scale)
        scale_h, scale_w = h / 200.0, w_r / h_r * h / 200.0
    return (w_r, h_r), center, (scale_w, scale_h)


@dataclass(frozen=True)
class Transform:
    """How an image was mapped to the network input (official centre/scale convention)."""

    center: tuple[float, float]
    scale: tuple[float, float]  # (w, h) in units of 200 px
    size: tuple[int, int]  # network input (w, h)

    @staticmethod
    def for_image(
        image_size: tuple[int, int],
        input_size: int = 512,
        scale: float = 1.0,
        min_scale: float = 1.0,
    ) -> Transform:
        """The test-time transform of an image of ``image_size`` (w, h) at one test scale."""
        size, center, sc = input_size_for(image_size, input_size, scale, min_scale)
        return Transform(center, sc, size)

    @property
    def matrix(self) -> np.ndarray:
        """(2, 3) image -> input affine."""
        return affine_transform(self.center, self.scale, self.size)

    def to_image(self, points: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """Map (..., >=2) x, y from a map of ``size`` (w, h; default the input) to image pixels."""
        mat = affine_transform(self.center, self.scale, size or self.size, inverse=True)
        return transform_points(points, mat)
