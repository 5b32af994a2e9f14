"""Test-time input geometry as the official HigherHRNet: resize, align to 64, record the affine.

The short side goes to the input size (times the test scale), the long side is rounded up to a
multiple of 64, the image is warped around its integer centre, and the same centre/scale map the
decoded keypoints back to image pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from hrpose.normalization import normalize_image


@dataclass(frozen=True)
class Transform:
    """How an image was mapped to the network input (official centre/scale convention)."""

    center: tuple[float, float]
    scale: tuple[float, float]  # (w, h) in units of 200 px
    size: tuple[int, int]  # network input (w, h)

    def to_image(self, points: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """Map (..., >=2) x, y from a map of ``size`` (w, h; default the input) to image pixels."""
        mat = affine_transform(self.center, self.scale, size or self.size, inverse=True)
        out = np.array(points, dtype=np.float64, copy=True)
        out[..., :2] = out[..., :2] @ mat[:, :2].T + mat[:, 2]
        return out


def input_size_for(
    image_size: tuple[int, int], input_size: int = 512, scale: float = 1.0, min_scale: float = 1.0
) -> tuple[tuple[int, int], tuple[float, float], tuple[float, float]]:
    """(w, h) of the network input, integer centre and scale for an image of (w, h) pixels.

    Equal to the official ``get_multi_scale_size``.
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


def affine_transform(
    center: tuple[float, float],
    scale: tuple[float, float],
    size: tuple[int, int],
    inverse: bool = False,
) -> np.ndarray:
    """(2, 3) image -> ``size`` map affine (no rotation), built as the official code does.

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


def preprocess(
    image: np.ndarray, input_size: int = 512, scale: float = 1.0, min_scale: float = 1.0
) -> tuple[torch.Tensor, Transform]:
    """RGB uint8 (H, W, 3) -> normalised (3, h, w) float32 tensor and its :class:`Transform`."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {image.shape}")
    h, w = image.shape[:2]
    size, center, sc = input_size_for((w, h), input_size, scale, min_scale)
    warped = cv2.warpAffine(image, affine_transform(center, sc, size), size)
    return normalize_image(warped), Transform(center, sc, size)
