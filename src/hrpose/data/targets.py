"""Training targets, pure numpy and vectorised: heatmaps and joint indices for the AE loss.

Both equal the official HigherHRNet ``HeatmapGenerator`` / ``JointsGenerator`` output, without
their Python loops over people and joints.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=8)
def _patch32(sigma: float) -> np.ndarray:
    patch = gaussian_patch(sigma).astype(np.float32)
    patch.flags.writeable = False
    return patch


def gaussian_patch(sigma: float) -> np.ndarray:
    """The official unnormalised Gaussian patch: side ``6*sigma+3``, centre ``3*sigma+1``."""
    x = np.arange(0, 6 * sigma + 3, 1, float)
    c = 3 * sigma + 1
    return np.exp(-((x[None, :] - c) ** 2 + (x[:, None] - c) ** 2) / (2 * sigma**2))


def _wh(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int | np.integer) else (int(size[0]), int(size[1]))


def _visible_in_bounds(
    joints: np.ndarray, size: int | tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer (truncated, as ``int()``) coordinates and the official visibility test."""
    joints = np.asarray(joints, dtype=np.float64)
    if joints.ndim != 3 or joints.shape[-1] < 3:
        raise ValueError(f"joints must be (N, K, 3) x, y, visibility; got shape {joints.shape}")
    w, h = _wh(size)
    xi = np.trunc(joints[..., 0]).astype(np.int64)
    yi = np.trunc(joints[..., 1]).astype(np.int64)
    ok = (joints[..., 2] > 0) & (xi >= 0) & (yi >= 0) & (xi < w) & (yi < h)
    return xi, yi, ok


def heatmaps(joints: np.ndarray, size: int | tuple[int, int], sigma: float = 2.0) -> np.ndarray:
    """(K, H, W) float32 target: per visible joint a Gaussian patch, max over people.

    ``joints`` is (N, K, 3) with x, y in output pixels and visibility; ``size`` is the side of a
    square map (official) or (W, H). A joint counts when its visibility is > 0 and
    ``int(x), int(y)`` lies inside the map, exactly as the official generator.
    """
    joints = np.asarray(joints)
    k = joints.shape[1] if joints.ndim == 3 else 0
    w, h = _wh(size)
    if joints.size == 0:
        return np.zeros((k, h, w), np.float32)
    xi, yi, ok = _visible_in_bounds(joints, size)
    _, kk = np.nonzero(ok)
    if kk.size == 0:
        return np.zeros((k, h, w), np.float32)
    g = _patch32(float(sigma))
    cx, cy = xi[ok], yi[ok]
    # Official window [ul, br) with ul = round(x - 3s - 1), br = round(x + 3s + 2), clipped.
    ulx, uly = np.round(cx - 3 * sigma - 1).astype(int), np.round(cy - 3 * sigma - 1).astype(int)
    brx, bry = np.round(cx + 3 * sigma + 2).astype(int), np.round(cy + 3 * sigma + 2).astype(int)
    span = int(min(g.shape[0], (brx - ulx).max(), (bry - uly).max()))
    off = np.arange(span)
    px = ulx[:, None] + off[None, :]  # (M, S)
    py = uly[:, None] + off[None, :]
    okx = (px >= 0) & (px < np.minimum(brx, w)[:, None])
    oky = (py >= 0) & (py < np.minimum(bry, h)[:, None])
    # Flat target index of every patch element; clipped ones go to a spare slot past the end.
    idx = (kk[:, None, None] * h + py[:, :, None]) * w + px[:, None, :]  # (M, S, S)
    idx[~(oky[:, :, None] & okx[:, None, :])] = k * h * w
    flat = np.zeros(k * h * w + 1, np.float32)
    vals = np.broadcast_to(g[:span, :span], idx.shape)
    np.maximum.at(flat, idx.reshape(-1), vals.reshape(-1))
    return flat[:-1].reshape(k, h, w)


def joint_indices(
    joints: np.ndarray, size: int | tuple[int, int], max_people: int = 30
) -> np.ndarray:
    """(max_people, K, 2) int64: per person its visible in-bounds joints, packed in joint order.

    Entry ``[i, j]`` is ``(k * H * W + y * W + x, 1)`` for person i's j-th counted joint k
    (the flat index into the K tag maps), then ``(0, 0)`` padding, as the official
    JointsGenerator. People beyond ``max_people`` are dropped (the first ``max_people`` in
    annotation order are kept); the official code raises an IndexError there.
    """
    joints = np.asarray(joints)
    k = joints.shape[1] if joints.ndim == 3 else 0
    out = np.zeros((max_people, k, 2), np.int64)
    if joints.size == 0:
        return out
    joints = joints[:max_people]
    xi, yi, ok = _visible_in_bounds(joints, size)
    slot = np.cumsum(ok, axis=1) - 1
    person, joint = np.nonzero(ok)
    w, h = _wh(size)
    out[person, slot[person, joint], 0] = joint * h * w + yi[ok] * w + xi[ok]
    out[person, slot[person, joint], 1] = 1
    return out
