"""decode on planted people: positions, grouping, flip, refine, empty and bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from munkres import Munkres  # munkres==1.1.4 (dev extra): the official grouping's solver

from hrpose.decode import DecodeParams, Transform, decode, input_size_for, preprocess
from hrpose.decode.munkres import munkres
from synthetic import make_outputs, random_people


def _planted(n: int, image=(640, 480), tag_step=3.0, visible=None, seed=0):
    xy, (w, h) = random_people(n, image, seed=seed)
    outs, flips = make_outputs(xy, np.arange(n) * tag_step, (w, h), visible=visible, seed=seed)
    _, center, scale = input_size_for(image)
    truth = Transform(center, scale, (w, h)).to_image(xy)
    return outs, flips, truth


def _match(people, truth):
    """For each planted person, the decoded person closest to it (mean joint distance)."""
    d = np.linalg.norm(people.keypoints[:, None, :, :2] - truth[None], axis=3).mean(2)
    return d.argmin(0), d.min(0)


@pytest.mark.parametrize("flip", [False, True])
def test_planted_people_are_found(flip: bool) -> None:
    outs, flips, truth = _planted(4)
    people = decode(outs, image_size=(640, 480), flip_outputs=flips if flip else None)
    assert len(people) == 4 and people.keypoints.shape == (4, 17, 3)
    assert people.tags.shape == (4, 17, 2 if flip else 1)
    idx, err = _match(people, truth)
    assert sorted(idx) == [0, 1, 2, 3]
    assert err.max() < 1.5  # image pixels: 640 px image at 512 input
    assert np.all(people.scores > 0.5) and np.all(people.keypoints[:, :, 2] > 0.5)


def test_close_tags_still_group() -> None:
    outs, flips, truth = _planted(5, image=(480, 640), tag_step=0.6, seed=12)
    people = decode(outs, image_size=(480, 640), flip_outputs=flips)
    idx, err = _match(people, truth)
    assert len(set(idx)) == 5 and err.max() < 2.0


def test_refine_fills_a_weak_joint() -> None:
    visible = np.ones((2, 17))
    visible[0, 9] = 0.0  # left wrist of person 0 has no peak above the threshold ...
    outs, flips, truth = _planted(2, visible=visible, seed=3)
    low = outs[0].clone()
    low[0, 9] += 0.05 * (low[0, 9] == 0)  # ... just a faint plateau, below detection_threshold
    without = decode([low, outs[1]], image_size=(640, 480), refine=False)
    with_refine = decode([low, outs[1]], image_size=(640, 480))
    p = _match(without, truth)[0][0]
    assert without.keypoints[p, 9, 2] == 0
    assert with_refine.keypoints[p, 9, 2] > 0  # refine placed it where the person's tag fits


def test_empty_and_bad_inputs() -> None:
    zeros = [torch.zeros(1, 34, 128, 160), torch.zeros(1, 17, 256, 320)]
    people = decode(zeros, image_size=(640, 480), flip_outputs=zeros)
    assert len(people) == 0 and people.keypoints.shape == (0, 17, 3)
    with pytest.raises(ValueError, match="channels"):
        decode([torch.zeros(1, 20, 16, 16)], image_size=(64, 64))
    with pytest.raises(ValueError, match="scale 1.0|1.0"):
        DecodeParams(scales=(2.0, 0.5))
    with pytest.raises(TypeError, match="unknown decode parameter"):
        decode(zeros, image_size=(640, 480), refin=False)


def test_more_than_max_people_candidates() -> None:
    outs, flips, _ = _planted(34, seed=5)
    people = decode(outs, image_size=(640, 480), flip_outputs=flips)
    assert len(people) >= 30 and np.isfinite(people.keypoints).all()


def test_preprocess_geometry() -> None:
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    x, tf = preprocess(image, 512)
    assert x.shape == (3, 512, 704) and tf.size == (704, 512)  # long side up to a multiple of 64
    assert preprocess(image[:100, :50], 512)[0].shape == (3, 1024, 512)
    # an input pixel maps back into the image consistently with the forward warp
    from hrpose.decode import affine_transform

    fwd = affine_transform(tf.center, tf.scale, tf.size)
    p = np.array([[123.0, 77.0]])
    there = p @ fwd[:, :2].T + fwd[:, 2]
    assert np.allclose(tf.to_image(there), p, atol=1e-3)
    # and the warp puts the image's content there: a bright square around p lands at `there`
    square = np.zeros_like(image)
    square[70:85, 116:131] = 255
    warped = preprocess(square, 512)[0][0]
    tx, ty = np.round(there[0]).astype(int)
    assert float(warped[ty, tx]) == float(warped.max()) > float(warped.min())
    assert float(warped[ty, tx + 20]) == float(warped.min())
    with pytest.raises(ValueError, match="RGB"):
        preprocess(image[:, :, 0])


def test_munkres_is_optimal() -> None:
    from itertools import permutations

    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 6))
        cost = rng.integers(0, 4, (n, n)).astype(float)
        pairs = munkres(cost)
        best = min(sum(cost[i, p[i]] for i in range(n)) for p in permutations(range(n)))
        assert sum(cost[r, c] for r, c in pairs) == best and [r for r, _ in pairs] == list(range(n))


def test_munkres_ties_like_classic_munkres() -> None:
    rng = np.random.default_rng(1)
    for _ in range(300):
        r, c = int(rng.integers(1, 9)), int(rng.integers(1, 9))
        cost = rng.integers(0, 3, (r, c)).astype(float)
        expected = [tuple(map(int, p)) for p in Munkres().compute(cost.tolist())]
        assert munkres(cost) == expected
