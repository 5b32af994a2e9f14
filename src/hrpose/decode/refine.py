"""Quarter-pixel adjustment and refinement (missing joints from each person's mean tag).

Vectorised over people and joints (the official code loops over both in Python, which is where
it spends 95% of its post-processing time), and run on the heatmaps' device: the people arrays
(P, K) go there and back, the maps stay.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from hrpose.decode.aggregate import TagSource


def _quarter(det: Tensor, k: Tensor, y: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
    """+-0.25 towards the higher neighbour along x and y (ties go to -0.25), float64."""
    h, w = det.shape[1:]
    right = det[k, y, (x + 1).clamp_max(w - 1)] > det[k, y, (x - 1).clamp_min(0)]
    down = det[k, (y + 1).clamp_max(h - 1), x] > det[k, (y - 1).clamp_min(0), x]
    quarter = torch.tensor(0.25, dtype=torch.float64, device=det.device)
    return torch.where(right, quarter, -quarter), torch.where(down, quarter, -quarter)


def adjust(people: np.ndarray, det: Tensor) -> np.ndarray:
    """Move found joints (score > 0) a quarter pixel towards the higher neighbour, plus 0.5.

    ``people`` (P, K, >=3) x, y, score...; ``det`` (K, H, W) final heatmaps (any device).
    """
    out = people.copy()
    p, k = np.nonzero(people[:, :, 2] > 0)
    if p.size == 0:
        return out
    x = people[p, k, 0].astype(np.float64)
    y = people[p, k, 1].astype(np.float64)
    dev = det.device
    dx, dy = _quarter(
        det,
        torch.from_numpy(k).to(dev),
        torch.from_numpy(y.astype(np.int64)).to(dev),
        torch.from_numpy(x.astype(np.int64)).to(dev),
    )
    out[p, k, 0] = x + dx.cpu().numpy() + 0.5
    out[p, k, 1] = y + dy.cpu().numpy() + 0.5
    return out


def _scores(det: Tensor, planes: Tensor, means: Tensor) -> Tensor:
    """(n, S) ``det - round(|tag - mean|)`` in float32, operation for operation as the official
    numpy code; ``det`` (S,), ``planes`` (T, S), ``means`` (n, T)."""
    d2 = (planes[0][None] - means[:, :1]).square_()
    for t in range(1, planes.shape[0]):
        d2 += (planes[t][None] - means[:, t : t + 1]).square_()
    return torch.sub(det[None], d2.sqrt_().round_(), out=d2)


def refine(
    people: np.ndarray,
    det: Tensor,
    tags: TagSource,
    chunk_pixels: int = 1 << 24,
    top_pixels: int = 4096,
) -> np.ndarray:
    """Fill each person's missing joints at ``argmax(det - round(|tag - person mean tag|))``.

    ``people`` (P, K, 3 + T) with the tags at the found joints, ``det`` (K, H, W) heatmaps,
    ``tags`` the tag maps. A missing joint (score 0) takes the position (+0.5 and the quarter
    adjustment) and heatmap value there when that value is > 0, as the official ``refine``.
    """
    out = people.copy()
    num_people, num_joints = people.shape[:2]
    found = people[:, :, 2] > 0
    pi, ki = np.nonzero(~found)
    if num_people == 0 or pi.size == 0:
        return out
    h, w = det.shape[1:]
    dev = det.device
    # Mean tag of each person's found joints as the reference computes it (float32, numpy's
    # summation order), so argmax ties resolve identically; the people's tags are the values
    # at their joints' pixels.
    person_tags = people[:, :, 3:].astype(np.float32)
    means = np.stack(
        [
            np.mean(person_tags[i, found[i]], axis=0)
            if found[i].any()
            else np.full(person_tags.shape[2], np.nan, np.float32)
            for i in range(num_people)
        ]
    )
    det_flat = det.reshape(num_joints, -1)
    mean_t = torch.from_numpy(means).to(dev)
    pi_t = torch.from_numpy(pi).to(dev)
    flat_idx = torch.empty(pi.size, dtype=torch.int64, device=dev)
    step = max(1, chunk_pixels // (h * w))
    top = min(top_pixels, h * w)
    # One joint at a time, all people missing it at once. score = det - round(dist) <= det, so
    # when the best score among the `top` highest-heatmap pixels beats every other pixel's heatmap
    # value, it is the argmax over the whole map; only the remaining people need the full map.
    joints = np.unique(ki)
    top_vals, top_idxs = torch.topk(det_flat[torch.from_numpy(joints).to(dev)], top, dim=1)
    order = torch.argsort(top_idxs, dim=1)  # flat order, so ties resolve to the first pixel
    top_vals, top_idxs = top_vals.gather(1, order), top_idxs.gather(1, order)
    jj = torch.from_numpy(joints).to(dev)[:, None].expand_as(top_idxs).reshape(-1)
    top_tags = tags.at(jj, (top_idxs // w).reshape(-1), (top_idxs % w).reshape(-1))
    top_tags = top_tags.reshape(len(joints), top, -1).permute(0, 2, 1)  # (J, T, top)
    bounds = top_vals.min(dim=1).values if top < h * w else None
    ki_t = torch.from_numpy(ki).to(dev)
    for n, k in enumerate(joints.tolist()):
        rows = torch.nonzero(ki_t == k)[:, 0]
        m = mean_t[pi_t[rows]]
        best, arg = torch.max(_scores(top_vals[n], top_tags[n], m), dim=1)
        flat_idx[rows] = top_idxs[n][arg]
        if bounds is None:
            continue
        rest = rows[best <= bounds[n]]
        if rest.numel() == 0:
            continue
        planes = tags.planes(k).float().reshape(tags.dim, -1)
        for s in range(0, rest.numel(), step):  # bounded memory: `step` full maps at a time
            sel = rest[s : s + step]
            score = _scores(det_flat[k], planes, mean_t[pi_t[sel]])
            flat_idx[sel] = torch.argmax(score, dim=1)
    yy, xx = flat_idx // w, flat_idx % w
    val = det_flat[ki_t, flat_idx]
    dx, dy = _quarter(det, ki_t, yy, xx)
    xs = (xx.double() + 0.5 + dx).cpu().numpy()
    ys = (yy.double() + 0.5 + dy).cpu().numpy()
    val_np = val.cpu().numpy()
    fill = val_np > 0
    out[pi[fill], ki[fill], 0] = xs[fill]
    out[pi[fill], ki[fill], 1] = ys[fill]
    out[pi[fill], ki[fill], 2] = val_np[fill]
    return out
