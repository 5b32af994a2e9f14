"""Network outputs -> heatmaps at the input resolution and point-sampled tags (official valid.py).

Per scale: the 1/4 heatmaps are upsampled to 1/2 and averaged with the 1/2 heatmaps; the
flipped image's maps are flipped back and left/right-permuted; heatmaps are projected (bilinear,
align_corners=False) to the input size at scale 1 and averaged over flip and scales. Tags (1/4
output, scale 1) are the official 1/4 -> 1/2 -> input-size bilinear resizes, but evaluated only
at the pixels the decoder reads (:class:`TagSource`), never as full-resolution planes.

Deliberate difference: the official code projects the original and flipped heatmaps separately
and then averages them; we average at 1/2 resolution and project once (bilinear resizing is
linear, so the maps agree to float32 rounding; the stored official cases still match exactly).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, partial

import torch
import torch.nn.functional as F
from torch import Tensor

Pixels = Callable[[Tensor, Tensor], Tensor]  # (ys, xs) int64 -> source values there


def _resize(x: Tensor, size_hw: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size_hw, mode="bilinear", align_corners=False)


def _fma(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """float32 ``a * b + c`` rounded once (a float64 product of float32 values is exact)."""
    return (a.double() * b.double() + c.double()).float()


def _source_index(dst: Tensor, in_size: int, out_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Lower/upper source index and upper weight of output pixels ``dst`` (int64), computed as
    torch's CPU ``upsample_bilinear2d`` (align_corners=False): float32 scale, fused multiply-add."""
    scale = torch.tensor(in_size / out_size, dtype=torch.float32, device=dst.device)
    src = _fma(scale.expand(dst.shape), dst.float() + 0.5, torch.full_like(scale, -0.5))
    src = src.clamp_min(0)
    i0 = src.long().clamp_max(in_size - 1)
    lam = (src - i0.float()).clamp(0, 1)
    return i0, (i0 + 1).clamp_max(in_size - 1), lam


def _mirrored(value: Pixels, width: int, y: Tensor, x: Tensor) -> Tensor:
    return value(y, width - 1 - x)


def bilinear_at(
    value: Pixels, ys: Tensor, xs: Tensor, in_hw: tuple[int, int], out_hw: tuple[int, int]
) -> Tensor:
    """``F.interpolate(src, out_hw, 'bilinear', align_corners=False)[..., ys, xs]`` bit for bit
    without the resize: ``value(y, x)`` returns source pixels (any leading shape over ys/xs).

    The arithmetic is torch's CPU kernel's: ``h0 * (w0*a + w1*b) + h1 * (w0*c + w1*d)`` with both
    inner sums and the outer sum fused (checked against F.interpolate by the tests).
    """
    y0, y1, h1 = _source_index(ys, in_hw[0], out_hw[0])
    x0, x1, w1 = _source_index(xs, in_hw[1], out_hw[1])
    h0, w0 = 1 - h1, 1 - w1
    a, b, c, d = value(y0, x0), value(y0, x1), value(y1, x0), value(y1, x1)
    top = _fma(w0, a, w1 * b)
    bottom = _fma(w0, c, w1 * d)
    return _fma(h0, top, h1 * bottom)


