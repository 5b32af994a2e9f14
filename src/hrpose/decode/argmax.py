"""Refine's search: ``argmax(det - round(|tag - mean|))`` over a joint's final maps for many mean
tags, exact (first flat index on ties, as the official ``np.argmax``) without projecting the
full maps.

Bounds: a final heatmap value is at most its tile's largest source (``HeatSource.tile_upper``),
a tag value lies in its tile's source box (``TagSource.tile_box``) and round is monotone, so a
pixel of tile t with heatmap value <= v scores at most ``min(upper_t, v) - round(dist(mean,
box_t))``. The search scores, per joint and shared by all its means, the pixels above falling
fractions of the joint's peak (skipping those whose tile bound cannot reach a mean's best) until
every best beats that bound on the pixels left, or ties it only at later pixels; the rest go to
a branch-and-bound over whole tiles in decreasing bound order, then (past a budget, for a joint
with most of its map at one level, or for non-finite means) to the full planes, the reference.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hrpose.decode.aggregate import TILE, HeatSource, TagSource

LEVELS = (0.5, 0.1, 0.02)  # fractions of a joint's peak whose pixels are scored in turn
TILE_BUDGET = 0.05  # past this share of the open joints' tiles, score whole planes instead
# Full projections instead of points past these shares (per pixel, projecting tiles costs
# about 15x a full heatmap projection, and point tags 100x the full tags' two resizes)
FULL_SHARE = 0.06  # of all tiles
TAG_BULK = 0.01  # of all joints' pixels
HEAVY_SHARE = 0.25  # a joint with more of its pixels at one level goes to its full planes


def scores(det: Tensor, tags: Tensor, means: Tensor) -> Tensor:
    """``det - round(|tag - mean|)`` in float32, operation for operation as the official numpy
    code; ``tags`` (T, ...) and ``means`` (T, ...) broadcast together and with ``det``."""
    d2 = (tags[0] - means[0]).square_()
    for t in range(1, tags.shape[0]):
        d2 += (tags[t] - means[t]).square_()
    return torch.sub(det, d2.sqrt_().round_(), out=d2)


def full_argmax(
    heat: HeatSource, tags: TagSource, joint: int, means: Tensor, chunk_pixels: int = 1 << 24
) -> Tensor:
    """(n,) flat argmax over joint ``joint``'s full planes for each of ``means`` (n, T): the
    reference, ``chunk_pixels`` scores at a time."""
    h, w = heat.out_hw
    det = heat.plane(joint).reshape(-1)
    planes = tags.full()[joint] if tags.projected else tags.planes(joint).float()
    planes = planes.reshape(tags.dim, 1, -1)
    step = max(1, chunk_pixels // (h * w))
    parts = [
        torch.argmax(scores(det, planes, means[s : s + step].T[:, :, None]), dim=1)
        for s in range(0, means.shape[0], step)
    ]
    return torch.cat(parts)


def _tile_grid(hw: tuple[int, int], device: torch.device) -> tuple[int, Tensor]:
    """Tile columns and each row-major tile's first (smallest) flat pixel index."""
    cols = -(-hw[1] // TILE)
    t = torch.arange(cols * -(-hw[0] // TILE), device=device)
    return cols, (t // cols) * (TILE * hw[1]) + (t % cols) * TILE


def _near(tags: TagSource, joints: Tensor, means: Tensor) -> Tensor:
    """(Q, tiles) float64 lower bound of ``round(|tag - means[q]|)`` in each tile of joint
    ``joints[q]``."""
    lo, hi = (box[joints].flatten(1, 2) for box in tags.tile_box())
    m = means.double()[:, None, :]
    gap = torch.maximum(lo - m, m - hi).clamp_min(0)
    # the float32 distance is within a few ulps of the exact one, itself >= the box's
    return (gap.square().sum(2).sqrt() * (1 - 1e-6)).round()


def _bound(upper: Tensor, near: Tensor) -> Tensor:
    """Score bound from a heatmap bound and ``_near``, widened by the float32 subtraction's
    rounding."""
    bound = upper - near
    return bound + 1e-6 * bound.abs()


def _merge(best: Tensor, arg: Tensor, top: Tensor, first: Tensor) -> tuple[Tensor, Tensor]:
    """Running best score and flat index updated with new ones (higher wins, then lower index)."""
    top = top.double()
    better = (top > best) | ((top == best) & (first < arg))
    return torch.where(better, top, best), torch.where(better, first, arg)


def _settled(bound: Tensor, tile_first: Tensor, best: Tensor, arg: Tensor) -> Tensor:
    """Whether no unscored pixel, bounded per tile by ``bound`` (n, tiles), can beat ``best``
    or tie it at an index before ``arg``."""
    can = (bound > best[:, None]) | ((bound == best[:, None]) & (tile_first < arg[:, None]))
    return ~can.any(1)


def _pixels(heat: HeatSource, low: Tensor, high: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Joint, flat index and value of every pixel of joint j in (low[j], high[j]] (K,), sorted
    by joint then flat index (joints with an infinite ``low`` are skipped), from the tiles that
    can hold them; their values are read from the full maps when those are known or cheaper."""
    h, w = heat.out_hw
    tiles = heat.tiles(low)
    if tiles.shape[0] > FULL_SHARE * heat.tile_count * heat.num_joints:
        heat.full()  # then tile_values reads it
    sel = torch.nonzero(torch.isfinite(low))[:, 0]
    if heat.projected and tiles.shape[0] > 0.5 * heat.tile_count * len(sel):  # most: by rows
        full = heat.full().reshape(heat.num_joints, -1)[sel]
        n, flat = torch.nonzero((full > low[sel, None]) & (full <= high[sel, None]), as_tuple=True)
        return sel[n], flat, full[n, flat]
    ys, xs, vals = heat.tile_values(tiles, 0)
    jt = tiles[:, 0, None, None]
    n, py, px = torch.nonzero((vals > low[jt]) & (vals <= high[jt]), as_tuple=True)
    joint, flat = tiles[n, 0], ys[n, py] * w + xs[n, px]
    order = torch.argsort(joint * (h * w) + flat)
    return joint[order], flat[order], vals[n, py, px][order]


def _tags_at(tags: TagSource, joint: Tensor, flat: Tensor) -> Tensor:
    """(n, T) tags of ``joint`` at flat pixels, from the full planes when known or cheaper."""
    h, w = tags.out_hw
    k = int(tags.maps[0].shape[0])
    if tags.projected or flat.numel() > TAG_BULK * k * h * w:
        return tags.full()[joint, :, flat // w, flat % w]
    return tags.at(joint, flat // w, flat % w)


def _score_pixels(
    tags: TagSource, pixels: tuple[Tensor, Tensor, Tensor], joints: Tensor, means: Tensor
) -> tuple[Tensor, Tensor]:
    """Best score and its first flat index per pair (``joints[q]``, ``means[q]``) over the
    pixels (joint, flat index, heatmap value; sorted by joint then index) of its joint."""
    pj, pflat, pval = pixels
    h, w = tags.out_hw
    ptags = _tags_at(tags, pj, pflat).T  # (T, n)
    top = torch.full((len(joints),), -torch.inf, device=means.device)
    first = torch.full((len(joints),), h * w, dtype=torch.int64, device=means.device)
    counts = torch.bincount(pj, minlength=int(tags.maps[0].shape[0]))
    ends = torch.cumsum(counts, 0).tolist()
    for k in torch.unique(joints).tolist():  # a joint's pixels broadcast against its means
        rows = torch.nonzero(joints == k)[:, 0]
        sl = slice(ends[k] - int(counts[k]), ends[k])
        if sl.start == sl.stop:
            continue
        score = scores(pval[sl], ptags[:, None, sl], means[rows].T[:, :, None])
        pos = torch.argmax(score, dim=1)  # pixels in flat order: ties go to the first
        top[rows] = score.gather(1, pos[:, None])[:, 0]
        first[rows] = pflat[sl][pos]
    return top, first


def _tile_of(flat: Tensor, hw: tuple[int, int]) -> Tensor:
    """Row-major tile number of flat pixel indices."""
    cols = -(-hw[1] // TILE)
    return (flat // hw[1] // TILE) * cols + (flat % hw[1]) // TILE


def _floor(joints: Tensor, best: Tensor, near: Tensor, num_joints: int) -> Tensor:
    """(K, tiles) float64 lowest heatmap value at which a pixel of that tile can still beat or
    tie one of the pairs' best (det - near >= best, less the float32 rounding); inf for joints
    without pairs."""
    need = best[:, None] + near - 1e-6 * (1 + best.abs())[:, None]
    out = torch.full((num_joints, near.shape[1]), torch.inf, dtype=near.dtype, device=near.device)
    return out.scatter_reduce(0, joints[:, None].expand_as(need), need, "amin")


def _level_search(
    heat: HeatSource, tags: TagSource, joints: Tensor, means: Tensor, near: Tensor
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Best score, flat index, openness and whether it is left to the full planes, per pair
    (``joints[q]``, ``means[q]``), after scoring the pixels above ``LEVELS`` of each joint's peak
    (candidates shared by a joint's means); and the last level per pair (pixels above it were
    scored)."""
    h, w = heat.out_hw
    dev = means.device
    q_n, k_n = len(joints), heat.num_joints
    upper = heat.tile_upper()
    peak = upper.flatten(1).amax(1)
    upper = upper[joints].flatten(1)
    _, tile_first = _tile_grid(heat.out_hw, dev)
    best = torch.full((q_n,), -torch.inf, dtype=torch.float64, device=dev)
    arg = torch.full((q_n,), h * w, dtype=torch.int64, device=dev)
    open_ = torch.ones(q_n, dtype=torch.bool, device=dev)
    full = torch.zeros(q_n, dtype=torch.bool, device=dev)  # left to the full planes
    lows = (torch.tensor(LEVELS, dtype=torch.float64, device=dev)[:, None] * peak).float()
    high = torch.full((k_n,), torch.inf, device=dev)
    for low in lows:  # float32, as the comparisons see them
        wanted = torch.zeros(k_n, dtype=torch.bool, device=dev)
        wanted[joints[open_]] = True
        wanted &= low > 0
        if not wanted.any():
            break
        low = torch.where(wanted, low, torch.inf)
        rows = torch.nonzero(open_ & wanted[joints])[:, 0]
        cj, cflat, cval = _pixels(heat, low, high)  # the pixels new at this level ...
        # a joint with most of its map at this level is cheaper on its full planes
        heavy = torch.bincount(cj, minlength=k_n) > HEAVY_SHARE * h * w
        if heavy.any():
            full[rows[heavy[joints[rows]]]] = True
            open_ &= ~full
            rows = rows[~heavy[joints[rows]]]
            keep = ~heavy[cj]
            cj, cflat, cval = cj[keep], cflat[keep], cval[keep]
        floor = _floor(joints[rows], best[rows], near[rows], k_n)
        keep = cval >= floor[cj, _tile_of(cflat, (h, w))]  # ... that can still matter
        if keep.any():
            pixels = (cj[keep], cflat[keep], cval[keep])
            top, first = _score_pixels(tags, pixels, joints[rows], means[rows])
            best[rows], arg[rows] = _merge(best[rows], arg[rows], top, first)
        cap = torch.minimum(upper[rows], low.double()[joints[rows], None])
        open_[rows] = ~_settled(_bound(cap, near[rows]), tile_first[None], best[rows], arg[rows])
        high = torch.where(wanted, low, high)
        if not open_.any():
            break
    return best, arg, open_, full, high.double()[joints]


def _score_tiles(
    heat: HeatSource, tags: TagSource, keys: Tensor, inv: Tensor, means: Tensor
) -> tuple[Tensor, Tensor]:
    """Best score and its first flat index per pair over its tiles ``keys[inv[q]]`` (Q, c)
    for mean ``means[q]``; ``keys`` are distinct ``joint * tiles per map + tile`` numbers
    (row-major), each projected once."""
    h, w = heat.out_hw
    cols, tile_first = _tile_grid(heat.out_hw, keys.device)
    joint, tile = keys // tile_first.numel(), keys % tile_first.numel()
    ys, xs, det = heat.tile_values(torch.stack((joint, tile // cols, tile % cols), 1), 0)
    clamped = ys.clamp(0, h - 1)[:, :, None], xs.clamp(0, w - 1)[:, None, :]
    tag = tags.at(joint[:, None, None], *clamped)
    flat = (ys[:, :, None] * w + xs[:, None, :]).flatten(1)[inv].flatten(1)  # (Q, c S S)
    score = scores(
        det.flatten(1)[inv], tag.flatten(1, 2)[inv].movedim(-1, 0), means.T[:, :, None, None]
    ).flatten(1)
    best = score.max(1).values
    return best, torch.where(score == best[:, None], flat, h * w).min(1).values


def _tile_search(
    heat: HeatSource,
    tags: TagSource,
    joints: Tensor,
    means: Tensor,
    bound: Tensor,
    best: Tensor,
    arg: Tensor,
) -> tuple[Tensor, Tensor]:
    """Branch-and-bound over whole tiles from a running ``best``/``arg`` with per-tile score
    bounds ``bound`` (Q, tiles): flat argmax per pair, and whether it was found (pairs still
    open once the distinct tiles scored would pass ``TILE_BUDGET`` of their joints' are not)."""
    bound, order = torch.sort(bound, dim=1, descending=True, stable=True)
    _, tile_first = _tile_grid(heat.out_hw, bound.device)
    n_tiles = tile_first.numel()
    first = tile_first[order]  # increasing within equal bounds (row-major tiles)
    keys = joints[:, None] * n_tiles + order
    # Sorted by bound, then first pixel: the tiles still needed (above the best, or equal to it
    # with an earlier first pixel) are always a prefix of those left.
    open_ = torch.ones(len(joints), dtype=torch.bool, device=bound.device)
    pos, chunk, spent = 0, 2, 0
    limit = TILE_BUDGET * n_tiles * int(torch.unique(joints).numel())
    while pos < n_tiles:
        b, f = bound[:, pos], first[:, pos]
        open_ &= (b > best) | ((b == best) & (f < arg))
        q = torch.nonzero(open_)[:, 0]
        if q.numel() == 0:
            break
        uniq, inv = torch.unique(keys[q, pos : pos + chunk], return_inverse=True)
        spent += uniq.numel()
        if spent > limit:
            break
        top, top_arg = _score_tiles(heat, tags, uniq, inv, means[q])
        best[q], arg[q] = _merge(best[q], arg[q], top, top_arg)
        pos, chunk = pos + chunk, chunk * 2
    else:
        open_[:] = False  # every tile scored
    return arg, ~open_


def tag_argmax(
    heat: HeatSource,
    tags: TagSource,
    joints: Tensor,
    means: Tensor,
    tiled: bool = True,
    chunk_pixels: int = 1 << 24,
) -> Tensor:
    """(Q,) flat index of ``argmax(det - round(|tag - means[q]|))`` over joint ``joints[q]``'s
    final maps (first index on ties); ``tiled=False``: every map fully projected."""
    arg = torch.zeros(len(joints), dtype=torch.int64, device=joints.device)
    todo = torch.ones(len(joints), dtype=torch.bool, device=joints.device)
    if tiled:
        rows = torch.nonzero(torch.isfinite(means).all(1))[:, 0]  # NaN: to the reference
        near = _near(tags, joints[rows], means[rows])
        best, arg[rows], open_, full, cap = _level_search(
            heat, tags, joints[rows], means[rows], near
        )
        todo[rows] = full
        if open_.any():
            # pixels above the last level were scored: those left are below it
            upper = heat.tile_upper()[joints[rows[open_]]].flatten(1)
            bound = _bound(torch.minimum(upper, cap[open_, None]), near[open_])
            left = rows[open_]
            arg[left], done = _tile_search(
                heat, tags, joints[left], means[left], bound, best[open_], arg[left]
            )
            todo[left[~done]] = True
    for k in torch.unique(joints[todo]).tolist():  # one joint's planes at a time
        rows = torch.nonzero(todo & (joints == k))[:, 0]
        arg[rows] = full_argmax(heat, tags, k, means[rows], chunk_pixels)
    return arg
