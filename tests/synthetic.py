"""Structured synthetic HigherHRNet outputs: Gaussian peaks and per-person tags (tests, benchmarks).

The people are planted at known input-pixel positions, so decoded keypoints can be checked
against them; flip outputs are the mirrored maps with left/right joints swapped, as a network
with a perfect flip equivariance would give.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hrpose.decode import input_size_for
from hrpose.skeleton import COCO17


def _blobs(points: np.ndarray, values: np.ndarray, size_hw: tuple[int, int], sigma: float):
    """(K, H, W) maps: max over people of Gaussian peaks; ``points`` (P, K, 2) in map pixels."""
    h, w = size_hw
    ys, xs = np.arange(h)[:, None], np.arange(w)[None, :]
    k = points.shape[1]
    out = np.zeros((k, h, w), np.float32)
    for p in range(points.shape[0]):
        for j in range(k):
            if values[p, j] <= 0:
                continue
            x, y = points[p, j]
            g = values[p, j] * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
            out[j] = np.maximum(out[j], g)
    return out


def make_outputs(
    people_xy: np.ndarray,
    tags: Sequence[float],
    input_wh: tuple[int, int],
    visible: np.ndarray | None = None,
    flip_index: Sequence[int] = COCO17.flip_index,
    seed: int = 0,
    tag_noise: float = 0.05,
):
    """(outputs, flip_outputs) lists [low (1,2K,h/4,w/4), high (1,K,h/2,w/2)] for people planted
    at ``people_xy`` (P, K, 2) input pixels with tag ``tags[p]``."""
    rng = np.random.default_rng(seed)
    p, k = people_xy.shape[:2]
    vis = np.ones((p, k)) if visible is None else visible
    w, h = input_wh
    values = vis * rng.uniform(0.6, 0.95, (p, k))

    def render(xy: np.ndarray, val: np.ndarray):
        low_hw, high_hw = (h // 4, w // 4), (h // 2, w // 2)
        heat_low = _blobs(xy / 4 - 0.375, val, low_hw, 1.5)
        heat_high = _blobs(xy / 2 - 0.25, val, high_hw, 2.0)
        tag_maps = np.zeros((k, *low_hw), np.float32)
        owner = np.zeros((k, *low_hw), np.float32)
        for q in range(p):
            d = _blobs((xy / 4 - 0.375)[q : q + 1], np.ones((1, k)), low_hw, 3.0)
            better = d > owner
            noise = rng.normal(0, tag_noise, (k, *low_hw)).astype(np.float32)
            tag_maps = np.where(better, tags[q] + noise, tag_maps)
            owner = np.maximum(owner, d)
        low = np.concatenate([heat_low, tag_maps])[None]
        return [torch.from_numpy(low), torch.from_numpy(heat_high[None])]

    outputs = render(people_xy, values)
    mirrored = people_xy[:, list(flip_index)].copy()
    mirrored[..., 0] = w - 1 - mirrored[..., 0]
    flip_outputs = render(mirrored, values[:, list(flip_index)])
    return outputs, flip_outputs


def random_people(n: int, image_wh: tuple[int, int], input_size: int = 512, seed: int = 0):
    """``n`` people as random skeleton-shaped joint layouts inside the network input."""
    rng = np.random.default_rng(seed)
    (w, h), _, _ = input_size_for(image_wh, input_size)
    template = np.array(
        [[0, -60], [-6, -66], [6, -66], [-14, -62], [14, -62], [-22, -30], [22, -30],
         [-30, 0], [30, 0], [-32, 28], [32, 28], [-14, 30], [14, 30], [-16, 70], [16, 70],
         [-18, 110], [18, 110]], float)  # fmt: skip
    centers = np.stack([rng.uniform(40, w - 40, n), rng.uniform(80, h - 120, n)], 1)
    sizes = rng.uniform(0.5, 1.0, n)
    xy = centers[:, None] + template[None] * sizes[:, None, None]
    xy += rng.normal(0, 1.5, xy.shape)
    return np.clip(xy, 1, [w - 2, h - 2]), (w, h)
