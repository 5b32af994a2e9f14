"""Stable person ids across video frames (greedy OKS matching) and One-Euro smoothing.

Pure numpy; the state lives in small classes that the video loop feeds frame by frame.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


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
    """Greedy OKS matching of each frame's people to the previous tracks; new ids otherwise."""

    def __init__(self, sigmas: Sequence[float], min_oks: float = 0.3, max_age: int = 5) -> None:
        self.sigmas = np.asarray(sigmas)
        self.min_oks = min_oks
        self.max_age = max_age
        self.next_id = 0
        self.tracks: dict[int, tuple[np.ndarray, int]] = {}  # id -> (keypoints, age)

    def update(self, keypoints: np.ndarray) -> np.ndarray:
        """Track ids (P,) for this frame's people (P, K, 3)."""
        ids = np.full(len(keypoints), -1, int)
        track_ids = list(self.tracks)
        if track_ids and len(keypoints):
            prev = np.stack([self.tracks[t][0] for t in track_ids])
            sim = oks(keypoints, prev, self.sigmas)
            order = np.dstack(np.unravel_index(np.argsort(-sim, axis=None), sim.shape))[0]
            used_p, used_t = set(), set()
            for p, t in order:
                if sim[p, t] < self.min_oks:
                    break
                if p in used_p or t in used_t:
                    continue
                ids[p] = track_ids[t]
                used_p.add(p)
                used_t.add(t)
        for p in np.flatnonzero(ids < 0):
            ids[p] = self.next_id
            self.next_id += 1
        seen = set(ids.tolist())
        self.tracks = {
            t: (kp, age + 1) for t, (kp, age) in self.tracks.items()
            if t not in seen and age + 1 <= self.max_age
        }  # fmt: skip
        for p, t in enumerate(ids):
            self.tracks[int(t)] = (keypoints[p].copy(), 0)
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
