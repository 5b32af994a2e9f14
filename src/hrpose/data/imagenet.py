"""ImageNet-layout class folders (``root/<split>/<wnid>/*.JPEG``) and the official presets.

Train: random-resized crop (area 8%-100%, ratio 3/4-4/3) to 224 and a horizontal flip; val:
short side to 256 then a centre crop of 224; both normalised with the ImageNet mean/std.
Implemented with opencv and numpy (no torchvision).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from hrpose.data.coco import DatasetError, read_image_rgb
from hrpose.data.images import IMAGE_SUFFIXES
from hrpose.normalization import normalize_image


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
        image = read_image_rgb(path)
        if self.transform is not None:
            image = self.transform(image)
        return image, label


def class_names(root: str | Path, classes: list[str]) -> list[str]:
    """Names from ``root/labels.json`` (written by prepare), else the folder names."""
    path = Path(root) / "labels.json"
    names = json.loads(path.read_text()) if path.is_file() else {}
    return [names.get(c, c) for c in classes]


@dataclass
class TrainTransform:
    """Random-resized crop + flip (official HRNet-Image-Classification training preset)."""

    size: int = 224
    min_area: float = 0.08
    flip: float = 0.5

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
        h, w = image.shape[:2]
        crop = None
        for _ in range(10):
            area = h * w * rng.uniform(self.min_area, 1.0)
            ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
            cw, ch = round(math.sqrt(area * ratio)), round(math.sqrt(area / ratio))
            if 0 < cw <= w and 0 < ch <= h:
                x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
                crop = image[y : y + ch, x : x + cw]
                break
        if crop is None:  # centre crop fallback, as torchvision
            s = min(h, w)
            crop = image[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        out = cv2.resize(crop, (self.size, self.size), interpolation=cv2.INTER_LINEAR)
        if rng.random() < self.flip:
            out = out[:, ::-1]
        return normalize_image(out)


@dataclass
class ValTransform:
    """Short side to ``resize`` then a centre ``size`` crop."""

    size: int = 224
    resize: int = 256

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        h, w = image.shape[:2]
        s = self.resize / min(h, w)
        nh, nw = max(self.size, round(h * s)), max(self.size, round(w * s))
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        y, x = (nh - self.size) // 2, (nw - self.size) // 2
        return normalize_image(image[y : y + self.size, x : x + self.size])
