"""Quarter-pixel adjustment and refinement (missing joints from each person's mean tag).

Vectorised over people and joints (the official code loops over both in Python, which is where
it spends 95% of its post-processing time), and run on the heatmaps' device: the people arrays
(P, K) go there and back, the maps stay.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import Tensor

from hrpose.decode.aggregate import HeatSource, Pixels, TagSource
from hrpose.decode.peaks import DENSE_SHARE


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


def _scores(det: Tensor, planes: Tensor, means: Tensor) -> Tensor:
    """(n, S) ``det - round(|tag - mean|)`` in float32, operation for operation as the official
    numpy code; ``det`` (S,), ``planes`` (T, S), ``means`` (n, T)."""
    d2 = (planes[0][None] - means[:, :1]).square_()
    for t in range(1, planes.shape[0]):
        d2 += (planes[t][None] - means[:, t : t + 1]).square_()
    return torch.sub(det[None], d2.sqrt_().round_(), out=d2)


def refine(
    people: np.ndarray,
    heat: HeatSource,
    tags: TagSource,
    chunk_pixels: int = 1 << 24,
    fractions: tuple[float, ...] = (0.5, 0.1, 0.02),
) -> np.ndarray:
    """Fill each person's missing joints at ``argmax(det - round(|tag - person mean tag|))``.

    ``people`` (P, K, 3 + T) with the tags at the found joints, ``heat`` and ``tags`` the final
    maps. A missing joint (score 0) takes the position (+0.5 and the quarter adjustment) and
    heatmap value there when that value is > 0, as the official ``refine``.
    """
    out = people.copy()
    num_people, num_joints = people.shape[:2]
    found = people[:, :, 2] > 0
    pi, ki = np.nonzero(~found)
    if num_people == 0 or pi.size == 0:
        return out
    h, w = heat.out_hw
    dev = heat.device
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
    mean_t = torch.from_numpy(means).to(dev)
    pi_t = torch.from_numpy(pi).to(dev)
    flat_idx = torch.empty(pi.size, dtype=torch.int64, device=dev)
    step = max(1, chunk_pixels // (h * w))
    joints = np.unique(ki)  # one joint at a time, all people missing it at once
    ki_t = torch.from_numpy(ki).to(dev)
    for k in joints.tolist():
        rows = torch.nonzero(ki_t == k)[:, 0]
        # score = det - round(dist) <= det: the best score among the pixels whose heatmap value
        # exceeds v, when above v, is the argmax over the whole map. Those pixels lie in the
        # tiles that can exceed v, so only they are projected; the rest need the full maps.
        peak = sum(float(m[k].max()) for m in heat.maps) / len(heat.maps)
        plane: Tensor | None = None
        tplanes: Tensor | None = None
        for v in (fraction * peak for fraction in fractions):
            if rows.numel() == 0 or v <= 0:
                break
            limits = torch.full((num_joints,), torch.inf, device=dev)
            limits[k] = v
            tiles = heat.tiles(limits)
            if tiles.shape[0] > DENSE_SHARE * heat.tile_count:  # cheaper as one plane
                if plane is None:
                    plane = heat.plane(k).reshape(-1)
                flat = torch.nonzero(plane > v)[:, 0]  # flat order: ties go to the first pixel
                cy, cx, cval = flat // w, flat % w, plane[flat]
            else:
                ys, xs, vals = heat.tile_values(tiles, 0)
                n, py, px = torch.nonzero(vals > v, as_tuple=True)
                cy, cx = ys[n, py], xs[n, px]
                order = torch.argsort(cy * w + cx)  # flat order: ties go to the first pixel
                cy, cx, cval = cy[order], cx[order], vals[n, py, px][order]
            if cy.numel() == 0:
                continue
            if cy.numel() > DENSE_SHARE * h * w / 16 and tplanes is None:  # many: bulk
                tplanes = tags.planes(k).float().reshape(tags.dim, -1)
            if tplanes is not None:
                ctags = tplanes[:, cy * w + cx]
            else:
                ctags = tags.at(torch.full_like(cy, k), cy, cx).T  # (T, n)
            best, arg = torch.max(_scores(cval, ctags, mean_t[pi_t[rows]]), dim=1)
            done = best > v
            flat_idx[rows[done]] = (cy * w + cx)[arg[done]]
            rows = rows[~done]
        if rows.numel() == 0:
            continue
        det_k = heat.plane(k).reshape(-1) if plane is None else plane
        planes = tags.planes(k).float().reshape(tags.dim, -1) if tplanes is None else tplanes
        for s in range(0, rows.numel(), step):  # bounded memory: `step` full maps at a time
            sel = rows[s : s + step]
            score = _scores(det_k, planes, mean_t[pi_t[sel]])
            flat_idx[sel] = torch.argmax(score, dim=1)
    yy, xx = flat_idx // w, flat_idx % w
    det = partial(heat.at, ki_t)
    val = det(yy, xx)
    dx, dy = _quarter(det, (h, w), yy, xx)
    xs = (xx.double() + 0.5 + dx).cpu().numpy()
    ys = (yy.double() + 0.5 + dy).cpu().numpy()
    val_np = val.cpu().numpy()
    fill = val_np > 0
    out[pi[fill], ki[fill], 0] = xs[fill]
    out[pi[fill], ki[fill], 1] = ys[fill]
    out[pi[fill], ki[fill], 2] = val_np[fill]
    return out
