"""Library plots leave the caller's matplotlib backend alone (a notebook's inline or svg one)."""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import matplotlib
import numpy as np
import pytest

from hrpose.engine.tracking import RunFiles
from hrpose.skeleton import COCO17
from hrpose.structures import People
from hrpose.viz.draw import tag_plot


@pytest.fixture
def svg_backend() -> Iterator[str]:
    """The svg backend during the test (not Agg), the previous one restored afterwards."""
    previous = matplotlib.get_backend()
    matplotlib.use("svg")
    yield matplotlib.get_backend()
    matplotlib.use(previous)


def test_tag_plot_keeps_the_backend(svg_backend: str) -> None:
    kp = np.zeros((1, 17, 3), np.float32)
    kp[0, :, :2], kp[0, :, 2] = 50, 0.9
    tags = np.linspace(1, 2, 17, dtype=np.float32).reshape(1, 17, 1)
    plot = tag_plot(People(kp, np.array([0.9], np.float32), tags), COCO17.names, (300, 200))
    assert matplotlib.get_backend() == svg_backend
    assert plot.shape == (200, 300, 3) and plot.std() > 0


def test_epoch_plot_keeps_the_backend(svg_backend: str, tmp_path) -> None:
    files = RunFiles(tmp_path)
    files.add_epoch(1, {"loss": 1.0, "AP": 0.1}, plot=False)
    files.add_epoch(2, {"loss": 0.5, "AP": 0.3})
    assert matplotlib.get_backend() == svg_backend
    png = cv2.imread(str(tmp_path / "epoch_metrics.png"))
    assert png is not None and png.std() > 0
    assert (tmp_path / "epoch_metrics.html").read_text().count("<tr>") == 3
