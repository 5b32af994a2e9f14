"""Small containers passed between layers.

Shapes: N batch, K keypoints, H x W network input, P people, T tag dimension.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
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

    @property
    def num_joints(self) -> int:
        """K, read from the high-resolution output (K channels)."""
        return int(self.high.shape[1])

    @property
    def heatmaps(self) -> torch.Tensor:
        """(N, K, H/4, W/4) heatmaps of the low-resolution output."""
        return self.low[:, : self.num_joints]

    @property
    def tags(self) -> torch.Tensor:
        """(N, K, H/4, W/4) associative-embedding tags (one per joint)."""
        return self.low[:, self.num_joints :]

    @property
    def high_heatmaps(self) -> torch.Tensor:
        """(N, K, H/2, W/2) heatmaps of the high-resolution output."""
        return self.high

    @property
    def heatmaps_per_resolution(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The heatmaps at 1/4 and at 1/2, lowest resolution first (the losses' order)."""
        return self.heatmaps, self.high

    def check(self) -> PoseOutput:
        """This output, after checking the low output has 2K channels (heatmaps then tags)."""
        k = self.num_joints
        if self.low.dim() != 4 or self.high.dim() != 4 or self.low.shape[1] != 2 * k:
            raise ValueError(
                f"outputs of shapes {tuple(self.low.shape)} and {tuple(self.high.shape)}: a "
                f"{k}-joint HigherHRNet gives (N, {2 * k}, h, w) heatmaps+tags channels and "
                f"(N, {k}, 2h, 2w). Does the keypoint spec match the weights?"
            )
        return self


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


@dataclass(frozen=True)
class DecodeParams:
    """Decoder settings, the one definition (inference config, eval flags and the protocol
    record use these names); defaults are the official COCO test settings."""

    detection_threshold: float = 0.1
    """Keep joint candidates above this heatmap value (>= 0)."""
    tag_threshold: float = 1.0
    """Largest tag distance for joining a candidate to a person."""
    max_people: int = 30
    """Top-k candidates per joint."""
    nms_kernel: int = 5
    """Max-pool kernel for peak NMS."""
    adjust: bool = True
    """Quarter-pixel peak adjustment."""
    refine: bool = True
    """Fill missing joints from each person's mean tag."""
    flip: bool = True
    """Average with the horizontally flipped image."""
    scales: tuple[float, ...] = field(default=(1.0,))
    """Test scales (multi-scale test: e.g. (2.0, 1.0, 0.5)); must include 1.0."""
    use_detection_val: bool = True
    """Grouping cost includes the detection score (official)."""
    ignore_too_much: bool = False
    """Stop adding joints once max_people people exist (official option, off)."""

    def __post_init__(self) -> None:
        if self.nms_kernel < 1 or self.nms_kernel % 2 == 0:
            raise ValueError(f"nms_kernel must be a positive odd number, got {self.nms_kernel}")
        if self.max_people < 1:
            raise ValueError("max_people must be >= 1")
        if self.detection_threshold < 0:
            raise ValueError(
                f"detection_threshold must be >= 0 (heatmap values), got {self.detection_threshold}"
            )
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if not self.scales or 1.0 not in self.scales:
            raise ValueError(f"scales must include 1.0 (its tags are used), got {self.scales}")

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_kwargs(cls, **kwargs: object) -> DecodeParams:
        """Build from keyword arguments, naming unknown ones."""
        unknown = sorted(set(kwargs) - set(cls.names()))
        if unknown:
            raise TypeError(f"unknown decode parameter(s) {unknown}; known: {sorted(cls.names())}")
        return cls(**kwargs)  # type: ignore[arg-type]

    @classmethod
    def from_object(cls, obj: object) -> DecodeParams:
        """From any object with some of these attribute names (e.g. an inference config)."""
        return cls(**{n: getattr(obj, n) for n in cls.names() if hasattr(obj, n)})


@dataclass(frozen=True)
class InferenceSettings(DecodeParams):
    """What a model is run with: the network input size plus every decoder setting, the one
    definition behind the model record, the config's ``inference`` section and the CLI flags."""

    input_size: int = 512
    """Short-side network input size in pixels (multiple of 32)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.input_size < 32 or self.input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32, got {self.input_size}")

    def decode_params(self) -> DecodeParams:
        """The decoder's part of these settings."""
        return DecodeParams(**{n: getattr(self, n) for n in DecodeParams.names()})
