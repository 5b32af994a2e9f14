"""Tracking ids across frames and One-Euro smoothing."""

from __future__ import annotations

import numpy as np

from hrpose.skeleton import COCO17
from hrpose.tracking import OneEuroFilter, PoseTracker, oks


def _person(x: float, y: float, rng) -> np.ndarray:
    kp = np.zeros((17, 3))
    kp[:, 0] = x + rng.uniform(-20, 20, 17)
    kp[:, 1] = y + rng.uniform(-50, 50, 17)
    kp[:, 2] = 0.9
    return kp


def test_oks_identity_and_far() -> None:
    rng = np.random.default_rng(0)
    a = np.stack([_person(100, 100, rng), _person(400, 100, rng)])
    s = oks(a, a, COCO17.sigmas)
    assert np.allclose(np.diag(s), 1.0) and s[0, 1] < 0.01
    assert oks(a[:0], a, COCO17.sigmas).shape == (0, 2)


def test_ids_are_stable_and_new_people_get_new_ids() -> None:
    rng = np.random.default_rng(1)
    people = np.stack([_person(100, 200, rng), _person(300, 200, rng), _person(500, 200, rng)])
    tracker = PoseTracker(COCO17.sigmas)
    first = tracker.update(people)
    assert first.tolist() == [0, 1, 2]
    moved = people[[2, 0, 1]].copy()
    moved[..., 0] += 3  # a small shift, order shuffled
    assert tracker.update(moved).tolist() == [2, 0, 1]
    newcomer = np.concatenate([moved, _person(700, 200, rng)[None]])
    assert tracker.update(newcomer).tolist() == [2, 0, 1, 3]


def test_one_euro_reduces_jitter() -> None:
    rng = np.random.default_rng(2)
    f = OneEuroFilter(fps=30, min_cutoff=1.0, beta=0.0)
    truth = np.full((17, 2), 50.0)
    noisy = [truth + rng.normal(0, 2, truth.shape) for _ in range(60)]
    smooth = [f(x) for x in noisy]
    err_noisy = np.mean([np.abs(x - truth).mean() for x in noisy[10:]])
    err_smooth = np.mean([np.abs(x - truth).mean() for x in smooth[10:]])
    assert err_smooth < 0.6 * err_noisy
