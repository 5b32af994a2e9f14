"""COCO evaluation: ground truth scores AP 1.0, backends agree, empty results, top-k."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hrpose.evaluation.classification import TopkAccuracy, topk_correct
from hrpose.evaluation.coco_eval import STAT_NAMES, evaluate_keypoints, summary_table
from hrpose.evaluation.coco_results import (
    annotations_as_results,
    people_as_annotations,
    people_to_coco,
)
from hrpose.evaluation.protocol import ProtocolRecord, sha256_file
from hrpose.skeleton import COCO17
from hrpose.structures import InferenceSettings, People


@pytest.fixture(scope="module")
def gt(coco_mini):
    ann = coco_mini / "person_keypoints.json"
    return ann, annotations_as_results(json.loads(ann.read_text()))


def _perturbed(results):
    rng = np.random.default_rng(0)
    out = []
    for r in results:
        kp = np.array(r["keypoints"], float).reshape(-1, 3)
        kp[:, :2] += rng.normal(0, 6, (len(kp), 2))
        out.append({**r, "keypoints": kp.reshape(-1).tolist(), "score": float(rng.uniform())})
    return out


def test_ground_truth_is_perfect(gt, capsys) -> None:
    ann, results = gt
    assert len(results) == 12  # 14 people, 2 without keypoints
    stats, table = evaluate_keypoints(results, ann, print_summary=True)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ] = 1.000" in (
        capsys.readouterr().out
    )
    assert table.count("\n") == 10


def test_perturbed_and_false_positives_lower_ap(gt) -> None:
    ann, results = gt
    stats, _ = evaluate_keypoints(_perturbed(results), ann)
    assert 0.0 < stats["AP"] < 1.0
    extra = results + [{**results[0], "image_id": results[1]["image_id"], "score": 2.0}]
    assert evaluate_keypoints(extra, ann)[0]["AP"] < 1.0


def test_faster_backend_gives_identical_stats(gt) -> None:
    pytest.importorskip("faster_coco_eval", reason="faster-coco-eval is an optional extra")
    ann, results = gt
    for res in (results, _perturbed(results)):
        ref, _ = evaluate_keypoints(res, ann, backend="pycocotools")
        fast, _ = evaluate_keypoints(res, ann, backend="faster-coco-eval")
        assert all(abs(ref[k] - fast[k]) < 1e-12 for k in STAT_NAMES), (ref, fast)


def test_empty_results(gt, tmp_path) -> None:
    ann, _ = gt
    stats, table = evaluate_keypoints([], ann)
    assert all(v == 0 for v in stats.values()) and "= 0.000" in table
    path = tmp_path / "r.json"
    path.write_text("[]")
    assert evaluate_keypoints(path, ann)[0]["AP"] == 0


def test_people_to_coco_round_trip(gt) -> None:
    ann, results = gt
    kp = np.array([r["keypoints"] for r in results], np.float32).reshape(-1, 17, 3)
    people = People(kp, np.ones(len(kp), np.float32), np.zeros((len(kp), 17, 1), np.float32))
    rows = people_to_coco(people, 7)
    assert rows[0]["image_id"] == 7 and len(rows[0]["keypoints"]) == 51
    assert rows[0]["bbox"][2] >= 0 and rows[0]["score"] == 1.0
    assert summary_table(dict.fromkeys(STAT_NAMES, 0.25)).count("0.250") == 10


def test_protocol_record(tmp_path) -> None:
    f = tmp_path / "w.pth"
    f.write_bytes(b"abc")
    assert sha256_file(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    rec = ProtocolRecord("a.json", 4, InferenceSettings(detection_threshold=0.3), weights=str(f))
    data = json.loads(rec.to_json())
    assert data["input_size"] == 512 and data["detection_threshold"] == 0.3
    assert set(InferenceSettings.names()) <= set(data)  # every setting, e.g. ignore_too_much
    assert data["use_detection_val"] is True and data["ignore_too_much"] is False


def test_topk() -> None:
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15], [0.2, 0.3, 0.5]])
    targets = torch.tensor([1, 2, 0])
    assert topk_correct(logits, targets, (1, 2)) == {"top1": 1, "top2": 2}
    acc = TopkAccuracy((1, 5))
    acc.update(logits, targets)
    acc.update(logits[:1], targets[:1])
    assert acc.compute() == {"top1": 50.0, "top5": 100.0}


def test_people_as_annotations_label_the_confident_joints(tmp_path) -> None:
    """A reference model's people as ground truth: joints at the threshold or above are visible,
    the area is their box, a person with none is left out, and the results of the same people
    score AP 1 against them."""
    kp = np.zeros((3, 17, 3))
    kp[0, :, :2] = np.stack([np.linspace(10, 50, 17), np.linspace(20, 100, 17)], 1)
    kp[0, :, 2] = 0.9
    kp[0, 16, 2] = 0.2  # below the threshold: not labelled, outside the box
    kp[1, :, :2] = kp[0, :, :2] + 200
    kp[1, :, 2] = 0.5
    kp[2, :, 2] = 0.1  # nobody
    people = People(kp, kp[:, :, 2].mean(1), np.zeros((3, 17, 1)))
    anns = people_as_annotations(people, 7, 11, 0.3)
    assert [a["id"] for a in anns] == [11, 12] and {a["image_id"] for a in anns} == {7}
    first = np.array(anns[0]["keypoints"]).reshape(17, 3)
    assert anns[0]["num_keypoints"] == 16 and first[16].tolist() == [0, 0, 0]
    assert (first[:16, 2] == 2).all() and np.allclose(first[:16, :2], kp[0, :16, :2], atol=1e-3)
    w, h = kp[0, 15, :2] - kp[0, 0, :2]
    assert anns[0]["area"] == pytest.approx(w * h) and anns[0]["bbox"][2:] == pytest.approx([w, h])
    assert people_as_annotations(People.empty(), 0, 1, 0.3) == []
    dataset = {
        "images": [{"id": 7, "file_name": "7.jpg", "height": 400, "width": 400}],
        "annotations": anns,
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO17.names)}],
    }
    path = tmp_path / "ref.json"
    path.write_text(json.dumps(dataset))
    stats, _ = evaluate_keypoints(people_to_coco(people, 7)[:2], path)
    assert stats["AP"] == pytest.approx(1.0)
    moved = People(kp[:2] + [[[40.0, 0, 0]]], people.scores[:2], people.tags[:2])
    assert evaluate_keypoints(people_to_coco(moved, 7), path)[0]["AP"] < 0.5
