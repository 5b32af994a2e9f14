"""ImageNet presets against a Pillow reference written from torchvision's documented behaviour."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hrpose.data.imagenet import ValTransform, random_crop_box, read_pil_rgb, resized_crop
from hrpose.normalization import IMAGENET_MEAN, IMAGENET_STD


def _to_u8(x: torch.Tensor) -> np.ndarray:
    """Undo the normalisation: (3, H, W) float -> (H, W, 3) grey levels."""
    mean, std = np.array(IMAGENET_MEAN), np.array(IMAGENET_STD)
    return (x.numpy().transpose(1, 2, 0) * std + mean) * 255


def _reference_val(im: Image.Image) -> np.ndarray:
    """Resize(256): short side 256, long side int(256 * long / short); CenterCrop(224) at
    int(round((side - 224) / 2))."""
    w, h = im.size
    size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    r = im.resize(size, Image.BILINEAR)
    top, left = int(round((r.height - 224) / 2)), int(round((r.width - 224) / 2))
    return np.asarray(r.crop((left, top, left + 224, top + 224))).astype(np.float64)


@pytest.fixture(scope="module")
def real_images(shared_data):
    paths = sorted((shared_data / "examples").glob("*.jp*g"))
    paths += sorted((shared_data / "coco-mini" / "images").glob("*.jpg"))
    assert len(paths) >= 8
    return [read_pil_rgb(p) for p in paths]


def test_val_preset_matches_pillow_reference(real_images) -> None:
    for im in real_images:
        ours = _to_u8(ValTransform(224, 256)(im))
        assert ours.shape == (224, 224, 3)
        assert np.abs(ours - _reference_val(im)).max() <= 1.0


def test_train_crop_matches_pillow_reference(real_images) -> None:
    rng = np.random.default_rng(0)
    for im in real_images:
        top, left, h, w = random_crop_box(im.height, im.width, rng)
        assert 0 <= top <= im.height - h and 0 <= left <= im.width - w
        ref = np.asarray(im.crop((left, top, left + w, top + h)).resize((224, 224), Image.BILINEAR))
        ours = resized_crop(np.asarray(im), (top, left, h, w), (224, 224))
        assert np.abs(ours.astype(int) - ref.astype(int)).max() <= 1


def test_train_crop_fallback_is_the_centred_ratio_box() -> None:
    """No try fits (min_area 1 on a 10:1 strip): the centred box of ratio 4/3, full height."""
    rng = np.random.default_rng(0)
    assert random_crop_box(30, 300, rng, min_area=1.0) == (0, 130, 30, 40)
    assert random_crop_box(300, 30, rng, min_area=1.0) == (130, 0, 40, 30)
