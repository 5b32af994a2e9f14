"""HigherHRNet loss: masked heatmap MSE per resolution + associative-embedding push/pull.

Equal to the official ``MultiLossFactory`` (HeatmapLoss, AELoss 'exp') and the trainer's sum of
batch means, vectorised over images and people (no Python loop over people or joints). All maths
runs in fp32, also under autocast.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from hrpose.structures import PoseOutput


def heatmap_loss(pred: Tensor, gt: Tensor, mask: Tensor) -> Tensor:
    """Per-image masked MSE, mean over K*H*W: (B,)."""
    return (((pred - gt) ** 2) * mask[:, None]).mean(dim=(1, 2, 3))


def ae_loss(tags: Tensor, joints: Tensor, loss_type: str = "exp") -> tuple[Tensor, Tensor]:
    """Per-image push and pull losses: (B,), (B,), as the official AELoss.singleTagLoss.

    ``tags`` (B, K, H, W) (one tag per joint); ``joints`` (B, P, K, 2) flat indices into the K
    tag maps and a visibility flag. Pull: per person, mean squared distance of its tags to their
    mean, averaged over people. Push: mean over ordered pairs of people of ``exp(-d^2)``
    ('exp') or ``max(0, 1 - |d|)`` ('max'), times 0.5.
    """
    b = tags.shape[0]
    flat = tags.reshape(b, -1)
    idx = joints[..., 0].long().reshape(b, -1)
    vis = (joints[..., 1] > 0).to(flat.dtype)  # (B, P, K)
    vals = torch.gather(flat, 1, idx).reshape(vis.shape)
    count = vis.sum(-1)  # (B, P)
    person = count > 0
    denom = count.clamp(min=1)
    mean = (vals * vis).sum(-1) / denom
    pull_p = (((vals - mean[..., None]) ** 2) * vis).sum(-1) / denom
    n = person.sum(-1).to(flat.dtype)  # (B,)
    pull = pull_p.sum(-1) / n.clamp(min=1)
    diff = mean[:, :, None] - mean[:, None, :]
    pair = (person[:, :, None] & person[:, None, :]).to(flat.dtype)
    if loss_type == "exp":
        sim = torch.exp(-(diff**2))
    elif loss_type == "max":
        sim = torch.clamp(1 - diff.abs(), min=0)
    else:
        raise ValueError(f"unknown AE loss type {loss_type!r}: use 'exp' or 'max'")
    push = ((sim * pair).sum((1, 2)) - n) / ((n - 1) * n).clamp(min=1) * 0.5
    push = torch.where(n >= 2, push, torch.zeros_like(push))
    return push, pull


class HigherHRNetLoss(nn.Module):
    """Sum over resolutions of heatmap MSE and (where enabled) AE push/pull, official weights."""

    def __init__(
        self,
        num_joints: int = 17,
        heatmap_weights: Sequence[float] = (1.0, 1.0),
        push_weights: Sequence[float] = (0.001, 0.001),
        pull_weights: Sequence[float] = (0.001, 0.001),
        with_ae: Sequence[bool] = (True, False),
        loss_type: str = "exp",
    ) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.heatmap_weights = list(heatmap_weights)
        self.push_weights = list(push_weights)
        self.pull_weights = list(pull_weights)
        self.with_ae = list(with_ae)
        self.loss_type = loss_type

    def forward(
        self,
        outputs: Sequence[Tensor],
        heatmaps: Sequence[Tensor],
        masks: Sequence[Tensor],
        joints: Sequence[Tensor],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Returns the total (official: sum of batch means) and its parts (detached)."""
        if not len(outputs) == len(heatmaps) == len(masks) == len(joints):
            raise ValueError("outputs, heatmaps, masks and joints need one entry per resolution")
        k = self.num_joints
        total = torch.zeros((), device=outputs[0].device)
        parts: dict[str, Tensor] = {}
        if isinstance(outputs, PoseOutput):
            heats: list[Tensor] = list(outputs.check().heatmaps_per_resolution)
            tag_maps: list[Tensor | None] = [outputs.tags, None]
        else:  # a plain list per resolution: heatmaps, then tags where present
            for i, out in enumerate(outputs):
                if out.shape[1] < k:
                    raise ValueError(f"output {i} has {out.shape[1]} channels, need >= {k}")
            heats = [out[:, :k] for out in outputs]
            tag_maps = [out[:, k:] if out.shape[1] > k else None for out in outputs]
        with torch.autocast(outputs[0].device.type, enabled=False):
            for i, heat in enumerate(heats):
                hm = heatmap_loss(heat.float(), heatmaps[i].float(), masks[i].float()).mean()
                hm = hm * self.heatmap_weights[i]
                parts[f"heatmaps_{i}"] = hm.detach()
                total = total + hm
                tags = tag_maps[i]
                if i < len(self.with_ae) and self.with_ae[i] and tags is not None:
                    push, pull = ae_loss(tags.float(), joints[i], self.loss_type)
                    push = push.mean() * self.push_weights[i]
                    pull = pull.mean() * self.pull_weights[i]
                    parts["push"] = push.detach()
                    parts["pull"] = pull.detach()
                    total = total + push + pull
        return total, parts
