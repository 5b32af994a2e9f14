"""Peak candidates: max-filter NMS and the top-k locations, scores and tags per joint.

Runs where the heatmaps are: on a CPU the max filter is OpenCV's ``dilate`` (about 20x faster
than torch's stride-1 pooling), elsewhere torch's ``max_pool2d``; both are exact maxima, so the
two paths give the same peaks. Only (K, k) arrays leave the device.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hrpose.decode.aggregate import TILE, HeatSource, TagSource

DENSE_SHARE = 0.08  # above this share of tiles holding candidates, project the whole maps


def max_filter(x: Tensor, kernel: int, use_cv2: bool | None = None) -> Tensor:
    """``max_pool2d(x, kernel, 1, kernel // 2)`` of (N, K, H, W) maps, bit for bit.

    ``use_cv2``: None = OpenCV for float32 CPU tensors, torch otherwise.
    """
    if use_cv2 is None:
        use_cv2 = x.device.type == "cpu" and x.dtype == torch.float32
    if not use_cv2:
        return F.max_pool2d(x, kernel, 1, kernel // 2)
    planes = x.detach().contiguous().reshape(-1, *x.shape[-2:]).numpy()
    element = np.ones((kernel, kernel), np.uint8)
    out = np.empty_like(planes)
    for src, dst in zip(planes, out, strict=True):  # one call per joint plane
        # dilate pads with -inf-like values (morphology's default border), as the pool's padding
        cv2.dilate(src, element, dst=dst)
    return torch.from_numpy(out).reshape(x.shape)


def nms(heatmaps: Tensor, kernel: int = 5, use_cv2: bool | None = None) -> Tensor:
    """Zero every value that is not the maximum of its ``kernel x kernel`` neighbourhood."""
    pooled = max_filter(heatmaps, kernel, use_cv2)
    return heatmaps * torch.eq(pooled, heatmaps).float()


def _ragged_top_k(
    joint: Tensor, idx: Tensor, val: Tensor, num_joints: int, k: int
) -> tuple[Tensor, Tensor]:
    """Per joint the top-k of peaks given as (joint, flat index, value), sorted by joint then
    index; slots beyond a joint's peaks hold value 0 at index 0."""
    dev = val.device
    counts = torch.bincount(joint, minlength=num_joints)
    width = max(k, int(counts.max()) if joint.numel() else 0)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(joint.numel(), device=dev) - starts[joint]
    vals = torch.full((num_joints, width), -torch.inf, device=dev, dtype=val.dtype)
    vals[joint, slot] = val
    inds = torch.zeros((num_joints, width), device=dev, dtype=torch.int64)
    inds[joint, slot] = idx  # ascending flat index within a joint, as in the full map
    val_k, pos = vals.topk(k, dim=1)
    ind = inds.gather(1, pos)
    missing = torch.isinf(val_k)
    return val_k.masked_fill(missing, 0.0), ind.masked_fill(missing, 0)


def tiled_peak_top_k(
    heat: HeatSource, k: int, kernel: int, threshold: float, use_cv2: bool | None = None
) -> tuple[Tensor, Tensor]:
    """The top-k peaks above ``threshold`` (and above 0) of the final heatmaps, projecting only
    the tiles (``TILE`` pixels a side) where a value can exceed the threshold (plus the NMS halo).

    Equal, for the candidates the grouping keeps (score > threshold >= 0), to the top-k of the
    NMS of the full projection: every projected value is bit-exact (:meth:`HeatSource.at`).
    When more than ``DENSE_SHARE`` of the tiles are needed, the whole maps are projected (the
    same values, faster in bulk).
    """
    h, w = heat.out_hw
    j = heat.num_joints
    k = min(k, h * w)
    tiles = heat.tiles(torch.full((j,), float(threshold), device=heat.device))
    if tiles.shape[0] > DENSE_SHARE * j * heat.tile_count:  # crowded: whole maps are cheaper
        return peak_top_k(heat.full(), k, kernel, use_cv2)
    r = kernel // 2
    ys, xs, vals = heat.tile_values(tiles, r)
    tile = TILE
    pooled = F.max_pool2d(vals[:, None], kernel, 1, 0)[:, 0]  # (n, tile, tile); -inf outside
    centre = vals[:, r : r + tile, r : r + tile]
    peak = (pooled == centre) & (centre > threshold) & (centre > 0)
    n, py, px = torch.nonzero(peak, as_tuple=True)
    joint, flat = tiles[n, 0], ys[n, py + r] * w + xs[n, px + r]
    order = torch.argsort(joint * (h * w) + flat)
    return _ragged_top_k(joint[order], flat[order], centre[n, py, px][order], j, k)


def peak_top_k(
    heatmaps: Tensor, k: int, kernel: int, use_cv2: bool | None
) -> tuple[Tensor, Tensor]:
    """``nms(heatmaps).view(K, -1).topk(k)`` of one image's (K, H, W) maps, for the positive
    peaks: values (K, k) and flat indices (K, k).

    The top-k runs over the few positive peaks instead of every pixel; slots beyond a joint's
    positive peaks hold value 0 at index 0 (the full top-k would put some zero pixel there;
    the grouping never keeps a candidate <= 0, since the detection threshold is >= 0).
    """
    j, h, w = heatmaps.shape
    k = min(k, h * w)
    flat = heatmaps.reshape(j, -1)
    pooled = max_filter(heatmaps[None], kernel, use_cv2)[0].reshape(j, -1)
    joint, idx = torch.nonzero(torch.eq(pooled, flat) & (flat > 0), as_tuple=True)
    return _ragged_top_k(joint, idx, flat[joint, idx], j, k)


def top_k(
    heat: HeatSource,
    tags: TagSource,
    k: int = 30,
    kernel: int = 5,
    threshold: float = 0.0,
    use_cv2: bool | None = None,
    tiled: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per joint the ``k`` best peaks: tags (K, k, T), locations (K, k, 2) x, y as int64, values
    (K, k) float32 (computed on the heatmaps' device, returned as numpy).

    ``tiled``: project only the tiles that can hold a peak above ``threshold`` (default when
    that is exact, float32 maps) or the whole maps (the official way).
    """
    j = heat.num_joints
    w = heat.out_hw[1]
    if tiled is None:
        tiled = heat.exact_points
    if tiled:
        val_k, ind = tiled_peak_top_k(heat, k, kernel, threshold, use_cv2)
    else:
        val_k, ind = peak_top_k(heat.full(), k, kernel, use_cv2)
    k = ind.shape[1]
    ys, xs = torch.div(ind, w, rounding_mode="floor"), ind % w
    joints = torch.arange(j, device=ind.device)[:, None].expand(j, k)
    tag_k = tags.at(joints.reshape(-1), ys.reshape(-1), xs.reshape(-1)).reshape(j, k, -1)
    loc = torch.stack((xs, ys), dim=2)
    return tag_k.cpu().numpy(), loc.cpu().numpy(), val_k.cpu().numpy()
