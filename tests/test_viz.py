"""Drawing: person colours at joints, heatmap grid and tag plot images; video round trip."""

from __future__ import annotations

import numpy as np
import pytest

from hrpose.skeleton import COCO17
from hrpose.structures import People
from hrpose.viz.draw import draw_people, heatmap_grid, person_color, tag_plot
from hrpose.viz.video import VideoError, VideoWriter, read_video, video_info


def _people() -> People:
    kp = np.zeros((2, 17, 3), np.float32)
    kp[0, :, 0], kp[0, :, 1], kp[0, :, 2] = np.linspace(20, 60, 17), np.linspace(10, 90, 17), 0.9
    kp[1, :, 0], kp[1, :, 1], kp[1, :, 2] = np.linspace(120, 160, 17), np.linspace(10, 90, 17), 0.9
    kp[1, 5, 2] = 0.01  # below the drawing threshold
    tags = np.stack([np.full((17, 1), 0.0), np.full((17, 1), 2.0)]).astype(np.float32)
    return People(kp, np.array([0.9, 0.8], np.float32), tags)


def test_skeleton_colours_at_joints() -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    out = draw_people(image, _people(), COCO17)
    assert image.sum() == 0  # input untouched
    p = _people().keypoints
    assert out[int(p[0, 0, 1]), int(p[0, 0, 0])].tolist() == list(person_color(0))
    assert out[int(p[1, 0, 1]), int(p[1, 0, 0])].tolist() == list(person_color(1))
    ids = draw_people(image, _people(), COCO17, ids=[7, 3])
    assert ids[int(p[0, 3, 1]), int(p[0, 3, 0])].tolist() == list(person_color(7))


def test_heatmap_grid_and_tag_plot() -> None:
    image = np.full((100, 200, 3), 128, np.uint8)
    heat = np.zeros((17, 25, 50), np.float32)
    heat[0, 10, 10] = 1
    grid = heatmap_grid(image, heat, COCO17.names, cols=6, tile=60)
    assert grid.shape == (3 * 30, 6 * 60, 3)
    plot = tag_plot(_people(), COCO17.names)
    assert plot.ndim == 3 and plot.shape[2] == 3 and plot.std() > 0


def test_video_round_trip(tmp_path) -> None:
    frames = [np.full((48, 64, 3), 40 * i, np.uint8) for i in range(5)]
    with VideoWriter(tmp_path / "v.mp4", fps=5) as w:
        for f in frames:
            w.write(f)
    back = list(read_video(tmp_path / "v.mp4"))
    assert len(back) == 5 and back[0].shape == (48, 64, 3)
    assert abs(int(back[3].mean()) - 120) < 6
    assert video_info(tmp_path / "v.mp4")[0] == pytest.approx(5.0)
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(VideoError):
        list(read_video(tmp_path / "bad.mp4"))
