"""Peak candidates: max-pool NMS and the top-k locations, scores and tags per joint."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def max_filter(x: Tensor, kernel: int) -> Tensor:
    """``max_pool2d(x, kernel, 1, kernel // 2)`` as two 1-D passes of shifted maxima.

    Bit-identical to the pool (max is exact) and several times faster on CPU, where torch's
    stride-1 pooling is slow.
    """
    r = (kernel - 1) // 2
    out = x
    for dim in (-1, -2):
        n = x.shape[dim]
        pad = (r, r, 0, 0) if dim == -1 else (0, 0, r, r)
        padded = F.pad(out, pad, value=float("-inf"))
        out = padded.narrow(dim, 0, n).clone()
        for i in range(1, kernel):
            torch.maximum(out, padded.narrow(dim, i, n), out=out)
    return out


def nms(heatmaps: Tensor, kernel: int = 5) -> Tensor:
    """Zero every value that is not the maximum of its ``kernel x kernel`` neighbourhood."""
    pooled = max_filter(heatmaps, kernel)
    return heatmaps * torch.eq(pooled, heatmaps).float()


def top_k(
    heatmaps: Tensor, tags: Tensor, k: int = 30, kernel: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per joint the ``k`` best peaks of image 0: tags (K, k, T), locations (K, k, 2) x, y as
    int64, values (K, k) float32."""
    det = nms(heatmaps, kernel)
    n, j, h, w = det.shape
    det = det.view(n, j, -1)
    k = min(k, h * w)
    val_k, ind = det.topk(k, dim=2)
    planes = tags.permute(0, 1, 4, 2, 3).reshape(n, j, tags.shape[4], h * w)  # a view if planar
    tag_k = torch.stack([torch.gather(planes[:, :, i], 2, ind) for i in range(planes.shape[2])], 3)
    loc = torch.stack((ind % w, torch.div(ind, w, rounding_mode="floor")), dim=3)
    return tag_k[0].cpu().numpy(), loc[0].cpu().numpy(), val_k[0].cpu().numpy()
