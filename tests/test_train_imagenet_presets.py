"""ImageNet presets against references independent of the code under test.

Boxes and sizes: torchvision's arithmetic re-derived by hand as explicit numbers on small cases
(``RandomResizedCrop.get_params``: ``w = int(round(sqrt(area * ratio)))``, offsets from
``randint(0, H - h + 1)``, the centred fallback; ``Resize(int)``: the long side
``int(size * long / short)``, truncated; ``CenterCrop``: offsets ``int(round((side - size) /
2))``, Python's round half to even), compared exactly. The random draws are scripted through a
stub generator: the presets draw from numpy, not torch, so they repeat torchvision's arithmetic
and distributions, not its random stream (not testable here: torchvision is not a dependency).

Pixels: Pillow's antialiased bilinear resize (what torchvision runs on PIL images) computed with
numpy from its documented rule (libImaging/Resample.c: a triangle filter whose support widens
by the downscale factor, centred on each output pixel's centre, weights normalised, horizontal
pass into 8 bits, then vertical), within 1 grey level of the presets (Pillow rounds 22-bit
fixed-point weights); and a closed form: an exact 4x downscale of a linear ramp gives the ramp's
value at each output pixel's centre.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrpose.data.imagenet import (
    TrainTransform,
    ValTransform,
    center_crop_box,
    random_crop_box,
    read_pil_rgb,
    resized_crop,
    short_side_size,
)
from hrpose.normalization import IMAGENET_MEAN, IMAGENET_STD


def _to_u8(x: torch.Tensor) -> np.ndarray:
    """Undo the normalisation: (3, H, W) float -> (H, W, 3) grey levels."""
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    return (x.numpy().transpose(1, 2, 0) * std + mean) * 255


class _Scripted:
    """A stand-in for ``np.random.Generator``: returns scripted draws, records the bounds."""

    def __init__(self, uniform: list[float], integers: list[int]) -> None:
        self.uniform_draws, self.integer_draws = list(uniform), list(integers)
        self.uniform_bounds: list[tuple[float, float]] = []
        self.integer_bounds: list[tuple[int, int]] = []

    def uniform(self, low: float, high: float) -> float:
        self.uniform_bounds.append((low, high))
        return self.uniform_draws.pop(0)

    def integers(self, low: int, high: int) -> int:
        self.integer_bounds.append((low, high))
        return self.integer_draws.pop(0)


def test_random_crop_box_is_torchvisions_arithmetic() -> None:
    """300x400 image (area 120000), worked by hand."""
    ln = np.log
    # area 0.5 -> 60000, ratio 1.2: w = round(sqrt(72000) = 268.33) = 268,
    # h = round(sqrt(50000) = 223.61) = 224; offsets drawn in [0, 300 - 224] and [0, 400 - 268]
    rng = _Scripted([0.5, ln(1.2)], [10, 20])
    assert random_crop_box(300, 400, rng) == (10, 20, 224, 268)
    assert rng.uniform_bounds == [(0.08, 1.0), (ln(3 / 4), ln(4 / 3))]
    assert rng.integer_bounds == [(0, 77), (0, 133)]  # numpy's high is exclusive: 0..76, 0..132
    # a try that does not fit is drawn again: area 0.9, ratio 3/4 gives w = round(284.6) = 285,
    # h = round(379.47) = 379 > 300; then area 0.25, ratio 1: w = h = round(173.2) = 173
    rng = _Scripted([0.9, ln(3 / 4), 0.25, 0.0], [0, 227])
    assert random_crop_box(300, 400, rng) == (0, 227, 173, 173)
    assert rng.integer_bounds == [(0, 128), (0, 228)]
    # ten misfits (whole area at ratio 1: 346x346 > 300 high) -> the centred fallback; the
    # image's ratio 4/3 is within 3/4..4/3, so the whole image
    rng = _Scripted([1.0, 0.0] * 10, [])
    assert random_crop_box(300, 400, rng) == (0, 0, 300, 400)
    # fallbacks outside the ratio range: 31x301 is wider than 4/3, so h = 31 and
    # w = round(31 * 4 / 3 = 41.33) = 41 at left (301 - 41) // 2 = 130; 301x31 is taller,
    # so w = 31, h = round(31 / 0.75 = 41.33) = 41 at top 130
    assert random_crop_box(31, 301, np.random.default_rng(0), min_area=1.0) == (0, 130, 31, 41)
    assert random_crop_box(301, 31, np.random.default_rng(0), min_area=1.0) == (130, 0, 41, 31)
    # a 10:1 strip at even sizes: h = 30, w = round(40.0) = 40, left (300 - 40) // 2 = 130
    assert random_crop_box(30, 300, np.random.default_rng(0), min_area=1.0) == (0, 130, 30, 40)


def test_resize_and_center_crop_are_torchvisions_arithmetic() -> None:
    # Resize(256): (w, h); the long side truncated, never rounded up
    assert short_side_size(480, 640, 256) == (341, 256)  # 256 * 640 / 480 = 341.33
    assert short_side_size(640, 480, 256) == (256, 341)
    assert short_side_size(427, 640, 256) == (383, 256)  # 383.70 -> 383
    assert short_side_size(300, 600, 256) == (512, 256)  # exact
    assert short_side_size(256, 300, 256) == (300, 256)  # short side already 256
    # CenterCrop(224) offsets round half to even: 117 / 2 = 58.5 -> 58, 119 / 2 = 59.5 -> 60
    assert center_crop_box(256, 341, 224) == (16, 58, 224, 224)
    assert center_crop_box(256, 343, 224) == (16, 60, 224, 224)
    assert center_crop_box(383, 256, 224) == (80, 16, 224, 224)  # 159 / 2 = 79.5 -> 80


def _pillow_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) weights of Pillow's bilinear resample of a whole axis, from its rule."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the triangle's support, widened when downscaling
    weights = np.zeros((out_size, in_size))
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        x = np.arange(lo, hi)
        w = np.clip(1 - np.abs((x - center + 0.5) / filterscale), 0, None)
        weights[i, lo:hi] = w / w.sum()
    return weights


def _numpy_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (h, w, 3) with Pillow's pass order: horizontal into 8 bits, then
    vertical (a pass is skipped where the size is unchanged)."""
    w, h = size
    out = image.astype(np.float64)
    if w != image.shape[1]:
        weights = _pillow_weights(image.shape[1], w)
        out = np.floor(np.matmul(weights, out) + 0.5)  # (w, W) @ (H, W, 3) per row
        out = np.clip(out, 0, 255)
    if h != image.shape[0]:
        weights = _pillow_weights(image.shape[0], h)
        out = np.floor(np.tensordot(weights, out, axes=(1, 0)) + 0.5)
        out = np.clip(out, 0, 255)
    return out


