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

REPO = Path(__file__).resolve().parents[1]


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
    nothing, _ = evaluate_keypoints([], ann, image_ids=[106848])
    assert nothing["AP"] == nothing["AP_easy"] == 0.0 and nothing["AP_hard"] == -1.0


def test_coco_protocol_with_14_joints_uses_the_file_sigmas(crowdpose_mini, tmp_path):
    """The issue's failure: pycocotools' 17 COCO sigmas against 14 joints did not broadcast."""
    gt = _gt(crowdpose_mini)
    for image in gt["images"]:
        image.pop("crowdIndex")
    path = tmp_path / "no_crowd_index.json"
    path.write_text(json.dumps(gt))
    with pytest.raises(ValueError, match="without 'area'.*'crowdIndex' on every image"):
        evaluate_keypoints(annotations_as_results(gt), path)
    for a in gt["annotations"]:
        a["area"] = a["bbox"][2] * a["bbox"][3]
    path.write_text(json.dumps(gt))
    for backend in ("pycocotools", "faster-coco-eval"):
        stats, table = evaluate_keypoints(annotations_as_results(gt), path, backend=backend)
        assert stats["AP"] == 1.0 and "area=medium" in table


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


@pytest.mark.slow
def test_train_eval_predict_export_with_14_joints(crowdpose_mini, tmp_path, capsys):
    """A few training steps on crowdpose-mini, then every consumer of the checkpoint."""
    from hrpose.cli import main
    from hrpose.decode import DecodeParams
    from hrpose.engine.checkpoint import load_checkpoint
    from hrpose.predict import Predictor

    config = REPO / "configs" / "pose" / "coco-mini.yaml"
    ann, images = crowdpose_mini / "person_keypoints.json", crowdpose_mini / "images"
    train = [
        "train", "pose", "--config", str(config),
        f"--dataloader.train_ds.root={crowdpose_mini}",
        f"--dataloader.val_ds.root={crowdpose_mini}",
        f"--setup.results_dir={tmp_path}", "--setup.experiment_name=cp", "--setup.run_name=r",
        "--model.width=8", "--model.num_joints=14", "--dataloader.batch_size=2",
        "--data.input_size=64", "--inference.input_size=64", "--data.repeat=2",
        "--data.augment=True", "--data.flip=0.5",  # the random affine and the 14-joint mirror
        "--trainer.max_epochs=1", "--trainer.val_every=1", "--trainer.progress=False",
        "--tracking.mlflow=False",
    ]  # fmt: skip
    assert main(train) == 0
    state = load_checkpoint(tmp_path / "cp" / "r" / "checkpoints" / "last.pt")
    assert (
        state["step"] == 2
        and tuple(state["extra"]["model_record"]["keypoint_spec"]["names"]) == CROWDPOSE14.names
    )
    assert {"AP", "AP_easy", "AP_medium", "AP_hard"} <= set(state["metrics"])
    best = tmp_path / "cp" / "r" / "checkpoints" / "best.pt"

    out = tmp_path / "eval"
    evaluate = ["eval", "pose", "--weights", str(best), "--annotations", str(ann),
                "--images", str(images), "--input-size", "64", "--output", str(out),
                "--device", "cpu"]  # fmt: skip
    assert main(evaluate) == 0
    assert "type=medium" in capsys.readouterr().out
    record = json.loads((out / "protocol.json").read_text())
    assert (
        record["evaluator"] == "faster-coco-eval keypoints_crowd" and "AP_hard" in record["stats"]
    )

    # every candidate kept (threshold 0), so people exist even for a barely trained model
    params = DecodeParams(detection_threshold=0.0, max_people=3, flip=True)
    torch_pred = Predictor.from_weights(best, input_size=64, params=params)
    assert torch_pred.spec is not None and torch_pred.spec.names == CROWDPOSE14.names
    from hrpose.data.coco import read_image_rgb

    image = read_image_rgb(images / "103319.jpg")
    people = torch_pred(image)
    assert len(people) == 3 and people.keypoints.shape[1:] == (14, 3)

    yaml = tmp_path / "infer.yaml"
    yaml.write_text("inference: {input_size: 64, detection_threshold: 0.0, max_people: 3}\n")
    shown = tmp_path / "predict"
    cmd = ["predict", str(images), "--weights", str(best), "--config", str(yaml), "--output",
           str(shown), "--heatmaps"]  # fmt: skip
    assert main(cmd) == 0
    rows = json.loads((shown / "predictions.json").read_text())
    assert len(rows) == 6 and all(len(r["keypoints"]) == 42 for r in rows)
    assert (shown / "103319_pose.jpg").is_file() and (shown / "103319_heatmaps.jpg").is_file()

    onnx = tmp_path / "model.onnx"
    assert main(["export", "onnx", "--weights", str(best), "--output", str(onnx),
                 "--input-size", "64"]) == 0  # fmt: skip
    onnx_pred = Predictor.from_weights(onnx, params=params)
    assert onnx_pred.spec == CROWDPOSE14 and onnx_pred.input_size == 64
    onnx_people = onnx_pred(image)
    assert len(onnx_people) == 3 and onnx_people.keypoints.shape[1:] == (14, 3)
    # the same network: 2 x 14 maps at 1/4, 14 at 1/2 (a barely trained model's near-ties make
    # the grouped people sensitive to rounding, so the maps are compared, not the people)
    ours, theirs = torch_pred.forward(image)[2], onnx_pred.forward(image)[2]
    assert [t.shape[1] for t in ours] == [28, 14]
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(b.numpy(), a.numpy(), atol=1e-4)


