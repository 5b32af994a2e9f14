"""CrowdPose: 14 joints through loading, the CrowdPose protocol, training, predict and export."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hrpose.data.coco import CocoKeypoints, DatasetError, keypoint_spec_of
from hrpose.evaluation.coco_eval import (
    CROWDPOSE_STAT_NAMES,
    detect_protocol,
    evaluate_keypoints,
)
from hrpose.evaluation.coco_results import annotations_as_results
from hrpose.skeleton import CROWDPOSE14


@pytest.fixture(scope="module")
def crowdpose_mini(shared_data: Path) -> Path:
    root = shared_data / "crowdpose-mini"
    assert (root / "person_keypoints.json").is_file(), root
    return root


def _gt(crowdpose_mini: Path) -> dict:
    return json.loads((crowdpose_mini / "person_keypoints.json").read_text())


def _with_crowd_index(crowdpose_mini: Path, tmp_path: Path, values: list[float]) -> Path:
    """A copy of crowdpose-mini's annotations with other crowd indices (by image order)."""
    gt = _gt(crowdpose_mini)
    for image, value in zip(gt["images"], values, strict=True):
        image["crowdIndex"] = value
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    return path


def test_dataset_reads_14_joints_and_masks_nothing(crowdpose_mini):
    ds = CocoKeypoints(crowdpose_mini / "person_keypoints.json", crowdpose_mini / "images")
    assert ds.spec is CROWDPOSE14 and len(ds) == 2
    samples = [ds.load(i) for i in range(len(ds))]
    assert sum(s.keypoints.shape[0] for s in samples) == 5
    for s in samples:
        assert s.keypoints.shape[1:] == (14, 3) and s.mask.all()
    labelled = np.concatenate([s.keypoints for s in samples])[..., 2] > 0
    # every labelled joint of the file (its num_keypoints leave head and neck out)
    expected = sum(
        int(v > 0) for a in _gt(crowdpose_mini)["annotations"] for v in a["keypoints"][2::3]
    )
    assert labelled.sum() == expected == 47


def test_spec_detection_from_the_file(crowdpose_mini):
    gt = _gt(crowdpose_mini)
    assert keypoint_spec_of(gt) is CROWDPOSE14
    gt["categories"][0].pop("keypoints")  # no names: the joint count picks the built-in set
    assert keypoint_spec_of(gt) is CROWDPOSE14
    gt["annotations"][0]["keypoints"] += [0, 0, 0] * 3
    with pytest.raises(DatasetError, match=r"3 x 14 keypoint values.*has 51"):
        keypoint_spec_of(_gt(crowdpose_mini) | {"annotations": gt["annotations"]})


def test_protocol_is_read_from_the_file(crowdpose_mini, coco_mini):
    assert detect_protocol(_gt(crowdpose_mini)) == "crowdpose"
    assert detect_protocol(json.loads((coco_mini / "person_keypoints.json").read_text())) == "coco"


def test_ground_truth_as_results_gives_one(crowdpose_mini):
    ann = crowdpose_mini / "person_keypoints.json"
    results = annotations_as_results(_gt(crowdpose_mini))
    assert len(results) == 4  # the five people but one without keypoints
    stats, table = evaluate_keypoints(results, ann)
    assert set(stats) == set(CROWDPOSE_STAT_NAMES)
    assert stats["AP"] == stats["AP50"] == stats["AR"] == stats["AP_medium"] == 1.0
    # both images are medium (crowd index 0.33, 0.39): no easy or hard image, printed as -1
    assert stats["AP_easy"] == stats["AP_hard"] == -1.0
    assert "type=medium | maxDets= 20 ] = 1.000" in table
    assert "type=  easy" in table and "type=  hard" in table and "area=medium" not in table


def test_crowd_index_split_and_oks_scale(crowdpose_mini, tmp_path):
    # crowdposetools' split: easy < 0.2 <= medium < 0.8 <= hard
    ann = _with_crowd_index(crowdpose_mini, tmp_path, [0.19, 0.8])
    results = annotations_as_results(_gt(crowdpose_mini))
    stats, _ = evaluate_keypoints(results, ann)
    assert stats["AP_easy"] == stats["AP_hard"] == 1.0 and stats["AP_medium"] == -1.0
    # move every joint of the people of the hard image (103319) by 4 px: only "hard" drops
    moved = [
        r | {"keypoints": (np.array(r["keypoints"]) + [4, 4, 0] * 14).tolist()}
        if r["image_id"] == 103319
        else r
        for r in results
    ]
    stats, _ = evaluate_keypoints(moved, ann)
    assert stats["AP_easy"] == 1.0 and 0 < stats["AP_hard"] < 1.0 and stats["AP"] < 1.0
    only_easy, _ = evaluate_keypoints(moved, ann, image_ids=[106848])
    assert only_easy["AP"] == only_easy["AP_easy"] == 1.0 and only_easy["AP_hard"] == -1.0


def test_wrong_joint_count_is_named(crowdpose_mini, coco_mini):
    coco_results = annotations_as_results(
        json.loads((coco_mini / "person_keypoints.json").read_text())
    )
    crowd_ids = [im["id"] for im in _gt(crowdpose_mini)["images"]]
    wrong = [r | {"image_id": crowd_ids[0]} for r in coco_results[:2]]
    with pytest.raises(ValueError, match="17 keypoints per person but .* has 14"):
        evaluate_keypoints(wrong, crowdpose_mini / "person_keypoints.json")


def test_cli_eval_prints_the_crowdpose_table(crowdpose_mini, tmp_path, capsys):
    from hrpose.cli import main

    res = tmp_path / "gt_results.json"
    res.write_text(json.dumps(annotations_as_results(_gt(crowdpose_mini))))
    ann = crowdpose_mini / "person_keypoints.json"
    assert main(["eval", "pose", "--results", str(res), "--annotations", str(ann)]) == 0
    out = capsys.readouterr().out
    assert "IoU=0.50:0.95 | area=   all | maxDets= 20 ] = 1.000" in out
    for kind in ("  easy", "medium", "  hard"):
        assert f"type={kind}" in out
    assert "AP 1.0000" in out
