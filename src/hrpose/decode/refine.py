"""Quarter-pixel adjustment and refinement (missing joints from each person's mean tag).

Vectorised over people and joints; the official code loops over both in Python, which is where
it spends 95% of its post-processing time.
"""

from __future__ import annotations

import numpy as np
import torch


def _quarter(det: np.ndarray, k: np.ndarray, y: np.ndarray, x: np.ndarray) -> tuple:
    """+-0.25 towards the higher neighbour along x and y (ties go to -0.25)."""
    h, w = det.shape[1:]
    right = det[k, y, np.minimum(x + 1, w - 1)] > det[k, y, np.maximum(x - 1, 0)]
    down = det[k, np.minimum(y + 1, h - 1), x] > det[k, np.maximum(y - 1, 0), x]
    return np.where(right, 0.25, -0.25), np.where(down, 0.25, -0.25)


def adjust(people: np.ndarray, det: np.ndarray) -> np.ndarray:
    """Move found joints (score > 0) a quarter pixel towards the higher neighbour, plus 0.5.

    ``people`` (P, K, >=3) x, y, score...; ``det`` (K, H, W) final heatmaps.
    """
    out = people.copy()
    p, k = np.nonzero(people[:, :, 2] > 0)
    if p.size == 0:
        return out
    x = people[p, k, 0].astype(np.float64)
    y = people[p, k, 1].astype(np.float64)
    dx, dy = _quarter(det, k, y.astype(np.int64), x.astype(np.int64))
    out[p, k, 0] = x + dx + 0.5
    out[p, k, 1] = y + dy + 0.5
    return out


def _scores(det: torch.Tensor, planes: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """(n, S) ``det - round(|tag - mean|)`` in float32, operation for operation as the official
    numpy code; ``det`` (S,), ``planes`` (T, S), ``means`` (n, T)."""
    d2 = (planes[0][None] - means[:, :1]).square_()
    for t in range(1, planes.shape[0]):
        d2 += (planes[t][None] - means[:, t : t + 1]).square_()
    return torch.sub(det[None], d2.sqrt_().round_(), out=d2)


def refine(
    people: np.ndarray,
    det: np.ndarray,
    planes: np.ndarray,
    chunk_pixels: int = 1 << 24,
    top_pixels: int = 4096,
) -> np.ndarray:
    """Fill each person's missing joints at ``argmax(det - round(|tag - person mean tag|))``.

    ``people`` (P, K, >=3), ``det`` (K, H, W), ``planes`` (K, T, H, W) tags. A missing joint
    (score 0) takes the position (+0.5 and the quarter adjustment) and heatmap value there when
    that value is > 0, as the official ``refine``.
    """
    out = people.copy()
    num_people, num_joints = people.shape[:2]
    if num_people == 0:
        return out
    h, w = det.shape[1:]
    found = people[:, :, 2] > 0
    # Mean tag of each person's found joints, as the reference computes it (float32, numpy's
    # summation order), so argmax ties resolve identically; P <= a few dozen small means.
    xs = people[:, :, 0].astype(np.int32)
    ys = people[:, :, 1].astype(np.int32)
    means = np.stack(
        [
            np.mean(planes[found[i], :, ys[i, found[i]], xs[i, found[i]]], axis=0)
            if found[i].any()
            else np.full(planes.shape[1], np.nan, np.float32)
            for i in range(num_people)
        ]
    )
    pi, ki = np.nonzero(~found)
    if pi.size == 0:
        return out
    det_t = torch.from_numpy(np.ascontiguousarray(det)).reshape(num_joints, -1)
    tag_t = torch.from_numpy(np.ascontiguousarray(planes)).reshape(num_joints, planes.shape[1], -1)
    mean_t = torch.from_numpy(means.astype(np.float32))
    flat_idx = np.empty(pi.size, np.int64)
    step = max(1, chunk_pixels // (h * w))
    top = min(top_pixels, h * w)
    # One joint at a time, all people missing it at once. score = det - round(dist) <= det, so
    # when the best score among the `top` highest-heatmap pixels beats every other pixel's heatmap
    # value, it is the argmax over the whole map; only the remaining people need the full map.
    joints = np.unique(ki)
    top_vals, top_idxs = torch.topk(det_t[torch.from_numpy(joints)], top, dim=1)
    order = torch.argsort(top_idxs, dim=1)  # flat order, so ties resolve to the first pixel
    top_vals, top_idxs = top_vals.gather(1, order), top_idxs.gather(1, order)
    for k, top_val, top_idx in zip(joints, top_vals, top_idxs, strict=True):
        rows = np.flatnonzero(ki == k)
        bound = float(torch.min(top_val)) if top < h * w else -np.inf
        m = mean_t[torch.from_numpy(pi[rows])]
        score = _scores(det_t[k][top_idx], tag_t[k][:, top_idx], m)
        best, arg = torch.max(score, dim=1)
        flat_idx[rows] = top_idx[arg].numpy()
        rest = rows[(best <= bound).numpy()]
        for s in range(0, rest.size, step):  # bounded memory: `step` full maps at a time
            sel = rest[s : s + step]
            score = _scores(det_t[k], tag_t[k], mean_t[torch.from_numpy(pi[sel])])
            flat_idx[sel] = torch.argmax(score, dim=1).numpy()
    yy, xx = np.divmod(flat_idx, w)
    val = det[ki, yy, xx]
    dx, dy = _quarter(det, ki, yy, xx)
    fill = val > 0
    out[pi[fill], ki[fill], 0] = (xx + 0.5 + dx)[fill]
    out[pi[fill], ki[fill], 1] = (yy + 0.5 + dy)[fill]
    out[pi[fill], ki[fill], 2] = val[fill]
    return out
