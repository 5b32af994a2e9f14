"""Training sample encoding: augment a PoseSample, then build tensors and targets per resolution."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from hrpose.data.augment import (
    AugmentParams,
    Draw,
    apply,
    draw_params,
    flip_joints,
    transform_points,
)
from hrpose.data.coco import PoseSample
from hrpose.data.targets import heatmaps, joint_indices
from hrpose.decode.preprocess import affine_transform, input_size_for

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32, ImageNet mean/std (official ToTensor+Normalize)."""
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x - mean) / std


@dataclass
class PoseTrainTransform:
    """PoseSample -> (image, [heatmaps], [masks], [joint indices]), one entry per resolution.

    Random draws come from a numpy Generator seeded from torch's RNG, which DataLoader seeds per
    worker from the main process: runs are reproducible and resume exactly.
    """

    flip_index: Sequence[int]
    input_size: int = 512
    output_sizes: Sequence[int] = (128, 256)
    sigma: float = 2.0
    max_people: int = 30
    params: AugmentParams | None = field(default_factory=AugmentParams)  # None: no augmentation

    def draw(self, sample: PoseSample, rng: np.random.Generator) -> Draw:
        h, w = sample.image.shape[:2]
        assert self.params is not None
        return draw_params((w, h), self.params, rng)

    def __call__(self, sample: PoseSample) -> tuple:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,))))
        if self.params is None:
            image, masks, joints, sizes = self._test_geometry(sample, rng)
        else:
            d = self.draw(sample, rng)
            image, masks, joints = apply(
                sample.image, sample.mask, sample.keypoints, d, self.input_size,
                self.output_sizes, self.flip_index,
            )  # fmt: skip
            sizes = list(self.output_sizes)
        pairs = list(zip(joints, sizes, strict=True))
        hms = [torch.from_numpy(heatmaps(j, r, self.sigma)) for j, r in pairs]
        idx = [torch.from_numpy(joint_indices(j, r, self.max_people)) for j, r in pairs]
        return normalize_image(image), hms, [torch.from_numpy(m) for m in masks], idx

    def _test_geometry(self, sample: PoseSample, rng: np.random.Generator) -> tuple:
        """No augmentation: the image as the test path sees it (short side to the input size,
        long side to a multiple of 64), mirrored with probability 0.5. Sizes differ per image,
        so batches hold one image. For tiny overfit runs whose evaluation uses the same geometry.
        """
        h, w = sample.image.shape[:2]
        (iw, ih), center, scale = input_size_for((w, h), self.input_size)
        image = cv2.warpAffine(sample.image, affine_transform(center, scale, (iw, ih)), (iw, ih))
        mask_u8 = (np.asarray(sample.mask, np.float64) * 255).astype(np.uint8)
        flip = bool(rng.random() < 0.5)
        masks, joints, sizes = [], [], []
        for stride in (4, 2)[: len(self.output_sizes)]:
            size = (iw // stride, ih // stride)
            mat = affine_transform(center, scale, size)
            m = (cv2.warpAffine(mask_u8, mat, size) / 255 > 0.5).astype(np.float32)
            j = transform_points(sample.keypoints, mat)
            if flip:
                m, j = np.ascontiguousarray(m[:, ::-1]), flip_joints(j, self.flip_index, size[0])
            masks.append(m)
            joints.append(j)
            sizes.append(size)
        if flip:
            image = np.ascontiguousarray(image[:, ::-1])
        return image, masks, joints, sizes
