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
from functools import cached_property, lru_cache, partial

import torch
import torch.nn.functional as F
from torch import Tensor

from hrpose.structures import PoseOutput

TILE = 32  # output pixels per side of the tiles the heatmaps are projected in
Pixels = Callable[[Tensor, Tensor], Tensor]  # (ys, xs) int64 -> source values there
MID_POINTS = 16384  # tags at more points than this read resized (mid) maps, not nested points


def point_exact(maps: Tensor) -> bool:
    """Whether :func:`bilinear_at` reproduces torch's CPU kernel on these (C, h, w) maps: float32,
    sides of at least 32 (smaller maps take another kernel path; they are cheap to project
    fully anyway)."""
    return maps.dtype == torch.float32 and min(int(maps.shape[-2]), int(maps.shape[-1])) >= 32


def _resize(x: Tensor, size_hw: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size_hw, mode="bilinear", align_corners=False)


def _resize_as_points(x: Tensor, size_hw: tuple[int, int]) -> Tensor:
    """:func:`_resize` of (1, C, h, w) float32 maps equal to :func:`bilinear_at` on them: torch's
    CPU kernel takes another path for exactly 3 channels, so those are resized with a fourth."""
    if x.shape[1] != 3:
        return _resize(x, size_hw)
    return _resize(torch.cat([x, x[:, :1]], 1), size_hw)[:, :3]


