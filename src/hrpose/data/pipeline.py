"""Training sample encoding: augment a PoseSample, then build tensors and targets per resolution."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch

from hrpose.affine import Transform, affine_transform, transform_points
from hrpose.data.augment import (
    AugmentParams,
    Draw,
    apply,
    draw_params,
    flip_joints,
    mask_bytes,
    warped_mask,
)
from hrpose.data.coco import PoseSample
from hrpose.data.targets import heatmaps, joint_indices
from hrpose.normalization import MEAN_RGB_U8


@dataclass
class PoseTrainTransform:
    """PoseSample -> (image, [heatmaps], [masks], [joint indices]), one entry per resolution.

    The image is the warped (H, W, 3) uint8 RGB tensor; the training step normalises whole
    batches on its device (``normalize_batch``).

    Random draws come from a numpy Generator seeded from torch's RNG, which DataLoader seeds per
    worker from the main process: runs are reproducible and resume exactly.
    """

    flip_index: Sequence[int]
    input_size: int = 512
    output_sizes: Sequence[int] = (128, 256)
    sigma: float = 2.0
    max_people: int = 30
    params: AugmentParams | None = field(default_factory=AugmentParams)  # None: no augmentation
    mirror: float = 0.5  # probability of a mirror in the test-geometry mode (params=None)

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
                sample.image,
                sample.mask,
                sample.keypoints,
                d,
                self.input_size,
                self.output_sizes,
                self.flip_index,
            )
            sizes = list(self.output_sizes)
        pairs = list(zip(joints, sizes, strict=True))
        hms = [torch.from_numpy(heatmaps(j, r, self.sigma)) for j, r in pairs]
        idx = [torch.from_numpy(joint_indices(j, r, self.max_people)) for j, r in pairs]
        return torch.from_numpy(image), hms, [torch.from_numpy(m) for m in masks], idx

    def _test_geometry(self, sample: PoseSample, rng: np.random.Generator) -> tuple:
        """No augmentation: the image as the test path sees it (short side to the input size,
        long side to a multiple of 64), mirrored with probability ``mirror``. Sizes differ per
        image; ``pad_collate`` batches them. For tiny overfit runs evaluated at that geometry.
        """
        h, w = sample.image.shape[:2]
        tf = Transform.for_image((w, h), self.input_size)
        (iw, ih), center, scale = tf.size, tf.center, tf.scale
        image = cv2.warpAffine(sample.image, tf.matrix, tf.size)
        mask_u8 = mask_bytes(sample.mask)
        flip = bool(rng.random() < self.mirror)
        masks, joints, sizes = [], [], []
        for stride in (4, 2)[: len(self.output_sizes)]:
            size = (iw // stride, ih // stride)
            mat = affine_transform(center, scale, size)
            m = warped_mask(mask_u8, mat, size)
            j = transform_points(sample.keypoints, mat)
            if flip:
                m, j = cv2.flip(m, 1), flip_joints(j, self.flip_index, size[0])
            masks.append(m)
            joints.append(j)
            sizes.append(size)
        if flip:
            image = cv2.flip(image, 1)
        return image, masks, joints, sizes


def _reindex(idx: torch.Tensor, old_hw: tuple[int, int], new_hw: tuple[int, int]) -> torch.Tensor:
    """Flat ``k*H*W + y*W + x`` joint indices re-expressed for maps padded to ``new_hw``."""
    if old_hw == new_hw:
        return idx
    (h, w), (nh, nw) = old_hw, new_hw
    flat = idx[..., 0]
    k, rest = flat // (h * w), flat % (h * w)
    y, x = rest // w, rest % w
    out = idx.clone()
    out[..., 0] = torch.where(idx[..., 1] > 0, k * nh * nw + y * nw + x, torch.zeros_like(flat))
    return out


def _pad_stack(tensors: Sequence[torch.Tensor], h: int, w: int) -> torch.Tensor:
    """Zero-pad each tensor's last two dims to (h, w) at the bottom/right and stack them."""
    pad = torch.nn.functional.pad
    return torch.stack([pad(t, (0, w - t.shape[-1], 0, h - t.shape[-2])) for t in tensors])


def pad_collate(samples: Sequence[tuple]) -> tuple:
    """Batch samples of different sizes (the test-geometry mode) by padding at the bottom/right.

    Images pad with the ImageNet mean colour (about 0 after normalisation), heatmaps with 0,
    masks with 0 (no loss there), and joint indices are re-expressed for the padded maps.
    Batches of equal-sized samples come out exactly as the default collate makes them. Batches
    larger than one keep BatchNorm's training statistics close to its running ones, which
    single-image batches do not; but padding is context evaluation never shows (a tiny overfit
    learned it: 3-5x the heatmap loss on the same images unpadded), so prefer an input size that
    gives the images one canvas (the demo's 192 for coco-mini).
    """
    images, hms, masks, idxs = zip(*samples, strict=True)
    h, w = max(x.shape[0] for x in images), max(x.shape[1] for x in images)
    image = torch.empty((len(images), h, w, 3), dtype=torch.uint8)
    if any(x.shape[:2] != (h, w) for x in images):
        image[:] = torch.tensor(MEAN_RGB_U8, dtype=torch.uint8)
    for b, x in enumerate(images):
        image[b, : x.shape[0], : x.shape[1]] = x
    out_h, out_m, out_j = [], [], []
    for r in range(len(hms[0])):
        rh = max(s[r].shape[-2] for s in hms)
        rw = max(s[r].shape[-1] for s in hms)
        out_h.append(_pad_stack([s[r] for s in hms], rh, rw))
        out_m.append(_pad_stack([m[r] for m in masks], rh, rw))
        reindexed = [
            _reindex(j[r], tuple(s[r].shape[-2:]), (rh, rw)) for j, s in zip(idxs, hms, strict=True)
        ]
        out_j.append(torch.stack(reindexed))
    return image, out_h, out_m, out_j
