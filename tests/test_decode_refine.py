"""Refine's search (decode/argmax.py): the official argmax, first index on ties, no full maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hrpose.decode import Transform, aggregate, argmax, decode, pipeline
from hrpose.decode.aggregate import TILE, HeatSource, TagSource
from hrpose.decode.argmax import _bound, _near, tag_argmax
from hrpose.decode.refine import refine
from synthetic import make_outputs, random_people


def _official_argmax(heat: HeatSource, tags: TagSource, joint: int, mean: np.ndarray) -> int:
    """The official rule on full planes, in numpy: ``np.argmax(det - np.round(dist))``."""
    det = heat.full()[joint].numpy()
    tag = tags.planes(joint).float().permute(1, 2, 0).numpy()  # (H, W, T)
    tt = ((tag - mean[None, None, :]) ** 2).sum(axis=2) ** 0.5
    return int(np.argmax(det - np.round(tt)))


def _sources(seed: int, noise: float = 0.0, k: int = 3) -> tuple[HeatSource, TagSource]:
    """Heatmaps with a few peaks (optionally noisy) and tags in flat regions, flip test on:
    32x40 tags -> 64x80 -> 128x160 output, heatmaps 64x80."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(64.0), torch.arange(80.0), indexing="ij")
    heat = torch.zeros(k, 64, 80)
    for j in range(k):
        for _ in range(3):
            cy, cx = torch.rand(2, generator=g) * torch.tensor([64.0, 80.0])
            blob = torch.exp(-((ys - cy) ** 2 + (xs - cx) ** 2) / 8) * (
                0.5 + torch.rand(1, generator=g)
            )
            heat[j] = torch.maximum(heat[j], blob)
    heat += noise * torch.randn(heat.shape, generator=g)
    region = (torch.arange(40.0)[None, :] // 10 + torch.arange(32.0)[:, None] // 16) * 1.5
    tags = region[None].repeat(k, 1, 1) + 0.05 * torch.randn(k, 32, 40, generator=g)
    flipped = tags.flip(-1) + 0.05 * torch.randn(k, 32, 40, generator=g)
    return HeatSource((heat,), (128, 160)), TagSource(
        (tags, flipped), (False, True), (64, 80), (128, 160)
    )


POINTS = {"argmax.FULL_SHARE": 1e9, "argmax.TAG_BULK": 1e9}  # never project full maps
PATHS = {  # the cost switches pushed to force each way of reading the maps
    "default": {},
    "points": POINTS,
    "points, mid tags": {**POINTS, "aggregate.MID_POINTS": 0},
    "full maps": {"argmax.FULL_SHARE": 0.0, "argmax.TAG_BULK": 0.0},
    "heavy joints to full planes": {"argmax.HEAVY_SHARE": 0.0},
    "tile search": {**POINTS, "argmax.TILE_BUDGET": 1.0, "argmax.LEVELS": (0.9,)},
    "no tile search": {**POINTS, "argmax.TILE_BUDGET": 0.0},
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("noise", [0.0, 0.05])
def test_search_matches_the_official_rule(noise: float, path: str, monkeypatch) -> None:
    """Means near and far from every tag, clean and noisy maps, every way of reading the maps:
    the search's pixel is the official one (and the full-plane path's)."""
    for name, value in PATHS[path].items():
        module, attr = name.split(".")
        monkeypatch.setattr({"argmax": argmax, "aggregate": aggregate}[module], attr, value)
    for seed in range(3):
        heat, tags = _sources(seed, noise)
        means = torch.tensor(
            [[0.0, 0.0], [1.5, 1.5], [3.2, 2.9], [4.4, 4.6], [100.0, 100.0], [-7.0, 2.0]]
        )
        joints = torch.arange(3).repeat_interleave(len(means))
        m = means.repeat(3, 1)
        got = tag_argmax(heat, tags, joints, m)
        full = tag_argmax(heat, tags, joints, m, tiled=False)
        want = [
            _official_argmax(heat, tags, int(j), mm.numpy())
            for j, mm in zip(joints, m, strict=True)
        ]
        assert got.tolist() == want and full.tolist() == want


def test_ties_take_the_first_pixel() -> None:
    """A flat zero heatmap and a tag ramp: many pixels tie on the best score; the first one
    (row-major) wins, as numpy's argmax, also where the tied tiles come in another order."""
    heat, tags = _sources(0)
    zero = HeatSource((torch.zeros_like(heat.maps[0]),), heat.out_hw)
    ramp = torch.arange(40.0)[None, None, :].repeat(3, 32, 1) / 8
    ramp[:, :, :8] = 9.0  # the left tiles are far from the means below
    tilted = TagSource((ramp, ramp.flip(-1)), (False, True), (64, 80), (128, 160))
    means = torch.tensor([[2.5, 2.5], [1.0, 3.9], [9.0, 9.0], [4.0, 4.0]])
    joints = torch.zeros(len(means), dtype=torch.int64)
    for source in (tags, tilted):
        got = tag_argmax(zero, source, joints, means)
        want = [_official_argmax(zero, source, 0, m.numpy()) for m in means]
        assert got.tolist() == want
    plateau = HeatSource((torch.full_like(heat.maps[0], 0.5),), heat.out_hw)
    got = tag_argmax(plateau, tilted, joints, means)
    assert got.tolist() == [_official_argmax(plateau, tilted, 0, m.numpy()) for m in means]


def test_tile_bounds_hold() -> None:
    """Per tile, no pixel scores above the bound (source maxima and tag boxes, mirrored pass
    included)."""
    heat, tags = _sources(1, noise=0.05)
    means = torch.tensor([[0.2, 4.1], [1.5, 1.5], [6.0, 0.0]])
    for j in range(3):
        joints = torch.full((len(means),), j)
        bound = _bound(heat.tile_upper()[joints].flatten(1), _near(tags, joints, means))
        det = heat.full()[j]
        tag = tags.planes(j).float()
        for q, m in enumerate(means):
            score = det - ((tag - m[:, None, None]) ** 2).sum(0).sqrt().round()
            tile_max = score.reshape(128 // TILE, TILE, 160 // TILE, TILE).amax((1, 3))
            assert torch.all(tile_max.flatten().double() <= bound[q])


def _forbid_full_maps(monkeypatch) -> None:
    def forbidden(*_a, **_k):
        raise AssertionError("full-resolution maps built")

    for cls, name in [(HeatSource, "full"), (HeatSource, "plane"), (TagSource, "planes")]:
        monkeypatch.setattr(cls, name, forbidden)
    monkeypatch.setattr(TagSource, "full", forbidden)


def test_far_fragment_needs_no_full_planes(monkeypatch) -> None:
    """A one-joint person whose mean tag is far from every pixel (no pixel scores above a
    share of the peak, where the earlier search gave up and projected full planes): the tile
    bounds settle it, and it equals the full-plane reference and the official rule."""
    xy, wh = random_people(3, (640, 480), seed=2)
    outs, flips = make_outputs(xy, np.arange(3) * 3.0, wh, seed=2)
    outs, flips = [t.float() for t in outs], [t.float() for t in flips]
    seen = {}

    def keep(people, heat, tags, tiled=None):
        seen.update(people=people, heat=heat, tags=tags)
        return people

    monkeypatch.setattr(pipeline, "refine", keep)
    decode([outs], [Transform.for_image((640, 480))], flip_outputs=[flips])
    monkeypatch.undo()
    people, heat, tags = seen["people"], seen["heat"], seen["tags"]
    fragment = np.zeros((1, *people.shape[1:]), people.dtype)
    fragment[0, 0, :3] = (100, 100, 0.5)
    fragment[0, 0, 3:] = 40.0  # all tags are within 0..6
    people = np.concatenate([people, fragment])
    reference = refine(people, heat, tags, tiled=False)
    _forbid_full_maps(monkeypatch)
    searched = refine(people, heat, tags)
    monkeypatch.undo()
    assert np.array_equal(searched, reference)
    for k in range(1, 17):
        flat = _official_argmax(heat, tags, k, fragment[0, 0, 3:].astype(np.float32))
        x, y = flat % heat.out_hw[1], flat // heat.out_hw[1]
        assert (
            abs(searched[-1, k, 0] - (x + 0.5)) <= 0.25
            and abs(searched[-1, k, 1] - (y + 0.5)) <= 0.25
        )


def test_mid_maps_and_full_tags_equal_points() -> None:
    """Tags at many points (read from the resized mid maps) and the batched full planes equal
    the nested point formula and the per-joint planes, bit for bit."""
    _, tags = _sources(3)
    g = torch.Generator().manual_seed(0)
    j, y, x = (torch.randint(0, n, (20000,), generator=g) for n in (3, 128, 160))
    few = torch.cat(
        [tags.at(j[i : i + 1000], y[i : i + 1000], x[i : i + 1000]) for i in range(0, 20000, 1000)]
    )
    many = tags.at(j, y, x)
    assert "_mids" in tags.__dict__  # the bulk path was taken
    assert torch.equal(few, many)
    planes = torch.stack([tags.planes(k) for k in range(3)])
    assert torch.equal(tags.full(), planes)
    assert torch.equal(many, planes[j, :, y, x])


def test_tile_values_equal_points_and_full_maps() -> None:
    """The separable tile projection (row sums shared) equals the point formula and the full
    projection bit for bit, with halos and at the borders, for one and two scales; once the
    full maps exist, tiles are read from them."""
    g = torch.Generator().manual_seed(1)
    for shapes, out in [([(64, 80)], (128, 160)), ([(37, 53), (50, 70)], (96, 150))]:
        heat = HeatSource(tuple(torch.rand(17, h, w, generator=g) for h, w in shapes), out)
        rows, cols = -(-out[0] // TILE), -(-out[1] // TILE)
        tiles = torch.cartesian_prod(torch.arange(17), torch.arange(rows), torch.arange(cols))
        projected = {halo: heat.tile_values(tiles, halo) for halo in (0, 2)}
        full = heat.full()
        for halo, (ys, xs, vals) in projected.items():
            cy, cx = ys.clamp(0, out[0] - 1)[:, :, None], xs.clamp(0, out[1] - 1)[:, None, :]
            inside = torch.isfinite(vals)
            points = heat.at(tiles[:, 0, None, None], cy, cx)
            assert torch.equal(vals[inside], points[inside])
            assert torch.equal(vals[inside], full[tiles[:, 0, None, None], cy, cx][inside])
            assert torch.equal(heat.tile_values(tiles, halo)[2], vals)  # read from full
