"""A stand-in network that emits HigherHRNet-shaped outputs for people placed by the test.

``PlantedNet`` is called by the real :class:`hrpose.predict.Predictor` like a HigherHRNet: a
(N, 3, H, W) input batch in, ``PoseOutput(low (N, 2K, H/4, W/4), high (N, K, H/2, W/2))`` out.
Instead of looking at the pixels it renders Gaussian peaks and per-person tags
(``synthetic.make_outputs``) for the people of the current frame, given in original image
pixels and mapped to the input with the decoder's own test-time geometry; each call moves on to
the next frame. So a test can move, cross, hide and jitter people and check what the Predictor,
decoder, tracker and smoother make of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from hrpose.decode import affine_transform, input_size_for
from hrpose.skeleton import COCO17
from hrpose.structures import PoseOutput
from synthetic import make_outputs

TEMPLATE = np.array(
    [[0, -60], [-6, -66], [6, -66], [-14, -62], [14, -62], [-22, -30], [22, -30],
     [-30, 0], [30, 0], [-32, 28], [32, 28], [-14, 30], [14, 30], [-16, 70], [16, 70],
     [-18, 110], [18, 110]], float)  # fmt: skip
"""(17, 2) a standing COCO-17 skeleton around its hips, in pixels (about 65 x 175)."""


def person_at(x: float, y: float, size: float = 1.0) -> np.ndarray:
    """(17, 2) the template skeleton centred at (x, y) image pixels, scaled by ``size``."""
    return np.array([x, y]) + TEMPLATE * size


class PlantedNet(nn.Module):
    """Emits one frame of planted people per call; ``frames[t]`` is (P_t, K, 2) image pixels.

    ``tags[t]`` (P_t,) gives each person's embedding (default: 3 apart, by position in the
    frame's list). Calls past the last frame raise, so a test notices an extra forward pass.
    """

    def __init__(
        self,
        frames: Sequence[np.ndarray],
        image_wh: tuple[int, int],
        input_size: int,
        tags: Sequence[Sequence[float]] | None = None,
        flip_index: Sequence[int] = COCO17.flip_index,
    ) -> None:
        super().__init__()
        self.frames = [np.asarray(f, np.float64).reshape(-1, len(flip_index), 2) for f in frames]
        self.tags = tags
        self.image_wh, self.input_size = image_wh, input_size
        self.flip_index = flip_index
        self.calls = 0

    def forward(self, batch: torch.Tensor) -> PoseOutput:
        if self.calls >= len(self.frames):
            raise IndexError(f"PlantedNet has {len(self.frames)} frames, asked for one more")
        t, self.calls = self.calls, self.calls + 1
        h, w = batch.shape[2:]
        (iw, ih), center, scale = input_size_for(self.image_wh, self.input_size)
        if (iw, ih) != (w, h):
            raise ValueError(f"PlantedNet expects {iw}x{ih} inputs (scale 1), got {w}x{h}")
        people = self.frames[t]
        mat = affine_transform(center, scale, (w, h))
        xy = people @ mat[:, :2].T + mat[:, 2]
        tags = self.tags[t] if self.tags is not None else 3.0 * np.arange(len(people))
        if len(people) == 0:
            k = len(self.flip_index)
            return PoseOutput(
                torch.zeros(batch.shape[0], 2 * k, h // 4, w // 4),
                torch.zeros(batch.shape[0], k, h // 2, w // 2),
            )
        outs, flips = make_outputs(xy, tags, (w, h), flip_index=self.flip_index, seed=t)
        if batch.shape[0] == 2:  # the Predictor's flip test: [image, mirrored image]
            outs = [torch.cat([o, f]) for o, f in zip(outs, flips, strict=True)]
        return PoseOutput(*outs)
