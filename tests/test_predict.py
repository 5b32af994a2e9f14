"""Predictor and `hrpose predict` with a trained checkpoint: real people on coco-mini images.

The checkpoint (``../shared/data/weights/w8-coco-mini.pt``, HigherHRNet-W8 overfit on coco-mini)
finds the annotated people there with its training config's inference settings; on other images
it produces garbage, so every test that needs people uses coco-mini images or frames made of them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hrpose.cli import main
from hrpose.data.images import read_image
from hrpose.decode import DecodeParams
from hrpose.models import WeightsError
from hrpose.predict import Predictor
from hrpose.skeleton import COCO17

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pose" / "coco-mini.yaml"
INFERENCE = {"input_size": 192, "params": DecodeParams(flip=False, detection_threshold=0.3)}


@pytest.fixture(scope="module")
def trained(shared_data: Path) -> Path:
    return shared_data / "weights" / "w8-coco-mini.pt"


@pytest.fixture(scope="module")
def annotations(coco_mini: Path) -> dict:
    return json.loads((coco_mini / "person_keypoints.json").read_text())


def coco_oks(pred: np.ndarray, gt: np.ndarray, area: np.ndarray) -> np.ndarray:
    """(P, G) COCO OKS as COCOeval computes it: ground-truth area and visibility, COCO sigmas."""
    var = (2 * np.asarray(COCO17.sigmas)) ** 2
    vis = gt[:, :, 2] > 0
    d2 = ((pred[:, None, :, :2] - gt[None, :, :, :2]) ** 2).sum(-1)
    e = d2 / var / (area[None, :, None] + np.spacing(1)) / 2
    return (np.exp(-e) * vis).sum(-1) / vis.sum(-1)


def ground_truth(annotations: dict, image_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(G, 17, 3) keypoints and (G,) areas of the annotated people with keypoints."""
    anns = [a for a in annotations["annotations"]
            if a["image_id"] == image_id and a["num_keypoints"] > 0]  # fmt: skip
    kp = np.array([a["keypoints"] for a in anns], float).reshape(-1, 17, 3)
    return kp, np.array([a["area"] for a in anns], float)


def test_predictor_finds_the_annotated_people(trained, coco_mini, annotations) -> None:
    predictor = Predictor.from_weights(trained, **INFERENCE)
    assert "W8" in predictor.description
    assert len(annotations["images"]) == 4
    matched = 0
    for info in annotations["images"]:
        image = read_image(coco_mini / "images" / info["file_name"])
        pred = predictor.predict(image)
        people = pred.people
        gt, area = ground_truth(annotations, info["id"])
        assert len(gt) > 0 and len(people) >= len(gt), info["file_name"]
        assert people.keypoints.shape[1:] == (17, 3) and len(people.scores) == len(people)
        assert pred.outputs[0].shape[1] == 34
        sim = coco_oks(people.keypoints, gt, area)  # (P, G)
        best = sim.argmax(0)
        # every annotated person has its own prediction, close by COCO's own measure
        assert sim.max(0).min() > 0.5, (info["file_name"], sim.max(0))
        assert len(set(best.tolist())) == len(gt), info["file_name"]
        matched += len(gt)
    assert matched == 12


def test_predictor_rejects_classifier_weights(tmp_path) -> None:
    from hrpose.models import HRNetClassifier

    path = tmp_path / "cls.pth"
    torch.save(HRNetClassifier(8, num_classes=3, init_weights=False).state_dict(), path)
    with pytest.raises(WeightsError, match="not HigherHRNet"):
        Predictor.from_weights(path)
    with pytest.raises(ValueError, match="RGB uint8"):
        Predictor.from_weights("random", width=8, input_size=64).predict(np.zeros((4, 4)))


