"""Peak candidates: max-pool NMS and the top-k locations, scores and tags per joint."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def nms(heatmaps: Tensor, kernel: int = 5) -> Tensor:
    """Zero every value that is not the maximum of its ``kernel x kernel`` neighbourhood."""
    pooled = F.max_pool2d(heatmaps, kernel, 1, (kernel - 1) // 2)
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
    tag = tags.reshape(n, j, h * w, -1)
    tag_k = torch.stack([torch.gather(tag[:, :, :, i], 2, ind) for i in range(tag.shape[3])], 3)
    loc = torch.stack((ind % w, torch.div(ind, w, rounding_mode="floor")), dim=3)
    return tag_k[0].cpu().numpy(), loc[0].cpu().numpy(), val_k[0].cpu().numpy()
