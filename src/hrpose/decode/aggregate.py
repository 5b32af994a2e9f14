"""Network outputs -> heatmaps and tags at the input resolution (official valid.py path).

Per scale: the 1/4 maps are upsampled to 1/2 and averaged with the 1/2 heatmaps; tags come from
the 1/4 output; the flipped image's maps are flipped back and left/right-permuted; everything is
projected (bilinear, align_corners=False) to the input size at scale 1. Heatmaps are averaged over
flip and scales; tags of scale 1 are stacked (original, flipped) along a last axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _resize(x: Tensor, size_hw: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size_hw, mode="bilinear", align_corners=False)


def stage_maps(
    outputs: Sequence[Tensor], num_joints: int, flip_index: Sequence[int] | None = None
) -> tuple[Tensor, Tensor]:
    """Heatmaps (averaged over resolutions) and tags of one forward pass, at the last resolution.

    ``outputs``: the model's outputs, lowest resolution first; the first has 2K channels
    (heatmaps then tags), later ones K heatmaps. ``flip_index``: the outputs belong to the
    mirrored image; flip them back and permute joints.
    """
    k = num_joints
    if outputs[0].shape[1] < 2 * k:
        raise ValueError(
            f"the first output has {outputs[0].shape[1]} channels; a {k}-joint model gives {2 * k} "
            "(heatmaps then tags). Does the keypoint spec match the weights?"
        )
    last_hw = tuple(outputs[-1].shape[-2:])
    heat_sum: Tensor | int = 0
    tags = None
    for i, out in enumerate(outputs):
        if len(outputs) > 1 and i != len(outputs) - 1:
            out = _resize(out, last_hw)
        if flip_index is not None:
            out = torch.flip(out, [3])
        heat = out[:, :k]
        if flip_index is not None:
            heat = heat[:, list(flip_index)]
        heat_sum = heat_sum + heat
        if i == 0:
            tags = out[:, k:]
            if flip_index is not None:
                tags = tags[:, list(flip_index)]
    assert tags is not None
    return heat_sum / len(outputs), tags


def aggregate(
    per_scale: Sequence[tuple[float, Sequence[Tensor], Sequence[Tensor] | None]],
    num_joints: int,
    base_size: tuple[int, int],
    flip_index: Sequence[int],
) -> tuple[Tensor, Tensor]:
    """Final heatmaps (1, K, H, W) and tags (1, K, H, W, T) at ``base_size`` (w, h).

    ``per_scale``: (scale, outputs, flipped outputs or None), in the official order (scales
    sorted from largest to smallest). Only scale 1 contributes tags, as the official code.
    """
    hw = (base_size[1], base_size[0])
    final: Tensor | None = None
    tag_list: list[Tensor] = []
    single = len(per_scale) == 1
    for scale, outputs, flipped in per_scale:
        heat, tags = stage_maps(outputs, num_joints)
        heats, tagss = [heat], [tags]
        if flipped is not None:
            fheat, ftags = stage_maps(flipped, num_joints, flip_index)
            heats.append(fheat)
            tagss.append(ftags)
        heats = [_resize(h, hw) for h in heats]
        if scale == 1 or single:
            # One resize of the (K, T)-interleaved channels yields the planes (1, K, T, H, W)
            # directly; bilinear resizing treats channels independently, so values are unchanged.
            low = torch.stack(tagss, dim=2)
            k, t = low.shape[1], low.shape[2]
            tag_list.append(_resize(low.flatten(1, 2), hw).unflatten(1, (k, t)))
        avg = (heats[0] + heats[1]) / 2.0 if flipped is not None else heats[0]
        final = avg if final is None else final + avg
    if not tag_list:
        raise ValueError("multi-scale test needs scale 1.0 among the scales (its tags are used)")
    assert final is not None
    # Planes (1, K, T, H, W) returned as a (1, K, H, W, T) view: the decoder reads the planes
    # without another copy.
    return final / float(len(per_scale)), tag_list[0].permute(0, 1, 3, 4, 2)
