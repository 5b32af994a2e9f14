"""Predictor and `hrpose predict` on real example images and the street video."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from hrpose.cli import main
from hrpose.data.images import read_image
from hrpose.models import HigherHRNet, WeightsError
from hrpose.predict import Predictor


@pytest.fixture(scope="module")
def small_weights(tmp_path_factory):
    """A randomly initialised HigherHRNet-W8 with its last layer biased so peaks appear."""
    torch.manual_seed(0)
    model = HigherHRNet(8)
    with torch.no_grad():
        model.final_layers[0].weight.normal_(0, 0.2)
        model.final_layers[1].weight.normal_(0, 0.2)
    path = tmp_path_factory.mktemp("w") / "w8.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, path)
    return path


def test_predictor_end_to_end(small_weights, shared_data) -> None:
    predictor = Predictor.from_weights(small_weights, input_size=128)
    assert "W8" in predictor.description
    image = read_image(shared_data / "examples" / "soccer.jpeg")
    pred = predictor.predict(image)
    people = pred.people
    assert people.keypoints.shape[1:] == (17, 3) and len(people) == len(people.scores)
    if len(people):
        found = people.keypoints[people.keypoints[..., 2] > 0]
        assert (found[:, 0] >= -1).all() and (found[:, 0] <= image.shape[1] + 1).all()
        assert (found[:, 1] >= -1).all() and (found[:, 1] <= image.shape[0] + 1).all()
    assert pred.outputs[0].shape[1] == 34


def test_predictor_rejects_classifier_weights(tmp_path) -> None:
    from hrpose.models import HRNetClassifier

    path = tmp_path / "cls.pth"
    torch.save(HRNetClassifier(8, num_classes=3, init_weights=False).state_dict(), path)
    with pytest.raises(WeightsError, match="not HigherHRNet"):
        Predictor.from_weights(path)
    with pytest.raises(ValueError, match="RGB uint8"):
        Predictor.from_weights("random", width=8, input_size=64).predict(np.zeros((4, 4)))


def test_cli_folder_with_a_corrupt_file(small_weights, shared_data, tmp_path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("000000000785.jpg", "000000040083.jpg"):
        shutil.copy(shared_data / "coco-mini" / "images" / name, folder / name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "out"
    rc = main(["predict", str(folder), "--weights", str(small_weights), "--output", str(out),
               "--input-size", "128", "--heatmaps", "--tags"])  # fmt: skip
    assert rc == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "not a readable image" in err
    names = sorted(p.name for p in out.iterdir())
    assert "000000000785_pose.jpg" in names and "000000040083_heatmaps.jpg" in names
    assert "000000040083_tags.png" in names
    rows = json.loads((out / "predictions.json").read_text())
    assert all(r["file_name"] in ("000000000785.jpg", "000000040083.jpg") for r in rows)
    assert all(r["image_id"] in (785, 40083) for r in rows)


def test_cli_video(small_weights, shared_data, tmp_path) -> None:
    from hrpose.viz.video import read_video

    out = tmp_path / "v"
    rc = main(["predict", str(shared_data / "video" / "street.mp4"), "--weights",
               str(small_weights), "--output", str(out), "--input-size", "128", "--no-flip",
               "--smooth"])  # fmt: skip
    assert rc == 0
    frames = list(read_video(out / "street_pose.mp4"))
    assert len(frames) == 5 and frames[0].shape == (540, 960, 3)
    rows = json.loads((out / "predictions.json").read_text())
    assert all("track_id" in r and 0 <= r["frame"] < 5 for r in rows)


def test_cli_errors(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit, match="weights file not found"):
        main(["predict", str(tmp_path), "--weights", str(tmp_path / "none.pth")])
    with pytest.raises(SystemExit, match="no such file"):
        main(["predict", str(tmp_path / "nothing.jpg"), "--weights", "random"])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    assert main(["predict", str(empty), "--weights", "random", "--input-size", "64",
                 "--output", str(tmp_path / "o")]) == 1  # fmt: skip
    assert "not a readable video" in capsys.readouterr().err
    assert main(["predict", "9", "--weights", "random", "--input-size", "64",
                 "--output", str(tmp_path / "o")]) == 1  # fmt: skip
    assert "camera 9 is not available" in capsys.readouterr().err
