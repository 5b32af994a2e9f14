"""Small containers passed between layers.

Shapes: N batch, K keypoints, H x W network input, P people, T tag dimension.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch


class PoseOutput(NamedTuple):
    """What :class:`hrpose.models.HigherHRNet` returns; indexable as ``out[0]``, ``out[1]``.

    Attributes:
        low: (N, 2K, H/4, W/4) heatmaps in channels 0..K-1, associative tags in K..2K-1.
        high: (N, K, H/2, W/2) heatmaps at the higher resolution.
    """

    low: torch.Tensor
    high: torch.Tensor


@dataclass(frozen=True)
class People:
    """Decoded people of one image, in the official decoder's order.

    Attributes:
        keypoints: (P, K, 3) float: x, y in original image pixels and the joint score.
        scores: (P,) person scores (mean joint score, as the official code).
        tags: (P, K, T) the tag value at each joint.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    tags: np.ndarray

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])

    @staticmethod
    def empty(num_joints: int = 17, tag_dim: int = 1) -> People:
        return People(
            np.zeros((0, num_joints, 3), np.float32),
            np.zeros((0,), np.float32),
            np.zeros((0, num_joints, tag_dim), np.float32),
        )
