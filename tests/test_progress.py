"""Progress bars off a terminal (a log file, a pipe): no carriage-return redraws, at most one
plain line per bar; COCO evaluation's bar follows the same rule."""

from __future__ import annotations

import io

import cv2
import numpy as np

from hrpose.evaluation.pose import predict_images
from hrpose.progress import ProgressBar, on_terminal, progress
from hrpose.structures import People


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_one_plain_line() -> None:
    log = io.StringIO()
    assert not on_terminal(log)
    bar = ProgressBar(500, "epoch 1/3", "batch", stream=log)
    for _ in range(500):
        bar.set_postfix(loss="0.25")
        bar.update()
    assert log.getvalue() == ""  # nothing while it runs
    bar.close()
    bar.close()  # a second close adds nothing
    (line,) = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert line.startswith("epoch 1/3: 500/500 batch in ") and line.endswith(", loss 0.25")
    quiet = io.StringIO()
    ProgressBar(3, "x", stream=quiet, summary=False).close()
    ProgressBar(3, "x", stream=quiet, enabled=False).close()
    assert quiet.getvalue() == ""


def test_on_a_terminal_a_tqdm_bar() -> None:
    tty = _Terminal()
    assert on_terminal(tty)
    assert list(progress(range(5), "evaluating", "img", stream=tty)) == [0, 1, 2, 3, 4]
    assert "\r" in tty.getvalue() and "5/5" in tty.getvalue()


def test_pose_evaluation_bar_in_a_log(tmp_path, capfd) -> None:
    """predict_images(progress=True) with stderr captured: one line, no redraws."""
    images = []
    for i in range(30):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), np.zeros((8, 8, 3), np.uint8))
        images.append((i, f"{i}.jpg"))
    results = predict_images(lambda rgb: People.empty(), images, tmp_path, progress=True)
    assert results == []
    said = capfd.readouterr()
    assert "\r" not in said.err and said.out == ""
    (line,) = said.err.splitlines()
    assert line.startswith("evaluating: 30/30 img in ")
