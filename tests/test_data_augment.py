"""Augmentation: official affine/flip conventions; keypoints follow the pixels."""

from __future__ import annotations

import numpy as np
import pytest

from hrpose.data.augment import (
    AugmentParams,
    Draw,
    affine_matrix,
    apply,
    draw_params,
    flip_joints,
    transform_points,
)
from hrpose.skeleton import COCO17


def test_draw_is_reproducible_and_in_range() -> None:
    draws = [draw_params((640, 480), AugmentParams(), np.random.default_rng(s)) for s in range(200)]
    again = [draw_params((640, 480), AugmentParams(), np.random.default_rng(s)) for s in range(200)]
    assert draws == again
    scales = np.array([d.scale for d in draws]) / (480 / 200)
    assert scales.min() >= 0.75 and scales.max() <= 1.5
    assert max(abs(d.rotation) for d in draws) <= 30
    assert 0.35 < np.mean([d.flip for d in draws]) < 0.65
    assert max(abs(d.center[0] - 320) for d in draws) <= 40 * 1.5 * 480 / 200
    with pytest.raises(ValueError, match="scale_type"):
        AugmentParams(scale_type="diag")


def test_flip_is_an_involution() -> None:
    rng = np.random.default_rng(1)
    joints = rng.uniform(0, 128, (3, 17, 3))
    twice = flip_joints(flip_joints(joints, COCO17.flip_index, 128), COCO17.flip_index, 128)
    assert np.allclose(twice, joints)
    once = flip_joints(joints, COCO17.flip_index, 128)
    assert np.allclose(once[:, 1, 0], 127 - joints[:, 2, 0])  # left eye <- right eye


def test_identity_affine() -> None:
    mat = affine_matrix((64, 64), 128 / 200, 128)
    assert np.allclose(mat, [[1, 0, 0], [0, 1, 0]])
    pts = np.array([[[10.0, 20.0, 2.0]]])
    assert np.allclose(transform_points(pts, mat), pts)


@pytest.mark.parametrize("flip", [False, True])
def test_keypoints_follow_the_image(flip: bool) -> None:
    """A bright dot drawn at a keypoint lands at the transformed keypoint (input resolution)."""
    image = np.zeros((300, 400, 3), np.uint8)
    joints = np.zeros((1, 17, 3))
    joints[0, :, 2] = 2
    joints[0, 0, :2] = (150, 120)  # nose; its flip partner is itself
    image[118:123, 148:153] = 255
    mask = np.ones((300, 400), bool)
    draw = Draw((210.0, 140.0), 1.7, 20.0, flip)
    img, masks, js = apply(image, mask, joints, draw, 256, [256, 128], COCO17.flip_index)
    y, x = np.unravel_index(img[..., 0].astype(float).argmax(), img.shape[:2])
    jx, jy = js[0][0, 0, :2]
    assert abs(x - jx) <= 1.5 and abs(y - jy) <= 1.5
    expected = js[0][0, 0, :2] / 2
    expected[0] -= 0.5 if flip else 0.0  # official flip: x <- R - x - 1 at each resolution
    assert np.allclose(js[1][0, 0, :2], expected, atol=1e-6)
    assert masks[1].shape == (128, 128) and 0 < masks[1].mean() < 1  # outside the image masked
