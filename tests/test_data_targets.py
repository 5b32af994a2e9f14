"""Target encoding: official heatmap and joint-index semantics, vectorised."""

from __future__ import annotations

import numpy as np

from hrpose.data.targets import gaussian_patch, heatmaps, joint_indices


def _reference_heatmaps(joints, size, sigma=2.0):
    """Straightforward per-person, per-joint loop in the official style (the spec)."""
    k = joints.shape[1]
    out = np.zeros((k, size, size), np.float32)
    g = gaussian_patch(sigma)
    for person in joints:
        for idx, (x, y, v) in enumerate(person):
            x, y = int(x), int(y)
            if v <= 0 or x < 0 or y < 0 or x >= size or y >= size:
                continue
            ul = int(np.round(x - 3 * sigma - 1)), int(np.round(y - 3 * sigma - 1))
            br = int(np.round(x + 3 * sigma + 2)), int(np.round(y + 3 * sigma + 2))
            c, d = max(0, -ul[0]), min(br[0], size) - ul[0]
            a, b = max(0, -ul[1]), min(br[1], size) - ul[1]
            cc, dd = max(0, ul[0]), min(br[0], size)
            aa, bb = max(0, ul[1]), min(br[1], size)
            out[idx, aa:bb, cc:dd] = np.maximum(out[idx, aa:bb, cc:dd], g[a:b, c:d])
    return out


def test_peak_and_neighbours() -> None:
    joints = np.zeros((1, 2, 3))
    joints[0, 0] = (10.7, 20.2, 2)  # truncated to (10, 20)
    hm = heatmaps(joints, 64)
    assert hm.shape == (2, 64, 64) and hm.dtype == np.float32
    assert hm[0, 20, 10] == 1.0 and np.unravel_index(hm[0].argmax(), (64, 64)) == (20, 10)
    assert np.isclose(hm[0, 20, 11], np.exp(-1 / 8)) and np.isclose(hm[0, 22, 10], np.exp(-4 / 8))
    assert hm[0, 20, 17] > 0 and hm[0, 20, 18] == 0  # radius 3 sigma + 1 = 7
    assert not hm[1].any()  # invisible joint


def test_bounds_and_max_over_people() -> None:
    joints = np.array([[[-0.5, 3, 1]], [[64, 3, 1]], [[63.9, 0, 1]], [[61, 1, 1]]], float)
    hm = heatmaps(joints, 64)
    assert hm[0, 3, 0] == 1.0  # int(-0.5) == 0: inside, as the official code
    assert hm[0, 0, 63] == 1.0 and hm[0, 1, 61] == 1.0  # x = 64 skipped, overlaps take the max
    assert hm[0].max() == 1.0


def test_equals_reference_on_random_people() -> None:
    rng = np.random.default_rng(0)
    for size in (64, 128):
        joints = np.zeros((12, 17, 3))
        joints[..., :2] = rng.uniform(-10, size + 10, (12, 17, 2))
        joints[..., 2] = rng.integers(0, 3, (12, 17))
        assert np.array_equal(heatmaps(joints, size), _reference_heatmaps(joints, size))
    assert heatmaps(np.zeros((0, 17, 3)), 32).shape == (17, 32, 32)


def test_joint_indices_packing_and_max_people() -> None:
    joints = np.zeros((3, 4, 3))
    joints[0] = [[1, 2, 2], [5, 5, 0], [70, 1, 2], [3, 4, 1]]  # joint 1 hidden, joint 2 outside
    joints[1] = [[0, 0, 0]] * 4
    joints[2, 3] = (7.9, 6.2, 2)
    out = joint_indices(joints, 64, max_people=2)
    assert out.shape == (2, 4, 2) and out.dtype == np.int64
    assert out[0].tolist() == [
        [0 * 4096 + 2 * 64 + 1, 1],
        [3 * 4096 + 4 * 64 + 3, 1],
        [0, 0],
        [0, 0],
    ]
    assert not out[1].any()  # no visible joints; person 3 dropped (beyond max_people)
    out3 = joint_indices(joints, 64, max_people=3)
    assert out3[2, 0].tolist() == [3 * 4096 + 6 * 64 + 7, 1]
