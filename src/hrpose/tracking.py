"""Stable person ids across video frames (OKS + Hungarian matching) and One-Euro smoothing.

Pure numpy (and scipy's assignment solver); the state lives in small classes that the video
loop feeds frame by frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


def oks(
    a: np.ndarray, b: np.ndarray, sigmas: Sequence[float], threshold: float = 0.1
) -> np.ndarray:
    """(P, Q) object keypoint similarity between people ``a`` (P, K, 3) and ``b`` (Q, K, 3).

    The scale is the area of ``b``'s keypoint box; joints count where both scores pass
    ``threshold``. 0 where no joint is shared.
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    var = (2 * np.asarray(sigmas)) ** 2
    vis_b = b[:, :, 2] > threshold
    lo = np.where(vis_b[..., None], b[:, :, :2], np.inf).min(1)
    hi = np.where(vis_b[..., None], b[:, :, :2], -np.inf).max(1)
    area = np.where(vis_b.any(1), np.prod(np.maximum(hi - lo, 1.0), axis=1), 1.0)
    d2 = ((a[:, None, :, :2] - b[None, :, :, :2]) ** 2).sum(-1)  # (P, Q, K)
    e = d2 / (var[None, None] * (area[None, :, None] + np.spacing(1)) * 2)
    both = (a[:, None, :, 2] > threshold) & vis_b[None]
    n = both.sum(-1)
    return np.where(n > 0, (np.exp(-e) * both).sum(-1) / np.maximum(n, 1), 0.0)


class PoseTracker:
    """Track ids by OKS against each track's constant-velocity forecast, assigned optimally.

    Each frame's people are matched to the live tracks with the Hungarian method
    (``scipy.optimize.linear_sum_assignment`` on OKS; pairs below ``min_oks`` stay unmatched).
    A track's forecast is its last pose moved by its last per-frame displacement for every frame
    since it was seen, so people who cross keep their ids, and a track missed for up to
    ``max_age`` frames is kept and gets its id back when the person reappears. Given person
    scores, the assignment also prefers a track whose last score is close (OKS minus the score
    difference): the decoder's near-duplicate people (same joints, lower score) then keep their
    own tracks instead of trading ids with the person they copy.
    """

    def __init__(
        self,
        sigmas: Sequence[float],
        min_oks: float = 0.3,
        max_age: int = 5,
        threshold: float = 0.1,
    ) -> None:
        self.sigmas = np.asarray(sigmas, np.float64)
        self.min_oks, self.max_age, self.threshold = min_oks, max_age, threshold
        self.next_id = 0
        k = len(self.sigmas)
        self.ids = np.zeros((0,), np.int64)  # (T,) live track ids
        self.keypoints = np.zeros((0, k, 3))  # (T, K, 3) pose when last seen
        self.velocity = np.zeros((0, 2))  # (T, 2) mean joint displacement per frame
        self.age = np.zeros((0,), np.int64)  # (T,) frames since last seen (0: this frame)
        self.scores = np.zeros((0,))  # (T,) person score when last seen

    def forecast(self) -> np.ndarray:
        """(T, K, 3) where each live track is expected in the next frame."""
        out = self.keypoints.copy()
        out[:, :, :2] += (self.velocity * (self.age + 1)[:, None])[:, None]
        return out

    def update(self, keypoints: np.ndarray, scores: np.ndarray | None = None) -> np.ndarray:
        """Track ids (P,) for this frame's people (P, K, 3) with person scores (P,) if known."""
        keypoints = np.asarray(keypoints, np.float64)
        scores = np.zeros(len(keypoints)) if scores is None else np.asarray(scores, np.float64)
        if scores.shape != (len(keypoints),):
            raise ValueError(f"expected {len(keypoints)} person scores, got shape {scores.shape}")
        if keypoints.ndim != 3 or keypoints.shape[1:] != (len(self.sigmas), 3):
            raise ValueError(
                f"expected keypoints of shape (P, {len(self.sigmas)}, 3) for the tracker's "
                f"{len(self.sigmas)} sigmas, got {keypoints.shape}"
            )
        sim = oks(keypoints, self.forecast(), self.sigmas, self.threshold)  # (P, T)
        gain = sim - np.abs(scores[:, None] - self.scores[None])
        rows, cols = linear_sum_assignment(-gain) if sim.size else (np.zeros(0, int),) * 2
        keep = sim[rows, cols] >= self.min_oks
        rows, cols = rows[keep], cols[keep]
        ids = np.full(len(keypoints), -1, np.int64)
        ids[rows] = self.ids[cols]
        new = np.flatnonzero(ids < 0)
        ids[new] = self.next_id + np.arange(len(new))
        self.next_id += len(new)

        # matched tracks: displacement per frame over the joints seen both times
        prev, cur = self.keypoints[cols], keypoints[rows]
        both = (prev[:, :, 2] > self.threshold) & (cur[:, :, 2] > self.threshold)
        step = ((cur[:, :, :2] - prev[:, :, :2]) * both[..., None]).sum(1)
        step = step / np.maximum(both.sum(1), 1)[:, None] / (self.age[cols] + 1)[:, None]
        lost = np.setdiff1d(np.arange(len(self.ids)), cols)
        lost = lost[self.age[lost] + 1 <= self.max_age]
        self.ids = np.concatenate([ids[rows], ids[new], self.ids[lost]])
        self.keypoints = np.concatenate([cur, keypoints[new], self.keypoints[lost]])
        self.velocity = np.concatenate([step, np.zeros((len(new), 2)), self.velocity[lost]])
        self.age = np.concatenate([np.zeros(len(rows) + len(new), np.int64), self.age[lost] + 1])
        self.scores = np.concatenate([scores[rows], scores[new], self.scores[lost]])
        return ids


class OneEuroFilter:
    """One-Euro low-pass filter (Casiez et al. 2012) for one track's (K, 2) keypoints."""

    def __init__(
        self, fps: float, min_cutoff: float = 1.0, beta: float = 0.05, d_cutoff: float = 1.0
    ):
        self.dt = 1.0 / max(fps, 1e-6)
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.x: np.ndarray | None = None
        self.dx = None

    def _alpha(self, cutoff: np.ndarray | float) -> np.ndarray:
        tau = 1.0 / (2 * math.pi * np.asarray(cutoff))
        return 1.0 / (1.0 + tau / self.dt)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x is None:
            self.x, self.dx = x.copy(), np.zeros_like(x)
            return x
        dx = (x - self.x) / self.dt
        a_d = self._alpha(self.d_cutoff)
        self.dx = a_d * dx + (1 - a_d) * self.dx
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self.dx))
        self.x = a * x + (1 - a) * self.x
        return self.x.copy()


class Smoother:
    """One One-Euro filter per track id, applied to the x, y of its keypoints."""

    def __init__(self, fps: float, **kwargs: float) -> None:
        self.fps, self.kwargs = fps, kwargs
        self.filters: dict[int, OneEuroFilter] = {}

    def __call__(self, keypoints: np.ndarray, ids: np.ndarray) -> np.ndarray:
        out = keypoints.copy()
        for p, t in enumerate(ids):
            f = self.filters.setdefault(int(t), OneEuroFilter(self.fps, **self.kwargs))
            out[p, :, :2] = f(keypoints[p, :, :2])
        return out
