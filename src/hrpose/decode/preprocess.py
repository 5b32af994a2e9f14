"""Test-time input as the official HigherHRNet: resize, align to 64, normalise, record the affine.

The geometry lives in :mod:`hrpose.affine`; the :class:`~hrpose.affine.Transform` returned here
is the one decoding maps keypoints back with.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from hrpose.affine import Transform
from hrpose.normalization import normalize_image


def preprocess(
    image: np.ndarray, input_size: int = 512, scale: float = 1.0, min_scale: float = 1.0
) -> tuple[torch.Tensor, Transform]:
    """RGB uint8 (H, W, 3) -> normalised (3, h, w) float32 tensor and its :class:`Transform`."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got {image.shape}")
    h, w = image.shape[:2]
    transform = Transform.for_image((w, h), input_size, scale, min_scale)
    warped = cv2.warpAffine(image, transform.matrix, transform.size)
    return normalize_image(warped), transform