@pytest.fixture(scope="module")
def real_images(shared_data):
    paths = sorted((shared_data / "examples").glob("*.jp*g"))
    paths += sorted((shared_data / "coco-mini" / "images").glob("*.jpg"))
    assert len(paths) >= 8
    return [read_pil_rgb(p) for p in paths]


def test_ramp_downscale_is_the_ramp_at_pixel_centres() -> None:
    """An exact 4x downscale of I(x) = 2x: output pixel i sits at input x = 4i + 1.5, where the
    ramp is 8i + 3 (the symmetric triangle weights average a linear ramp to its centre)."""
    ramp = np.tile((2 * np.arange(128)).astype(np.uint8)[None, :, None], (128, 1, 3))
    out = resized_crop(ramp, (0, 0, 128, 128), (32, 32)).astype(int)
    expected = 8 * np.arange(32) + 3
    assert (out[:, 1:-1] == expected[None, 1:-1, None]).all()  # the border window is cut
    val = _to_u8(ValTransform(32, 32)(ramp))  # Resize(32) of a square, a centre crop of all
    assert np.abs(val[:, 1:-1] - expected[None, 1:-1, None]).max() < 1e-3


def test_val_preset_matches_numpy_resample(real_images) -> None:
    for im in real_images:
        w, h = im.size
        size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
        top, left = int(round((size[1] - 224) / 2)), int(round((size[0] - 224) / 2))
        ref = _numpy_resize(np.asarray(im), size)[top : top + 224, left : left + 224]
        ours = _to_u8(ValTransform(224, 256)(im))
        assert ours.shape == (224, 224, 3)
        diff = np.abs(ours - ref)
        assert diff.max() <= 1.0 + 1e-3 and (diff > 0.5).mean() < 0.01


def test_train_crop_matches_numpy_resample(real_images) -> None:
    rng = np.random.default_rng(0)
    for im in real_images:
        top, left, h, w = random_crop_box(im.height, im.width, rng)
        assert 0 <= top <= im.height - h and 0 <= left <= im.width - w
        crop = np.asarray(im)[top : top + h, left : left + w]
        ref = _numpy_resize(crop, (224, 224))
        ours = resized_crop(np.asarray(im), (top, left, h, w), (224, 224)).astype(int)
        diff = np.abs(ours - ref)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01
    torch.manual_seed(0)
    assert TrainTransform(32)(np.zeros((50, 80, 3), np.uint8)).shape == (3, 32, 32)