@dataclass(frozen=True)
class TagSource:
    """The scale-1 tags as the official decoder sees them, evaluated only where needed.

    ``maps``: per pass (original, flipped) the (K, h, w) tag channels of the first output, joint
    order already permuted for the flipped pass; ``mirrored``: which passes are spatially
    mirrored; ``mid_hw``: the size they are first resized to (the last output's), or None;
    ``out_hw``: the final map size.
    """

    maps: tuple[Tensor, ...]
    mirrored: tuple[bool, ...]
    mid_hw: tuple[int, int] | None
    out_hw: tuple[int, int]

    @property
    def dim(self) -> int:
        """T: tag values per joint (2 with the flip test)."""
        return len(self.maps)

    @property
    def device(self) -> torch.device:
        return self.maps[0].device

    def at(self, joints: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
        """(n, T) float32 tag values of joint ``joints[i]`` at output pixel (ys[i], xs[i])."""
        if self.maps[0].dtype != torch.float32:
            # The point formula reproduces the float32 kernel only; other dtypes (float64 test
            # data) take the full resize, then float32 as the decoder always did.
            return self._full[joints, :, ys, xs]
        out = []
        for m, mirror in zip(self.maps, self.mirrored, strict=True):
            first_hw = (int(m.shape[1]), int(m.shape[2]))

            def first(y: Tensor, x: Tensor, m: Tensor = m) -> Tensor:
                return m[joints, y, x]

            if self.mid_hw is not None:
                first = partial(bilinear_at, first, in_hw=first_hw, out_hw=self.mid_hw)
                first_hw = self.mid_hw
            if mirror:  # the flip comes after the first resize, as in the official code
                first = partial(_mirrored, first, first_hw[1])
            out.append(bilinear_at(first, ys, xs, first_hw, self.out_hw))
        return torch.stack(out, dim=-1)

    @cached_property
    def _full(self) -> Tensor:
        return torch.stack([self.planes(j) for j in range(self.maps[0].shape[0])]).float()

    def planes(self, joint: int) -> Tensor:
        """(T, H, W) full-resolution tag planes of one joint (the official resize chain), in the
        maps' dtype."""
        out = []
        for m, mirror in zip(self.maps, self.mirrored, strict=True):
            x = m[joint][None, None]
            if self.mid_hw is not None:
                x = _resize(x, self.mid_hw)
            if mirror:
                x = torch.flip(x, [3])
            out.append(_resize(x, self.out_hw)[0, 0])
        return torch.stack(out)


def stage_heatmaps(outputs: Sequence[Tensor], num_joints: int) -> Tensor:
    """(1, K, h, w) heatmaps of one pass averaged over its resolutions, at the last resolution
    (the official ``get_multi_stage_outputs``, before flipping back)."""
    k = num_joints
    if outputs[0].shape[1] < 2 * k:
        raise ValueError(
            f"the first output has {outputs[0].shape[1]} channels; a {k}-joint model gives {2 * k} "
            "(heatmaps then tags). Does the keypoint spec match the weights?"
        )
    last_hw = (int(outputs[-1].shape[-2]), int(outputs[-1].shape[-1]))
    heats = [out[:, :k] for out in outputs]
    if len(heats) > 1:  # channels are resized independently: only the K heatmaps are needed
        heats[:-1] = [_resize(h, last_hw) for h in heats[:-1]]
    heat_sum = heats[0]
    for h in heats[1:]:
        heat_sum = heat_sum + h
    return heat_sum / len(heats) if len(heats) > 1 else heat_sum


def aggregate(
    per_scale: Sequence[tuple[float, Sequence[Tensor], Sequence[Tensor] | None]],
    num_joints: int,
    base_size: tuple[int, int],
    flip_index: Sequence[int],
) -> tuple[Tensor, TagSource]:
    """Final heatmaps (1, K, H, W) at ``base_size`` (w, h) and the scale-1 :class:`TagSource`.

    ``per_scale``: (scale, outputs, flipped outputs or None), in the official order (scales
    sorted from largest to smallest). Only scale 1 contributes tags, as the official code.
    """
    hw = (base_size[1], base_size[0])
    k = num_joints
    flip = list(flip_index)
    final: Tensor | None = None
    source: TagSource | None = None
    single = len(per_scale) == 1
    for scale, outputs, flipped in per_scale:
        heat = stage_heatmaps(outputs, k)
        if flipped is not None:
            fheat = torch.flip(stage_heatmaps(flipped, k), [3])[:, flip]
            heat = (heat + fheat) / 2.0  # folded: one projection instead of two (see above)
        heat = _resize(heat, hw)
        final = heat if final is None else final + heat
        if scale == 1 or single:
            mid = (int(outputs[-1].shape[-2]), int(outputs[-1].shape[-1]))
            maps = [outputs[0][0, k : 2 * k]]
            mirrored = [False]
            if flipped is not None:
                maps.append(flipped[0][0, k : 2 * k][flip])
                mirrored.append(True)
            source = TagSource(
                tuple(maps),
                tuple(mirrored),
                mid if len(outputs) > 1 else None,
                hw,
            )
    if source is None:
        raise ValueError("multi-scale test needs scale 1.0 among the scales (its tags are used)")
    assert final is not None
    return (final / float(len(per_scale)) if len(per_scale) > 1 else final), source