def _fake_downloads(crowdpose_mini: Path, tmp_path: Path) -> tuple[Path, Path]:
    """An images.zip and an annotations zip shaped like the Google Drive downloads, made from
    crowdpose-mini: image 106848 in train, 103319 in val and test."""
    import zipfile

    gt = _gt(crowdpose_mini)
    by_id = {im["id"]: im for im in gt["images"]}

    def split(ids: list[int]) -> dict:
        anns = [a for a in gt["annotations"] if a["image_id"] in ids]
        return {
            "categories": gt["categories"],
            "images": [by_id[i] for i in ids],
            "annotations": anns,
        }

    images = tmp_path / "dl" / "images.zip"
    images.parent.mkdir()
    with zipfile.ZipFile(images, "w") as zf:
        for im in gt["images"]:
            zf.write(crowdpose_mini / "images" / im["file_name"], f"images/{im['file_name']}")
    annotations = tmp_path / "dl" / "CrowdPose-20260101T000000Z-001.zip"
    with zipfile.ZipFile(annotations, "w") as zf:
        for name, ids in (("train", [106848]), ("val", [103319]), ("test", [103319])):
            zf.writestr(f"CrowdPose/crowdpose_{name}.json", json.dumps(split(ids)))
    return images, annotations


def test_prepare_crowdpose_builds_the_official_layout(crowdpose_mini, tmp_path, capsys):
    from hrpose.cli import main
    from hrpose.config.load import load_config
    from hrpose.config.schema import PoseTrainConfig
    from hrpose.data.coco import coco_paths
    from hrpose.prepare.crowdpose import annotation_path

    images, annotations = _fake_downloads(crowdpose_mini, tmp_path)
    root = tmp_path / "CrowdPose"
    assert main(["prepare", "crowdpose", "--root", str(root), str(images), str(annotations)]) == 0
    assert "5 files written" in capsys.readouterr().out  # 2 images, 3 annotation files
    trainval = json.loads(annotation_path(root, "trainval").read_text())
    assert [im["id"] for im in trainval["images"]] == [106848, 103319]
    assert len(trainval["annotations"]) == 5
    # the config's paths are this layout, and the dataset reads it with 14 joints
    cfg = load_config(PoseTrainConfig, REPO / "configs" / "pose" / "crowdpose_w32_512.yaml")
    assert cfg.model.num_joints == 14
    for ds, split in ((cfg.dataloader.train_ds, "trainval"), (cfg.dataloader.val_ds, "test")):
        ann, imgs = coco_paths(root, ds.split, ds.ann_file, ds.images_dir)
        assert ann == annotation_path(root, split) and imgs == root / "images"
        assert CocoKeypoints(ann, imgs).spec is CROWDPOSE14
    # a rerun finds everything in place
    assert main(["prepare", "crowdpose", "--root", str(root), str(images), str(annotations)]) == 0
    assert "0 files written" in capsys.readouterr().out
    # the same from a tar.gz of the images and a folder of loose JSON files
    import tarfile

    with tarfile.open(tmp_path / "images.tar.gz", "w:gz") as tf:
        tf.add(root / "images", arcname="images")
    loose = tmp_path / "loose"
    loose.mkdir()
    for split in ("train", "val", "test"):
        (loose / f"crowdpose_{split}.json").write_bytes(annotation_path(root, split).read_bytes())
    other = tmp_path / "other"
    assert main(["prepare", "crowdpose", "--root", str(other), str(tmp_path / "images.tar.gz"),
                 str(loose)]) == 0  # fmt: skip
    assert (
        annotation_path(other, "trainval").read_text()
        == annotation_path(root, "trainval").read_text()
    )


def test_prepare_crowdpose_names_what_is_missing(crowdpose_mini, tmp_path, capsys):
    from hrpose.cli import main

    _, annotations = _fake_downloads(crowdpose_mini, tmp_path)
    root = tmp_path / "CrowdPose"
    assert main(["prepare", "crowdpose", "--root", str(root), str(annotations)]) == 1
    err = capsys.readouterr().err
    assert (
        "2 of the 2 images of crowdpose_trainval.json are not in" in err and "Google Drive" in err
    )
    assert main(["prepare", "crowdpose", "--root", str(root), str(tmp_path / "absent.zip")]) == 1
    assert "absent.zip: no such archive" in capsys.readouterr().err
