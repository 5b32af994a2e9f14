"""ImageNet-layout class folders (``root/<split>/<wnid>/*.JPEG``) and the official presets.

The official HRNet-Image-Classification uses torchvision on PIL images: train
``RandomResizedCrop(224)`` (area 8%-100%, ratio 3/4-4/3) + ``RandomHorizontalFlip``, val
``Resize(256)`` + ``CenterCrop(224)``, both normalised with the ImageNet mean/std. These presets
repeat torchvision's arithmetic (sizes, rounding, crop offsets) and resize with Pillow's
antialiased bilinear filter, which is what torchvision runs for PIL images; images are decoded
with Pillow too, as torchvision's ImageFolder does (EXIF orientation ignored, as everywhere:
:mod:`hrpose.data.images`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hrpose.data.coco import DatasetError, UnreadableSample
from hrpose.data.images import IMAGE_SUFFIXES, ImageReadError, read_image_pil
from hrpose.normalization import normalize_image

Box = tuple[int, int, int, int]  # (top, left, height, width) in pixels, torchvision's order


def read_pil_rgb(path: str | Path) -> Image.Image:
    """:func:`hrpose.data.images.read_image_pil` (torchvision ImageFolder's Pillow loader, EXIF
    orientation ignored) with its problems raised as :class:`UnreadableSample`."""
    try:
        return read_image_pil(path)
    except ImageReadError as e:
        raise UnreadableSample(f"image file missing, unreadable or corrupt: {e}", path) from None


class ImageFolder:
    """(image, class index) samples from ``root/<class>/*``; classes sorted by folder name."""

    def __init__(self, root: str | Path, transform=None) -> None:
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(
                f"image folder {root} not found. Expected root/<split>/<class>/*.JPEG; build it "
                "with: hrpose prepare imagenet --root <root> --archive <kaggle zip>"
            )
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.samples = [
            (f, i)
            for i, c in enumerate(self.classes)
            for f in sorted((root / c).iterdir())
            if f.suffix.lower() in IMAGE_SUFFIXES
        ]
        if not self.samples:
            raise DatasetError(f"no images in {root}/<class>/ (expected ImageNet class folders)")
        self.root, self.transform = root, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        image = read_pil_rgb(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def class_names(root: str | Path, classes: list[str]) -> list[str]:
    """Names from ``root/labels.json`` (written by prepare), else the folder names."""
    path = Path(root) / "labels.json"
    names = json.loads(path.read_text()) if path.is_file() else {}
    return [names.get(c, c) for c in classes]


def _pil(image: Image.Image | np.ndarray) -> Image.Image:
    return image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))


def resized_crop(image: Image.Image | np.ndarray, box: Box, size: tuple[int, int]) -> np.ndarray:
    """Crop ``box`` then resize to ``size`` (w, h) with Pillow's antialiased bilinear filter."""
    top, left, h, w = box
    crop = _pil(image).crop((left, top, left + w, top + h))
    return np.asarray(crop.resize(size, Image.BILINEAR))


def random_crop_box(
    height: int, width: int, rng: np.random.Generator, min_area: float = 0.08
) -> Box:
    """RandomResizedCrop's box: 10 tries at a random area and log-uniform aspect ratio (3/4-4/3);
    when none fits, the largest centred box whose ratio is within 3/4-4/3 (torchvision's rule)."""
    area = height * width
    lo, hi = math.log(3 / 4), math.log(4 / 3)
    for _ in range(10):
        target = area * rng.uniform(min_area, 1.0)
        ratio = math.exp(rng.uniform(lo, hi))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    in_ratio = width / height
    if in_ratio < 3 / 4:
        w, h = width, round(width / (3 / 4))
    elif in_ratio > 4 / 3:
        h, w = height, round(height * (4 / 3))
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def center_crop_box(height: int, width: int, size: int) -> Box:
    """CenterCrop's box: offsets ``int(round((side - size) / 2))`` (Python rounds half to even)."""
    return int(round((height - size) / 2.0)), int(round((width - size) / 2.0)), size, size


def short_side_size(height: int, width: int, short: int) -> tuple[int, int]:
    """Resize(short)'s output (w, h): the short side to ``short``, the long side truncated."""
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


@dataclass
class TrainTransform:
    """RandomResizedCrop + horizontal flip (official HRNet-Image-Classification training)."""

    size: int = 224
    min_area: float = 0.08
    flip: float = 0.5

    def __call__(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        # One draw from torch's generator seeds the rest: the loader seeds it per sample.
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
        image = _pil(image)
        box = random_crop_box(image.height, image.width, rng, self.min_area)
        out = resized_crop(image, box, (self.size, self.size))
        if rng.random() < self.flip:
            out = out[:, ::-1]
        return normalize_image(np.ascontiguousarray(out))


@dataclass
class ValTransform:
    """Resize the short side to ``resize`` (antialiased bilinear), then a centre ``size`` crop."""

    size: int = 224
    resize: int = 256

    def __call__(self, image: Image.Image | np.ndarray) -> torch.Tensor:
        image = _pil(image)
        w, h = short_side_size(image.height, image.width, self.resize)
        resized = image.resize((w, h), Image.BILINEAR)
        box = center_crop_box(h, w, self.size)
        top, left = box[:2]
        crop = resized.crop((left, top, left + self.size, top + self.size))
        return normalize_image(np.asarray(crop))
