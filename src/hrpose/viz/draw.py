"""Pure drawing: new images with skeletons, heatmap grids and tag-embedding plots."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from hrpose.skeleton import COCO17, KeypointSpec
from hrpose.structures import People

# Distinct colours for people (RGB), cycled.
PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
)  # fmt: skip


def person_color(index: int) -> tuple[int, int, int]:
    """Colour of person ``index`` (a track id or the position in the list)."""
    return PALETTE[index % len(PALETTE)]


def draw_people(
    image: np.ndarray,
    people: People,
    spec: KeypointSpec = COCO17,
    ids: Sequence[int] | None = None,
    threshold: float = 0.1,
) -> np.ndarray:
    """A copy of the RGB image with each person's skeleton in its own colour.

    Joints with a score below ``threshold`` are not drawn; ``ids`` (e.g. track ids) pick colours.
    """
    out = np.ascontiguousarray(image.copy())
    h, w = out.shape[:2]
    thick = max(1, round(max(h, w) / 400))
    radius = thick + 1
    for i, kp in enumerate(people.keypoints):
        color = person_color(i if ids is None else int(ids[i]))
        ok = kp[:, 2] >= threshold
        pts = np.round(kp[:, :2]).astype(int)
        for a, b in spec.skeleton:
            if ok[a] and ok[b]:
                cv2.line(out, tuple(pts[a]), tuple(pts[b]), color, thick, cv2.LINE_AA)
        for j in np.flatnonzero(ok):
            cv2.circle(out, tuple(pts[j]), radius, color, -1, cv2.LINE_AA)
        if ids is not None and ok.any():
            top = pts[ok][np.argmin(pts[ok][:, 1])]
            org = (int(top[0]), max(0, int(top[1]) - 6))
            font = cv2.FONT_HERSHEY_SIMPLEX
            cv2.putText(out, str(int(ids[i])), org, font, 0.4 * thick, color, thick, cv2.LINE_AA)
    return out


def heatmap_grid(
    image: np.ndarray, heatmaps: np.ndarray, names: Sequence[str], cols: int = 6, tile: int = 160
) -> np.ndarray:
    """One tile per joint: the heatmap (K, h, w) as a colour overlay on the resized image."""
    k = heatmaps.shape[0]
    rows = int(np.ceil((k + 1) / cols))
    th = max(1, round(tile * image.shape[0] / image.shape[1]))
    base = cv2.resize(image, (tile, th), interpolation=cv2.INTER_AREA)
    grid = np.zeros((rows * th, cols * tile, 3), np.uint8)
    tiles = [base]
    for j in range(k):
        hm = cv2.resize(np.clip(heatmaps[j], 0, 1).astype(np.float32), (tile, th))
        color = cv2.applyColorMap((hm * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
        t = cv2.addWeighted(base, 0.5, color, 0.5, 0)
        cv2.putText(t, names[j][:14], (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1)
        tiles.append(t)
    for n, t in enumerate(tiles):
        r, c = divmod(n, cols)
        grid[r * th : (r + 1) * th, c * tile : (c + 1) * tile] = t
    return grid


def tag_plot(
    people: People, names: Sequence[str], size: tuple[int, int] = (900, 420)
) -> np.ndarray:
    """RGB plot of each person's tag value per joint: one colour per person, one column per
    joint. Well-grouped people are horizontal bands apart from each other."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(size[0] / 100, size[1] / 100), dpi=100)
    k = len(names)
    for i in range(len(people)):
        found = people.keypoints[i, :, 2] > 0
        tags = people.tags[i, :, 0]
        color = np.array(person_color(i)) / 255
        ax.plot(np.arange(k)[found], tags[found], "o-", color=color, ms=4, lw=1, label=f"{i}")
    ax.set_xticks(range(k))
    ax.set_xticklabels(names, rotation=60, fontsize=7, ha="right")
    ax.set_ylabel("tag value")
    ax.set_title("associative-embedding tags per person")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[:, :, :3].copy()
    plt.close(fig)
    return rgb