def _fma(a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """float32 ``a * b + c`` rounded once (a float64 product of float32 values is exact)."""
    return (a.double() * b.double() + c.double()).float()


@lru_cache(maxsize=64)
def _index_table(
    in_size: int, out_size: int, device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """Lower index, upper index and upper weight (float32) of every output pixel, computed as
    torch's CPU ``upsample_bilinear2d`` (align_corners=False): float32 scale, fused
    multiply-add."""
    dst = torch.arange(out_size, device=device)
    scale = torch.tensor(in_size / out_size, dtype=torch.float32, device=device)
    src = _fma(scale.expand(dst.shape), dst.float() + 0.5, torch.full_like(scale, -0.5))
    src = src.clamp_min(0)
    i0 = src.long().clamp_max(in_size - 1)
    lam = (src - i0.float()).clamp(0, 1)
    return i0, (i0 + 1).clamp_max(in_size - 1), lam


def _source_index(dst: Tensor, in_size: int, out_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """Lower/upper source index and upper weight of output pixels ``dst`` (int64)."""
    i0, i1, lam = _index_table(in_size, out_size, dst.device)
    return i0[dst], i1[dst], lam[dst]


def _tile_spans(out_size: int, in_size: int, device: torch.device) -> Tensor:
    """(tiles, 2) first and last source index read by each ``TILE``-pixel span of the output
    (the index maps are monotone, so a span's sources are those of its end pixels)."""
    starts = torch.arange(0, out_size, TILE, device=device)
    ends = (starts + TILE - 1).clamp_max(out_size - 1)
    return torch.stack(
        (_source_index(starts, in_size, out_size)[0], _source_index(ends, in_size, out_size)[1]), 1
    )


def _through(spans: Tensor, in_size: int, out_size: int) -> Tensor:
    """Spans of ``out_size`` pixels -> the spans of ``in_size`` source pixels they read."""
    return torch.stack(
        (_source_index(spans[:, 0], in_size, out_size)[0],
         _source_index(spans[:, 1], in_size, out_size)[1]), 1
    )  # fmt: skip


def _tile_reduce(maps: Tensor, rows: Tensor, cols: Tensor, reduce: Callable) -> Tensor:
    """(K, tile rows, tile cols) ``reduce`` (torch.amax / amin) of (K, h, w) ``maps`` over each
    tile's source span (``rows``/``cols`` from :func:`_tile_spans`)."""
    # loops over tile rows and columns (tens), not pixels
    band = torch.stack([reduce(maps[:, a : b + 1], 1) for a, b in rows.tolist()], 1)
    return torch.stack([reduce(band[:, :, a : b + 1], 2) for a, b in cols.tolist()], 2)


def _gather(maps: Tensor, joints: Tensor) -> Pixels:
    """``(y, x) -> maps[joints, y, x]`` through one flat index (faster than three)."""
    _, h, w = maps.shape
    flat = maps.reshape(-1)
    base = joints * h

    def pixels(y: Tensor, x: Tensor) -> Tensor:
        return flat[(base + y) * w + x]

    return pixels


def _mirrored(value: Pixels, width: int, y: Tensor, x: Tensor) -> Tensor:
    return value(y, width - 1 - x)


def bilinear_at(
    value: Pixels, ys: Tensor, xs: Tensor, in_hw: tuple[int, int], out_hw: tuple[int, int]
) -> Tensor:
    """``F.interpolate(src, out_hw, 'bilinear', align_corners=False)[..., ys, xs]`` bit for bit
    without the resize: ``value(y, x)`` returns source pixels (any leading shape over ys/xs).

    The arithmetic is torch's CPU kernel's: ``h0 * (w0*a + w1*b) + h1 * (w0*c + w1*d)`` with both
    inner sums and the outer sum fused (checked against F.interpolate by the tests for float32
    maps with sides >= 32; the kernel differs for tiny maps and for exactly 3 channels per
    call, which the decoder's calls never have for 17 joints).
    """
    y0, y1, h1 = _source_index(ys, in_hw[0], out_hw[0])
    x0, x1, w1 = _source_index(xs, in_hw[1], out_hw[1])
    h0, w0 = 1 - h1, 1 - w1
    a, b, c, d = value(y0, x0), value(y0, x1), value(y1, x0), value(y1, x1)
    top = _fma(w0, a, w1 * b)
    bottom = _fma(w0, c, w1 * d)
    return _fma(h0, top, h1 * bottom)


def grid_bilinear(
    maps: Tensor, joints: Tensor, ys: Tensor, xs: Tensor, out_hw: tuple[int, int]
) -> Tensor:
    """(n, S, S) :func:`bilinear_at` of (K, h, w) ``maps`` over the grid of ascending output rows
    ``ys[i]`` (n, S) by columns ``xs[i]`` of joint ``joints[i]``, bit for bit, separably: each
    fused row sum ``w0*a + w1*b`` is computed once per source row of the grid, not per pixel."""
    in_h, in_w = int(maps.shape[1]), int(maps.shape[2])
    y0, y1, h1 = _source_index(ys, in_h, out_hw[0])
    x0, x1, w1 = _source_index(xs, in_w, out_hw[1])
    base = y0[:, :1]  # the grid's first source row (the index maps are monotone)
    band = int((y1[:, -1] - base[:, 0]).max()) + 1 if len(ys) else 1
    rows = (base + torch.arange(band, device=ys.device)).clamp_max(in_h - 1)[:, :, None]
    flat = maps.reshape(-1)
    start = (joints[:, None, None] * in_h + rows) * in_w
    w1 = w1[:, None, :]
    row = _fma(1 - w1, flat[start + x0[:, None, :]], w1 * flat[start + x1[:, None, :]])
    width = xs.shape[1]
    top = row.gather(1, (y0 - base)[:, :, None].expand(-1, -1, width))
    bottom = row.gather(1, (y1 - base)[:, :, None].expand(-1, -1, width))
    h1 = h1[:, :, None]
    return _fma(1 - h1, top, h1 * bottom)


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
        if not point_exact(self.maps[0]):
            # The point formula reproduces the float32 kernel only; other dtypes (float64 test
            # data) and tiny maps take the full resize, then float32 as the decoder always did.
            return self._full[joints, :, ys, xs]
        if "_mids" in self.__dict__ or ys.numel() > MID_POINTS:
            return torch.stack(
                [
                    bilinear_at(
                        _gather(m, joints), ys, xs, (int(m.shape[1]), int(m.shape[2])), self.out_hw
                    )
                    for m in self._mids
                ],
                dim=-1,
            )
        out = []
        for m, mirror in zip(self.maps, self.mirrored, strict=True):
            first_hw = (int(m.shape[1]), int(m.shape[2]))

            first = _gather(m, joints)

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

    @cached_property
    def _mids(self) -> tuple[Tensor, ...]:
        """Per pass the (K, h', w') maps the final resize reads: resized to ``mid_hw`` (all
        joints in one call) and mirrored; point values read from them equal the nested ones."""
        out = []
        for m, mirror in zip(self.maps, self.mirrored, strict=True):
            x = m if self.mid_hw is None else _resize_as_points(m[None], self.mid_hw)[0]
            out.append(torch.flip(x, [2]) if mirror else x)
        return tuple(out)

    @cached_property
    def _batched(self) -> Tensor:
        out = [_resize_as_points(m[None], self.out_hw)[0] for m in self._mids]
        return torch.stack(out, 1).float()

    def full(self) -> Tensor:
        """(K, T, H, W) float32 tags of every joint at full resolution, kept once computed; equal
        to :meth:`at` (for float32 maps all channels are resized in one call, which is faster)."""
        return self._batched if point_exact(self.maps[0]) else self._full

    @property
    def projected(self) -> bool:
        """Whether :meth:`full` was already computed (then reading it is free)."""
        return ("_batched" if point_exact(self.maps[0]) else "_full") in self.__dict__

    @cached_property
    def _tile_box(self) -> tuple[Tensor, Tensor]:
        h, w = self.out_hw
        lows, highs = [], []
        for m, mirror in zip(self.maps, self.mirrored, strict=True):
            mh, mw = int(m.shape[1]), int(m.shape[2])
            first_h, first_w = self.mid_hw or (mh, mw)
            rows = _tile_spans(h, first_h, self.device)
            cols = _tile_spans(w, first_w, self.device)
            if mirror:  # the mirrored map's column x reads column first_w - 1 - x
                cols = (first_w - 1 - cols).flip(1)
            if self.mid_hw is not None:
                rows, cols = _through(rows, mh, first_h), _through(cols, mw, first_w)
            lows.append(_tile_reduce(m, rows, cols, torch.amin))
            highs.append(_tile_reduce(m, rows, cols, torch.amax))
        lo, hi = torch.stack(lows, -1).double(), torch.stack(highs, -1).double()
        # bilinear values are convex combinations: within [lo, hi] up to float32 rounding
        margin = 1e-6 * torch.maximum(lo.abs(), hi.abs()) + 1e-30
        return lo - margin, hi + margin

    def tile_box(self) -> tuple[Tensor, Tensor]:
        """Lowest and highest (K, rows, cols, T) float64 tag value of each ``TILE``-pixel output
        tile, from the source pixels it reads (a bilinear value lies between its sources)."""
        return self._tile_box

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


def stage_heatmaps(output: PoseOutput) -> Tensor:
    """(1, K, h, w) heatmaps of one pass averaged over its two resolutions, at the higher one
    (the official ``get_multi_stage_outputs``, before flipping back)."""
    high = output.high_heatmaps
    # channels are resized independently: only the K heatmaps of the low output are needed
    low = _resize(output.heatmaps, (int(high.shape[-2]), int(high.shape[-1])))
    return low.add_(high).div_(2)  # (low + high) / 2, in the resize's own buffer


@dataclass(frozen=True)
class HeatSource:
    """The final heatmaps, kept at the networks' resolution and projected only where read.

    ``maps``: per scale (official order) the (K, h, w) heatmaps averaged over resolutions and
    flip; the final map at ``out_hw`` is the mean over scales of their bilinear projections.
    :meth:`at` evaluates it at pixels, :meth:`plane` projects one joint, :meth:`full` all.
    """

    maps: tuple[Tensor, ...]
    out_hw: tuple[int, int]

    @property
    def num_joints(self) -> int:
        return int(self.maps[0].shape[0])

    @property
    def device(self) -> torch.device:
        return self.maps[0].device

    @property
    def exact_points(self) -> bool:
        """Whether :meth:`at` is bit-exact without projecting (float32: the kernel we mirror)."""
        return all(point_exact(m) for m in self.maps)

    @cached_property
    def _full(self) -> Tensor:
        resize = _resize_as_points if self.exact_points else _resize
        final = None
        for m in self.maps:
            up = resize(m[None], self.out_hw)[0]
            final = up if final is None else final + up
        assert final is not None
        return (final / float(len(self.maps)) if len(self.maps) > 1 else final).float()

    def full(self) -> Tensor:
        """(K, H, W) float32 final heatmaps (the official projection of every joint), projected
        once and kept (peaks and refine may both need them)."""
        return self._full

    @property
    def projected(self) -> bool:
        """Whether :meth:`full` was already computed (then reading it is free)."""
        return "_full" in self.__dict__

    def plane(self, joint: int) -> Tensor:
        """(H, W) float32 final heatmap of one joint, equal to ``full()[joint]``."""
        if not self.exact_points or self.projected:
            return self._full[joint]
        final = None
        for m in self.maps:
            up = _resize(m[joint][None, None], self.out_hw)[0, 0]
            final = up if final is None else final + up
        assert final is not None
        return final / float(len(self.maps)) if len(self.maps) > 1 else final

    def at(self, joints: Tensor, ys: Tensor, xs: Tensor) -> Tensor:
        """Float32 final heatmap values of joint ``joints`` at (ys, xs) (broadcast together)."""
        if not self.exact_points:
            return self._full[joints, ys, xs]
        final = None
        for m in self.maps:
            v = bilinear_at(
                _gather(m, joints), ys, xs, (int(m.shape[1]), int(m.shape[2])), self.out_hw
            )
            final = v if final is None else final + v
        assert final is not None
        return final / float(len(self.maps)) if len(self.maps) > 1 else final

    @cached_property
    def _scale_tile_max(self) -> Tensor:
        """(scales, K, rows, cols) per scale and ``TILE``-pixel output tile the largest source
        value it reads: a bilinear value is at most its largest source."""
        h, w = self.out_hw
        return torch.stack(
            [
                _tile_reduce(
                    m,
                    _tile_spans(h, int(m.shape[1]), self.device),
                    _tile_spans(w, int(m.shape[2]), self.device),
                    torch.amax,
                )
                for m in self.maps
            ]
        )

    @cached_property
    def _tile_max(self) -> Tensor:
        """(K, rows, cols) largest source value per tile over scales (a mean is at most its
        largest term)."""
        return self._scale_tile_max.amax(0)

    def tile_upper(self) -> Tensor:
        """(K, rows, cols) float64 upper bound of the final values in each tile: the mean over
        scales of the per-scale tile maxima (0 for those <= 0), with a margin for rounding."""
        # float32 rounding can lift a convex combination of values <= m an ulp above m > 0,
        # never above 0 when m <= 0: a tile of zeros keeps the exact bound 0 (ties matter)
        tmax = self._scale_tile_max.double().clamp_min(0)
        return tmax.mean(0) * (1 + 1e-6)

    @property
    def tile_count(self) -> int:
        """Tiles per joint map."""
        return int(self._tile_max.shape[1] * self._tile_max.shape[2])

    def tiles(self, thresholds: Tensor) -> Tensor:
        """(n, 3) joint, tile row, tile column of the ``TILE``-pixel output tiles where a value
        of joint j can exceed ``thresholds[j]``; joints with an infinite threshold are skipped."""
        joints = torch.nonzero(torch.isfinite(thresholds))[:, 0]
        # rounding can lift a convex combination an ulp above its sources: keep a margin
        limit = (thresholds - 1e-6 * thresholds.abs() - 1e-30)[joints, None, None]
        found = torch.nonzero(self._tile_max[joints] > limit)
        found[:, 0] = joints[found[:, 0]]
        return found

    def tile_values(self, tiles: Tensor, halo: int) -> tuple[Tensor, Tensor, Tensor]:
        """Rows (n, S), columns (n, S) and values (n, S, S) of ``tiles`` grown by ``halo``
        pixels (S = TILE + 2 halo), read from :meth:`full` once that exists; pixels outside the
        map are -inf."""
        h, w = self.out_hw
        tile = TILE
        offs = torch.arange(-halo, tile + halo, device=self.device)
        ys = tiles[:, 1, None] * tile + offs
        xs = tiles[:, 2, None] * tile + offs
        inside = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
        cy, cx = ys.clamp(0, h - 1), xs.clamp(0, w - 1)
        if self.projected and halo == 0 and h % tile == 0 and w % tile == 0:  # read blocks
            blocks = self._full.reshape(-1, h // tile, tile, w // tile, tile)
            vals = blocks[tiles[:, 0], tiles[:, 1], :, tiles[:, 2], :]
        elif self.projected:  # read, not projected again
            vals = _gather(self._full, tiles[:, 0, None, None])(cy[:, :, None], cx[:, None, :])
        elif self.exact_points:  # the same values as at(), row sums shared across the grid
            vals = None
            for m in self.maps:
                v = grid_bilinear(m, tiles[:, 0], cy, cx, self.out_hw)
                vals = v if vals is None else vals + v
            assert vals is not None
            vals = vals / float(len(self.maps)) if len(self.maps) > 1 else vals
        else:
            vals = self.at(tiles[:, 0, None, None], cy[:, :, None], cx[:, None, :])
        return ys, xs, vals.masked_fill(~inside, -torch.inf)


def aggregate(
    per_scale: Sequence[tuple[float, PoseOutput, PoseOutput | None]],
    flip_index: Sequence[int],
    base_size: tuple[int, int],
) -> tuple[HeatSource, TagSource]:
    """Final heatmaps at ``base_size`` (w, h) and the scale-1 tags, both evaluated lazily.

    ``per_scale``: (scale, output, flipped output or None), in the official order (scales
    sorted from largest to smallest). Only scale 1 contributes tags, as the official code.
    """
    hw = (base_size[1], base_size[0])
    flip = list(flip_index)
    heats: list[Tensor] = []
    source: TagSource | None = None
    single = len(per_scale) == 1
    for scale, output, flipped in per_scale:
        heat = stage_heatmaps(output)
        if flipped is not None:
            fheat = torch.flip(stage_heatmaps(flipped), [3])[:, flip]
            heat = heat.add_(fheat).div_(2.0)  # folded: one projection, not two (see above)
        heats.append(heat[0])
        if scale == 1 or single:
            mid = (int(output.high.shape[-2]), int(output.high.shape[-1]))
            maps = [output.tags[0]]
            mirrored = [False]
            if flipped is not None:
                maps.append(flipped.tags[0][flip])
                mirrored.append(True)
            source = TagSource(tuple(maps), tuple(mirrored), mid, hw)
    if source is None:
        raise ValueError("multi-scale test needs scale 1.0 among the scales (its tags are used)")
    return HeatSource(tuple(heats), hw), source