def test_cli_folder_with_a_corrupt_file(trained, coco_mini, annotations, tmp_path, capsys) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("000000000785.jpg", "000000040083.jpg"):
        shutil.copy(coco_mini / "images" / name, folder / name)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    out = tmp_path / "out"
    rc = main(["predict", str(folder), "--weights", str(trained), "--config", str(CONFIG),
               "--output", str(out), "--heatmaps", "--tags"])  # fmt: skip
    assert rc == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "not a readable image" in err
    names = sorted(p.name for p in out.iterdir())
    assert "000000000785_pose.jpg" in names and "000000040083_heatmaps.jpg" in names
    assert "000000040083_tags.png" in names
    rows = json.loads((out / "predictions.json").read_text())
    assert {r["file_name"] for r in rows} == {"000000000785.jpg", "000000040083.jpg"}
    for image_id in (785, 40083):
        mine = [r for r in rows if r["image_id"] == image_id]
        gt, area = ground_truth(annotations, image_id)
        assert len(mine) >= len(gt) > 0
        kp = np.array([r["keypoints"] for r in mine]).reshape(-1, 17, 3)
        assert coco_oks(kp, gt, area).max(0).min() > 0.5, image_id


def _shifted_video(coco_mini: Path, path: Path, frames: int, step: float) -> np.ndarray:
    """Writes image 785 moved ``step`` px right per frame as an H.264 mp4; (frames, 17, 3) truth."""
    from hrpose.viz.video import VideoWriter

    image = read_image(coco_mini / "images" / "000000000785.jpg")
    h, w = image.shape[:2]
    with VideoWriter(path, fps=10) as writer:
        for t in range(frames):
            m = np.float32([[1, 0, step * t], [0, 1, 0]])
            writer.write(cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE))
    return np.arange(frames) * step


def _person_per_frame(rows: list[dict], gt: np.ndarray, area: np.ndarray, shifts: np.ndarray):
    """Per frame, the best-scored prediction that matches the annotated person (OKS > 0.5)."""
    found = []
    for t, dx in enumerate(shifts):
        truth = gt.copy()
        truth[..., 0] += dx
        mine = [r for r in rows if r["frame"] == t]
        assert mine, f"no people in frame {t}"
        kp = np.array([r["keypoints"] for r in mine]).reshape(-1, 17, 3)
        sim = coco_oks(kp, truth, area)[:, 0]
        hits = [r for r, s in zip(mine, sim, strict=True) if s > 0.5]
        assert hits, f"frame {t}: the person was not found (best OKS {sim.max():.2f})"
        found.append(max(hits, key=lambda r: r["score"]))
    return found


def test_cli_video_tracks_and_smooths_people(trained, coco_mini, annotations, tmp_path) -> None:
    from hrpose.viz.video import read_video

    source = tmp_path / "walk.mp4"
    shifts = _shifted_video(coco_mini, source, frames=4, step=2.0)
    gt, area = ground_truth(annotations, 785)
    runs = {}
    for name, extra in (("raw", []), ("smooth", ["--smooth"])):
        out = tmp_path / name
        rc = main(["predict", str(source), "--weights", str(trained), "--config", str(CONFIG),
                   "--output", str(out), *extra])  # fmt: skip
        assert rc == 0
        frames = list(read_video(out / "walk_pose.mp4"))
        assert len(frames) == 4 and frames[0].shape == (424, 640, 3)
        runs[name] = json.loads((out / "predictions.json").read_text())
        assert {r["frame"] for r in runs[name]} == set(range(4))
    for rows in runs.values():
        person = _person_per_frame(rows, gt, area, shifts)
        assert len({r["track_id"] for r in person}) == 1  # one id for the person in all frames
    raw = np.array([r["keypoints"] for r in _person_per_frame(runs["raw"], gt, area, shifts)])
    smooth = np.array([r["keypoints"] for r in _person_per_frame(runs["smooth"], gt, area, shifts)])
    assert np.allclose(raw[0], smooth[0])  # One-Euro passes the first frame through
    assert np.abs(raw[1:] - smooth[1:]).max() > 0.5  # and filters the rest


