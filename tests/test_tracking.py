"""Tracking ids and One-Euro smoothing, on planted people run through the real Predictor."""

from __future__ import annotations

import numpy as np
import pytest

from hrpose.decode import DecodeParams
from hrpose.predict import Predictor
from hrpose.skeleton import COCO17
from hrpose.tracking import OneEuroFilter, PoseTracker, Smoother, oks
from planted import PlantedNet, person_at

IMAGE_WH = (320, 256)  # the network input at 256 is the image itself: 0.2 s per frame
INPUT = 256


def _person(x: float, y: float, rng) -> np.ndarray:
    kp = np.zeros((17, 3))
    kp[:, 0] = x + rng.uniform(-20, 20, 17)
    kp[:, 1] = y + rng.uniform(-50, 50, 17)
    kp[:, 2] = 0.9
    return kp


def _decode(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Decoded keypoints (P, K, 3) per frame: planted outputs through the real Predictor."""
    predictor = Predictor(
        PlantedNet(frames, IMAGE_WH, INPUT), input_size=INPUT, params=DecodeParams(flip=False)
    )
    image = np.zeros((IMAGE_WH[1], IMAGE_WH[0], 3), np.uint8)
    return [predictor(image).keypoints for _ in frames]


def _track(decoded: list[np.ndarray], tracker: PoseTracker) -> list[np.ndarray]:
    """Track ids (P,) per frame, fed frame by frame as the video command does."""
    return [tracker.update(kp) for kp in decoded]


def _ids_of_truth(decoded: np.ndarray, ids: np.ndarray, truth: np.ndarray) -> list[int]:
    """The track id of the decoded person nearest to each planted person (checked: within 3 px)."""
    d = np.linalg.norm(decoded[:, None, :, :2] - truth[None], axis=3).mean(2)  # (P, Q)
    assert d.min(0).max() < 3.0, f"a planted person was not found: {d.min(0)}"
    return [int(ids[p]) for p in d.argmin(0)]


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
    assert tracker.update(people).tolist() == [0, 1, 2]
    moved = people[[2, 0, 1]].copy()
    moved[..., 0] += 3  # a small shift, order shuffled
    assert tracker.update(moved).tolist() == [2, 0, 1]
    newcomer = np.concatenate([moved, _person(700, 200, rng)[None]])
    assert tracker.update(newcomer).tolist() == [2, 0, 1, 3]
    assert tracker.update(np.zeros((0, 17, 3))).tolist() == []
    with pytest.raises(ValueError, match=r"\(P, 17, 3\)"):
        tracker.update(np.zeros((2, 17, 2)))


def test_near_duplicates_keep_their_ids_by_score() -> None:
    """The decoder can return a person twice (same joints, a much lower score); positions alone
    cannot tell the copies apart, person scores can."""
    rng = np.random.default_rng(3)
    person = _person(200, 200, rng)
    copy = person.copy()
    copy[:, :2] += 1.5
    tracker = PoseTracker(COCO17.sigmas)
    assert tracker.update(np.stack([person, copy]), np.array([0.5, 0.1])).tolist() == [0, 1]
    # next frame: the strong one lands where the copy was and vice versa
    assert tracker.update(np.stack([copy, person]), np.array([0.48, 0.12])).tolist() == [0, 1]
    assert PoseTracker(COCO17.sigmas).update(np.stack([person, copy])).tolist() == [0, 1]
    with pytest.raises(ValueError, match="2 person scores"):
        tracker.update(np.stack([person, copy]), np.array([0.5]))


def _truth_ids(decoded, ids, frames) -> list[list[int]]:
    """Per frame, the track id of each planted person (after checking every one was found)."""
    assert len(decoded) == len(frames) == len(ids)
    out = []
    for kp, i, truth in zip(decoded, ids, frames, strict=True):
        assert len(kp) == len(truth)
        out.append(_ids_of_truth(kp, i, truth))
    return out


def test_ids_survive_motion() -> None:
    walks = [(60, 130, 8, 0), (260, 120, -7, 2), (160, 110, 1, 4)]  # x, y, dx, dy per frame
    frames = [np.stack([person_at(x + dx * t, y + dy * t) for x, y, dx, dy in walks])
              for t in range(8)]  # fmt: skip
    decoded = _decode(frames)
    per_frame = _truth_ids(decoded, _track(decoded, PoseTracker(COCO17.sigmas)), frames)
    assert all(f == per_frame[0] for f in per_frame) and len(set(per_frame[0])) == 3


def test_ids_survive_crossing() -> None:
    """Two people walk through each other between two frames, 8 px apart vertically.

    At the first frame after the crossing each one stands closer to where the *other* was (8 px)
    than to where it was itself (14 px): matching on last positions swaps them, the tracker's
    constant-velocity forecast does not.
    """
    frames = [np.stack([person_at(100 + 12 * t, 124), person_at(232 - 12 * t, 132)])
              for t in range(10)]  # fmt: skip
    decoded = _decode(frames)
    per_frame = _truth_ids(decoded, _track(decoded, PoseTracker(COCO17.sigmas)), frames)
    assert per_frame[0][0] != per_frame[0][1]
    assert all(f == per_frame[0] for f in per_frame), per_frame


def test_short_occlusion_gets_the_id_back() -> None:
    """Person 1 walks behind something for 3 frames and comes out where its walk leads."""
    walks = [(70, 130, 8), (250, 126, -6)]
    frames = []
    for t in range(10):
        people = [person_at(x + dx * t, y) for x, y, dx in walks]
        frames.append(np.stack(people if not 3 <= t < 6 else people[:1]))
    decoded = _decode(frames)
    tracker = PoseTracker(COCO17.sigmas, max_age=5)
    per_frame = _truth_ids(decoded, _track(decoded, tracker), frames)
    before = per_frame[2]
    assert len(before) == 2 and per_frame[6] == before and per_frame[9] == before
    assert all(f == before[:1] for f in per_frame[3:6])
    assert tracker.next_id == 2  # no id was spent on the returning person

    short_lived = PoseTracker(COCO17.sigmas, max_age=2)  # a track lives 2 missed frames only
    late = _truth_ids(decoded, _track(decoded, short_lived), frames)
    assert late[6][1] != late[2][1] and short_lived.next_id == 3


def test_smoother_reduces_jitter_through_the_predictor() -> None:
    """A person drifting slowly, its joints jittered by 3 px a frame: One-Euro halves the error."""
    rng = np.random.default_rng(0)
    truth = [person_at(150 + 0.5 * t, 128) for t in range(24)]
    decoded = _decode([(p + rng.normal(0, 3.0, p.shape))[None] for p in truth])
    assert all(len(kp) == 1 for kp in decoded)
    ids = _track(decoded, PoseTracker(COCO17.sigmas))
    assert all(i.tolist() == [0] for i in ids)
    smoother = Smoother(fps=25)
    smoothed = [smoother(kp, i) for kp, i in zip(decoded, ids, strict=True)]

    def err(kps: list[np.ndarray]) -> float:
        return float(np.mean([np.linalg.norm(kp[0, :, :2] - t, axis=1).mean()
                              for kp, t in zip(kps[8:], truth[8:], strict=True)]))  # fmt: skip

    assert err(decoded) > 2.0  # the jitter reaches the decoded keypoints
    assert err(smoothed) < 0.6 * err(decoded)


def test_one_euro_reduces_jitter() -> None:
    rng = np.random.default_rng(2)
    f = OneEuroFilter(fps=30, min_cutoff=1.0, beta=0.0)
    truth = np.full((17, 2), 50.0)
    noisy = [truth + rng.normal(0, 2, truth.shape) for _ in range(60)]
    smooth = [f(x) for x in noisy]
    err_noisy = np.mean([np.abs(x - truth).mean() for x in noisy[10:]])
    err_smooth = np.mean([np.abs(x - truth).mean() for x in smooth[10:]])
    assert err_smooth < 0.6 * err_noisy
