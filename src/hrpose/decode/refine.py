"""Quarter-pixel adjustment and refinement (missing joints from each person's mean tag).

Vectorised over people and joints (the official code loops over both in Python, which is where
it spends 95% of its post-processing time), and run on the heatmaps' device: the people arrays
(P, K) go there and back, the maps stay.

Refine's argmax over whole maps is searched without projecting them (:mod:`.argmax`).
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import Tensor

from hrpose.decode.aggregate import HeatSource, Pixels, TagSource
from hrpose.decode.argmax import tag_argmax


def _quarter(det: Pixels, hw: tuple[int, int], y: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """+-0.25 towards the higher neighbour along x and y (ties go to -0.25), float64;
    ``det(y, x)`` gives heatmap values of the joints in question."""
    h, w = hw
    right = det(y, (x + 1).clamp_max(w - 1)) > det(y, (x - 1).clamp_min(0))
    down = det((y + 1).clamp_max(h - 1), x) > det((y - 1).clamp_min(0), x)
    quarter = torch.tensor(0.25, dtype=torch.float64, device=y.device)
    return torch.where(right, quarter, -quarter), torch.where(down, quarter, -quarter)


def adjust(people: np.ndarray, heat: HeatSource) -> np.ndarray:
    """Move found joints (score > 0) a quarter pixel towards the higher neighbour, plus 0.5.

    ``people`` (P, K, >=3) x, y, score...; ``heat`` the final heatmaps (any device).
    """
    out = people.copy()
    p, k = np.nonzero(people[:, :, 2] > 0)
    if p.size == 0:
        return out
    x = people[p, k, 0].astype(np.float64)
    y = people[p, k, 1].astype(np.float64)
    dev = heat.device
    k_t = torch.from_numpy(k).to(dev)
    dx, dy = _quarter(
        partial(heat.at, k_t),
        heat.out_hw,
        torch.from_numpy(y.astype(np.int64)).to(dev),
        torch.from_numpy(x.astype(np.int64)).to(dev),
    )
    out[p, k, 0] = x + dx.cpu().numpy() + 0.5
    out[p, k, 1] = y + dy.cpu().numpy() + 0.5
    return out


def _mean_tags(people: np.ndarray, found: np.ndarray) -> np.ndarray:
    """(P, T) mean tag of each person's found joints as the reference computes it (float32,
    numpy's summation order), so argmax ties resolve identically."""
    tags = people[:, :, 3:].astype(np.float32)
    nan = np.full(tags.shape[2], np.nan, np.float32)
    return np.stack(
        [np.mean(t[f], axis=0) if f.any() else nan for t, f in zip(tags, found, strict=True)]
    )


def _place(
    out: np.ndarray, pi: np.ndarray, ki: np.ndarray, flat_idx: Tensor, heat: HeatSource
) -> None:
    """Write the refined joints: position (+0.5, quarter adjusted) and value where it is > 0."""
    h, w = heat.out_hw
    yy, xx = flat_idx // w, flat_idx % w
    det = partial(heat.at, torch.from_numpy(ki).to(flat_idx.device))
    val = det(yy, xx).cpu().numpy()
    dx, dy = _quarter(det, (h, w), yy, xx)
    fill = val > 0
    p, k = pi[fill], ki[fill]
    out[p, k, 0] = (xx.double() + 0.5 + dx).cpu().numpy()[fill]
    out[p, k, 1] = (yy.double() + 0.5 + dy).cpu().numpy()[fill]
    out[p, k, 2] = val[fill]


def refine(
    people: np.ndarray,
    heat: HeatSource,
    tags: TagSource,
    tiled: bool | None = None,
    chunk_pixels: int = 1 << 24,
) -> np.ndarray:
    """Fill each person's missing joints at ``argmax(det - round(|tag - person mean tag|))``.

    ``people`` (P, K, 3 + T) with the tags at the found joints, ``heat`` and ``tags`` the final
    maps. A missing joint (score 0) takes the position (+0.5 and the quarter adjustment) and
    heatmap value there when that value is > 0, as the official ``refine``. ``tiled``: the
    search (:mod:`.argmax`; default) or, when False, full planes for every joint (the
    reference).
    """
    out = people.copy()
    found = people[:, :, 2] > 0
    pi, ki = np.nonzero(~found)
    if pi.size == 0:
        return out
    dev = heat.device
    means = torch.from_numpy(_mean_tags(people, found)).to(dev)[torch.from_numpy(pi).to(dev)]
    joints = torch.from_numpy(ki).to(dev)
    # The search reads the same values as the full planes (point formula or, for maps it does
    # not reproduce, the full projection itself), so it is exact either way.
    flat_idx = tag_argmax(heat, tags, joints, means, tiled is not False, chunk_pixels)
    _place(out, pi, ki, flat_idx, heat)
    return out
