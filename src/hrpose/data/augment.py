"""Training augmentation as the official HigherHRNet: random affine, then horizontal flip.

Pure geometry plus an injected ``np.random.Generator``: the parameters are drawn first
(:func:`draw_params`), then applied (:func:`apply`). One matrix per output resolution warps the
masks and keypoints, one at the input resolution warps the image, with the official conventions
(the ``200``-pixel scale unit, rotation about the output centre, and on flip
``x <- R - x - 1`` at each output resolution R).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from hrpose.affine import affine_matrix, transform_points


@dataclass(frozen=True)
class AugmentParams:
    """Ranges of the random affine and the flip probability (official w32_512 defaults)."""

    max_rotation: float = 30.0
    min_scale: float = 0.75
    max_scale: float = 1.5
    scale_type: str = "short"
    max_translate: float = 40.0
    flip: float = 0.5

    def __post_init__(self) -> None:
        if self.scale_type not in ("short", "long"):
            raise ValueError(f"scale_type must be 'short' or 'long', got {self.scale_type!r}")
        if not 0 < self.min_scale <= self.max_scale:
            raise ValueError("need 0 < min_scale <= max_scale")


@dataclass(frozen=True)
class Draw:
    """One sample's random parameters."""

    center: tuple[float, float]
    scale: float  # in units of 200 pixels, as the official code
    rotation: float  # degrees
    flip: bool


def draw_params(
    image_size: tuple[int, int], params: AugmentParams, rng: np.random.Generator
) -> Draw:
    """Draw scale, rotation, translation and flip in the official order for a (w, h) image."""
    width, height = image_size
    base = (min if params.scale_type == "short" else max)(width, height) / 200
    aug_scale = rng.random() * (params.max_scale - params.min_scale) + params.min_scale
    scale = base * aug_scale
    rotation = (rng.random() * 2 - 1) * params.max_rotation
    cx, cy = width / 2, height / 2
    if params.max_translate > 0:
        bound = params.max_translate * scale
        low, high = int(-bound), int(bound)
        if high > low:
            cx += int(rng.integers(low, high))
            cy += int(rng.integers(low, high))
    return Draw((cx, cy), scale, rotation, bool(rng.random() < params.flip))


__all__ = ["affine_matrix", "transform_points"]  # re-exported: the geometry is hrpose.affine's


def flip_joints(joints: np.ndarray, flip_index: Sequence[int], res: int) -> np.ndarray:
    """Mirror (N, K, 3) joints in a ``res``-wide frame: permute left/right, ``x <- res - x - 1``."""
    out = np.asarray(joints)[:, list(flip_index)].copy()
    out[..., 0] = res - out[..., 0] - 1
    return out


def mask_bytes(mask: np.ndarray) -> np.ndarray:
    """Bool/0-1 loss mask as uint8 0/255, the form the official code warps."""
    mask = np.asarray(mask)
    if mask.dtype == np.bool_:
        return mask.view(np.uint8) * np.uint8(255)
    return (np.asarray(mask, dtype=np.float64) * 255).astype(np.uint8)


def warped_mask(mask_u8: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp a 0/255 mask bilinearly and keep pixels above half: the official ``/ 255 > 0.5``
    (for integers, ``> 127``), as float32 0/1."""
    return (cv2.warpAffine(mask_u8, matrix, size) > 127).astype(np.float32)


def apply(
    image: np.ndarray,
    mask: np.ndarray,
    joints: np.ndarray,
    draw: Draw,
    input_size: int,
    output_sizes: Sequence[int],
    flip_index: Sequence[int],
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Warp image (to ``input_size``), mask and joints (to each output size), then maybe flip.

    ``mask`` is True where the loss counts; it is warped as the official code does (uint8,
    bilinear, > 0.5), so pixels from outside the image are excluded from the loss.
    Returns the image (input_size, input_size, 3) uint8, float32 masks and float joints.
    """
    masks, joint_list = [], []
    mask_u8 = mask_bytes(mask)
    for res in output_sizes:
        mat = affine_matrix(draw.center, draw.scale, res, draw.rotation)
        masks.append(warped_mask(mask_u8, mat, (res, res)))
        joint_list.append(transform_points(joints, mat))
    mat_in = affine_matrix(draw.center, draw.scale, input_size, draw.rotation)
    image = cv2.warpAffine(image, mat_in, (input_size, input_size))
    if draw.flip:  # cv2.flip: the same pixels as a reversed copy, several times faster
        image = cv2.flip(image, 1)
        masks = [cv2.flip(m, 1) for m in masks]
        joint_list = [
            flip_joints(j, flip_index, res) for j, res in zip(joint_list, output_sizes, strict=True)
        ]
    return image, masks, joint_list
