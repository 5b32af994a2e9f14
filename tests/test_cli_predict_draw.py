"""`hrpose predict` draws what the model is sure of: the demo model on coco-mini draws the
annotated people, keeps every decoded person in predictions.json, and says how many of each."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from hrpose.cli import main
from hrpose.cli.predict import _parser
from hrpose.decode import preprocess
from hrpose.predict import Predictor
from hrpose.skeleton import COCO17
from hrpose.structures import People
from hrpose.viz.draw import JOINT_THRESHOLD, PERSON_THRESHOLD, drawn_joints

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pose" / "coco-mini.yaml"


def _oks(pred: np.ndarray, gt: np.ndarray, area: np.ndarray) -> np.ndarray:
    """(P, Q) COCO OKS of predicted people to annotations (labelled joints of the annotation)."""
    var = (2 * np.asarray(COCO17.sigmas)) ** 2
    d2 = ((pred[:, None, :, :2] - gt[None, :, :, :2]) ** 2).sum(-1)
    sim = np.exp(-d2 / (2 * var * area[None, :, None]))
    vis = gt[None, :, :, 2] > 0
    return (sim * vis).sum(-1) / vis.sum(-1)


def test_drawn_people_are_the_annotated_ones(shared_data, coco_mini, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    ann_file = coco_mini / "person_keypoints.json"
    argv = ["predict", str(coco_mini / "images"), "--weights",
            str(shared_data / "weights" / "w8-coco-mini.pt"), "--config",
            str(CONFIG), "--output", str(out), "--device", "cpu",
            "--ground-truth", str(ann_file)]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    # the config's inference settings reach the decoder
    assert "input 192, flip False, detection threshold 0.3" in text
    rows = json.loads((out / "predictions.json").read_text())
    kp = np.array([r["keypoints"] for r in rows], np.float64).reshape(len(rows), 17, 3)
    people = People(kp, np.array([r["score"] for r in rows]), np.zeros((len(rows), 17, 1)))
    shown = drawn_joints(people, PERSON_THRESHOLD, JOINT_THRESHOLD).any(axis=1)
    summary = re.search(r"4 image\(s\) -> .*: (\d+) people decoded, (\d+) drawn", text)
    assert summary, text
    assert int(summary[1]) == len(rows) and int(summary[2]) == int(shown.sum())
    ann = json.loads(ann_file.read_text())
    annotated = [a for a in ann["annotations"] if a["num_keypoints"] > 0]
    assert len(rows) > len(annotated)  # low-score fragments are decoded and kept for COCO
    assert int(shown.sum()) == len(annotated)  # ... but only the annotated people are drawn
    names = {im["id"]: im["file_name"] for im in ann["images"]}
    for image_id, file_name in names.items():  # each drawn person is a distinct annotated one
        mine = [a for a in annotated if a["image_id"] == image_id]
        sel = np.array([r["file_name"] == file_name for r in rows]) & shown
        gt = np.array([a["keypoints"] for a in mine], np.float64).reshape(len(mine), 17, 3)
        oks = _oks(kp[sel], gt, np.array([a["area"] for a in mine], np.float64))
        assert oks.shape == (len(mine), len(mine))
        assert sorted(oks.argmax(axis=1).tolist()) == list(range(len(mine))), file_name
        assert (oks.max(axis=1) >= 0.5).all(), file_name
        stem = file_name.rsplit(".", 1)[0]
        panel = cv2.imread(str(out / f"{stem}_vs_gt.jpg"))
        pose = cv2.imread(str(out / f"{stem}_pose.jpg"))
        assert panel.shape[0] == pose.shape[0] and panel.shape[1] > 2 * pose.shape[1]


def test_threshold_options_and_prediction_transform() -> None:
    from hrpose.cli.options import parse

    argv = ["x.jpg", "--joint-threshold", "0.5", "--detection-threshold", "0.2"]
    args, _ = parse(_parser(), argv, ("inference",))
    assert args.joint_threshold == 0.5 and args.inference_detection_threshold == 0.2
    with pytest.raises(SystemExit):  # the old name says the new one
        parse(_parser(), ["x.jpg", "--threshold", "0.5"], ("inference",))
    assert _parser().parse_args(["x.jpg"]).person_threshold == PERSON_THRESHOLD
    predictor = Predictor.from_weights("random", width=8, input_size=128)
    image = np.random.default_rng(0).integers(0, 255, (90, 160, 3), np.uint8)
    pred = predictor.predict(image)
    assert pred.transform == preprocess(image, 128)[1]


def test_ground_truth_errors_name_the_problem(shared_data, tmp_path, capsys) -> None:
    crowd = shared_data / "crowdpose-mini"
    argv = ["predict", str(crowd / "images" / "103319.jpg"), "--weights",
            str(shared_data / "weights" / "w8-coco-mini.pt"),
            "--output", str(tmp_path), "--device", "cpu"]  # fmt: skip
    assert main([*argv, "--ground-truth", str(crowd / "person_keypoints.json")]) == 2
    assert "has 14 keypoints per person but the model predicts 17" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(SystemExit, match="not a readable COCO keypoints file"):
        main([*argv, "--ground-truth", str(tmp_path / "bad.json")])


def test_image_ids_are_unique_beside_digit_named_files() -> None:
    from hrpose.cli.predict import image_ids

    paths = [Path("3.jpg"), Path("a.jpg"), Path("b.jpg"), Path("000000000001.jpg")]
    ids = image_ids(paths)
    assert ids[0] == 3 and ids[3] == 1  # COCO names keep their ids
    assert len(set(ids)) == len(ids)  # the others never take one of them


def test_folder_log_has_no_progress_redraws(shared_data, tmp_path, capfd) -> None:
    """With stderr not a terminal (a log file), predict writes no tqdm redraws."""
    images = shared_data / "coco-mini" / "images"
    weights = shared_data / "weights" / "w8-coco-mini.pt"
    assert main(["predict", str(images), "--weights", str(weights), "--output", str(tmp_path),
                 "--device", "cpu"]) == 0  # fmt: skip
    said = capfd.readouterr()
    assert "4 image(s)" in said.out
    assert "\r" not in said.err and "img/s" not in said.err


def test_folder_run_killed_and_resumed_matches_an_unbroken_run(shared_data, tmp_path) -> None:
    """Ctrl-C after 2 of 4 images keeps them in predictions.jsonl; --resume does the other 2,
    and predictions.json equals an unbroken run's, with no line twice."""
    images = shared_data / "coco-mini" / "images"
    argv = ["predict", str(images), "--weights", str(shared_data / "weights" / "w8-coco-mini.pt"),
            "--device", "cpu"]  # fmt: skip
    assert main([*argv, "--output", str(tmp_path / "full")]) == 0
    full = json.loads((tmp_path / "full" / "predictions.json").read_text())
    assert len(full) > 4
    calls = {"n": 0}
    predict = Predictor.predict_prepared

    def interrupted(self, prepared):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return predict(self, prepared)

    out = tmp_path / "cut"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Predictor, "predict_prepared", interrupted)
        assert main([*argv, "--output", str(out)]) == 130
    lines = (out / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 2
    with open(out / "predictions.jsonl", "a") as f:
        f.write('{"file_name": "cut sho')  # a line a crash left half written
    assert main([*argv, "--output", str(out), "--resume"]) == 0
    names = [
        json.loads(t)["file_name"] for t in (out / "predictions.jsonl").read_text().splitlines()
    ]
    assert sorted(names) == sorted(p.name for p in images.iterdir()) and len(set(names)) == 4
    resumed = json.loads((out / "predictions.json").read_text())
    key = lambda r: (r["image_id"], r["score"])  # noqa: E731
    assert sorted(resumed, key=key) == sorted(full, key=key)