def test_cli_video_batches_frames_with_the_same_predictions(trained, coco_mini, tmp_path) -> None:
    """--batch-frames 3 on 4 frames (a batch of 3, then 1) writes what the CPU default (one frame
    per batch) writes: people, scores, track ids and smoothing in frame order."""
    source = tmp_path / "walk.mp4"
    _shifted_video(coco_mini, source, frames=4, step=2.0)
    sizes: list[int] = []
    batch = Predictor.predict_batch

    def spy(self, images):
        sizes.append(len(images))
        return batch(self, images)

    runs = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Predictor, "predict_batch", spy)
        for name, extra in (("default", []), ("3", ["--batch-frames", "3"])):
            out = tmp_path / name
            rc = main(["predict", str(source), "--weights", str(trained), "--config", str(CONFIG),
                       "--output", str(out), "--device", "cpu", "--smooth", *extra])  # fmt: skip
            assert rc == 0
            runs[name] = json.loads((out / "predictions.json").read_text())
    assert sizes == [1, 1, 1, 1, 3, 1]  # the default on a CPU is one frame per batch
    one, three = runs["default"], runs["3"]
    assert len(one) == len(three) > 4 and {r["frame"] for r in three} == set(range(4))
    for a, b in zip(one, three, strict=True):  # same order: frame, then decoder order
        assert (a["frame"], a["track_id"], a["image_id"]) == (b["frame"], b["track_id"],
                                                             b["image_id"])  # fmt: skip
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-2)
        assert a["score"] == pytest.approx(b["score"], abs=1e-4)
    with pytest.raises(SystemExit, match="--batch-frames must be >= 1"):
        main(["predict", str(source), "--weights", "random", "--batch-frames", "0"])


def test_cli_errors(tmp_path, capsys) -> None:
    assert main(["predict", str(tmp_path), "--weights", str(tmp_path / "none.pth")]) == 2
    assert "none.pth': no such file" in capsys.readouterr().err
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


def test_videos_killed_and_resumed_redo_only_the_video_cut_short(trained, coco_mini, tmp_path):
    """Two videos; Ctrl-C in the second keeps the first (its end line) and the second's frames
    so far in predictions.json; --resume skips the first and redoes the second from frame 0:
    predictions.json equals an unbroken run's, no frame line twice."""
    videos = tmp_path / "videos"
    videos.mkdir()
    _shifted_video(coco_mini, videos / "a.mp4", frames=3, step=2.0)
    _shifted_video(coco_mini, videos / "b.mp4", frames=4, step=3.0)
    argv = ["predict", str(videos), "--weights", str(trained), "--config", str(CONFIG),
            "--device", "cpu"]  # fmt: skip
    assert main([*argv, "--output", str(tmp_path / "full")]) == 0
    full = json.loads((tmp_path / "full" / "predictions.json").read_text())
    assert {r["file_name"] for r in full} == {"a.mp4", "b.mp4"}
    batch, calls = Predictor.predict_batch, {"n": 0}

    def interrupted(self, images):
        calls["n"] += 1
        if calls["n"] == 3 + 3:  # the third frame of b.mp4
            raise KeyboardInterrupt
        return batch(self, images)

    out = tmp_path / "cut"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Predictor, "predict_batch", interrupted)
        assert main([*argv, "--output", str(out)]) == 130
    cut = json.loads((out / "predictions.json").read_text())
    assert {r["frame"] for r in cut if r["file_name"] == "b.mp4"} == {0, 1}
    lines = [json.loads(t) for t in (out / "predictions.jsonl").read_text().splitlines()]
    assert [e["file_name"] for e in lines if e.get("finished")] == ["a.mp4"]
    assert main([*argv, "--output", str(out), "--resume"]) == 0
    resumed = json.loads((out / "predictions.json").read_text())
    assert resumed == full  # the same order too: videos by name, frames in order
    lines = [json.loads(t) for t in (out / "predictions.jsonl").read_text().splitlines()]
    frames = [(e["file_name"], e["frame"]) for e in lines if "frame" in e]
    assert frames == [("a.mp4", n) for n in range(3)] + [("b.mp4", n) for n in range(4)]
