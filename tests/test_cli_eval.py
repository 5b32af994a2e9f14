"""`hrpose eval pose`: ground truth scores 1.0; bad inputs give clear messages; weights path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hrpose.cli import main
from hrpose.evaluation.coco_results import annotations_as_results
from hrpose.models import HigherHRNet


@pytest.fixture
def files(coco_mini, tmp_path):
    ann = coco_mini / "person_keypoints.json"
    gt = tmp_path / "gt_results.json"
    gt.write_text(json.dumps(annotations_as_results(json.loads(ann.read_text()))))
    return ann, gt


def test_ground_truth_gives_ap_1(files, capsys) -> None:
    ann, gt = files
    assert main(["eval", "pose", "--results", str(gt), "--annotations", str(ann)]) == 0
    out = capsys.readouterr().out
    assert "AP 1.0000" in out and "Average Precision  (AP) @[ IoU=0.50:0.95" in out


def test_bad_inputs_are_named(files, tmp_path, capsys) -> None:
    ann, gt = files
    wrong = json.loads(gt.read_text())
    wrong[0]["image_id"] = 999999
    bad = tmp_path / "wrong.json"
    bad.write_text(json.dumps(wrong))
    assert main(["eval", "pose", "--results", str(bad), "--annotations", str(ann)]) == 2
    assert "999999" in capsys.readouterr().err
    empty = tmp_path / "empty.json"
    empty.write_text("")
    assert main(["eval", "pose", "--results", str(empty), "--annotations", str(ann)]) == 2
    assert "JSON list" in capsys.readouterr().err
    (tmp_path / "none.json").write_text("[]")
    assert (
        main(["eval", "pose", "--results", str(tmp_path / "none.json"), "--annotations", str(ann)])
        == 0
    )
    assert "AP 0.0000" in capsys.readouterr().out
    assert (
        main(["eval", "pose", "--results", str(gt), "--annotations", str(tmp_path / "absent.json")])
        == 2
    )
    assert "annotation file not found" in capsys.readouterr().err
    assert main(["eval", "pose", "--annotations", str(ann)]) == 2
    assert "--weights" in capsys.readouterr().err


def test_weights_protocol_record(coco_mini, tmp_path, capsys) -> None:
    torch.manual_seed(0)
    weights = tmp_path / "w.pth"
    torch.save(HigherHRNet(8).state_dict(), weights)
    out = tmp_path / "eval"
    rc = main(
        [
            "eval",
            "pose",
            "--weights",
            str(weights),
            "--annotations",
            str(coco_mini / "person_keypoints.json"),
            "--images",
            str(coco_mini / "images"),
            "--input-size",
            "64",
            "--output",
            str(out),
            "--device",
            "cpu",
        ]
    )
    assert rc == 0
    record = json.loads((out / "protocol.json").read_text())
    assert record["num_images"] == 4 and record["flip"] is True and record["input_size"] == 64
    assert len(record["weights_sha256"]) == 64 and "AP" in record["stats"]
    assert (out / "summary.txt").read_text().count("Average") == 10
    assert (out / "keypoints_val2017_results.json").is_file()


def test_default_output_folders_differ_per_annotation_file() -> None:
    from hrpose.cli.eval_pose import default_output

    a = default_output("w.pt", Path("data/a/person_keypoints.json"), "val2017")
    b = default_output("w.pt", Path("data/b/person_keypoints.json"), "val2017")
    assert a != b and a.name == "w-a-person_keypoints"
    assert default_output("w.pt", None, "val2017") == Path("outputs/eval/w-val2017")
