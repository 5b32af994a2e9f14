"""INT8 calibration chosen by accuracy (``hrpose quantize --method search``): every candidate is
scored, the best is kept and says why, the label-free score tells a working model from a broken
one, and the command's flags are checked."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from hrpose.calibration_search import (
    agreement_scorer,
    reference_file,
    search_calibration,
    validation_scorer,
)
from hrpose.cli import main
from hrpose.data.images import read_image
from hrpose.loading import load_model
from hrpose.models import HigherHRNet
from hrpose.predict import Predictor
from hrpose.quantize import QuantizeError, quantize_model


@pytest.fixture(scope="module")
def w8(shared_data: Path):
    return load_model(shared_data / "weights" / "w8-coco-mini.pt")


@pytest.fixture(scope="module")
def images(coco_mini: Path) -> list[np.ndarray]:
    return [read_image(p) for p in sorted((coco_mini / "images").glob("*.jpg"))]


def _quantization(path: Path) -> dict:
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return json.loads(meta["quantization"])


def test_the_best_scored_candidate_is_kept(w8, images, tmp_path: Path) -> None:
    """With a score that prefers the 99.9 percentile file, that file is the output, and its
    metadata lists every candidate's score and the criterion."""
    seen: list[str] = []

    def score(path: Path) -> float:
        activations = _quantization(path)["activations"]
        seen.append(activations)
        return 0.7 if "99.9 percentile" in activations else 0.2

    out, scores = search_calibration(w8.network, w8.record, images[:2], tmp_path / "best.onnx",
                                     score, "test score", (99.99, 99.9))  # fmt: skip
    assert list(scores) == ["minmax", "mean-minmax", "percentile 99.99", "percentile 99.9"]
    assert len(seen) == 4 and "min/max" in seen[0] and "mean of each input" in seen[1]
    info = _quantization(out)
    assert "99.9 percentile" in info["activations"]
    assert info["selection"] == {"criterion": "test score", "chosen": "percentile 99.9",
                                 "scores": scores}  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.onnx"]  # no partial files
    tie, _ = search_calibration(w8.network, w8.record, images[:1], tmp_path / "tie.onnx",
                                lambda p: 0.5, "flat", (99.9,))  # fmt: skip
    assert _quantization(tie)["selection"]["chosen"] == "minmax"


def test_agreement_with_fp32_tells_working_from_broken(w8, images, tmp_path: Path) -> None:
    """The label-free score: the fp32 model's people become the ground truth, the INT8 file of
    the same model agrees with them, an INT8 file of untrained weights does not."""
    ref, ids = reference_file(Predictor(w8.network, record=w8.record), images, tmp_path)
    anns = json.loads(ref.read_text())["annotations"]
    assert ids == [0, 1, 2, 3] and len(anns) >= 12  # coco-mini has 12 annotated people
    score = agreement_scorer(w8.network, w8.record, images, tmp_path)
    good = quantize_model(w8.network, w8.record, images, tmp_path / "good.onnx")
    torch.manual_seed(0)
    untrained = HigherHRNet(8, 17).eval()
    bad = quantize_model(untrained, w8.record, images[:1], tmp_path / "bad.onnx")
    assert score(good) > 0.4 and score(bad) < 0.05
    with pytest.raises(QuantizeError, match="finds nobody"):
        blank = [np.zeros((192, 192, 3), np.uint8)]
        agreement_scorer(w8.network, w8.record, blank, tmp_path)


def test_search_by_validation_ap_through_the_command(shared_data: Path, coco_mini: Path,
                                                     tmp_path: Path, capsys) -> None:  # fmt: skip
    """`--method search --annotations --images` prints each candidate's COCO AP and keeps the
    best; the kept file scores what its metadata says."""
    out = tmp_path / "w8-int8.onnx"
    ann, imgs = coco_mini / "person_keypoints.json", coco_mini / "images"
    rc = main(["quantize", "--weights", str(shared_data / "weights" / "w8-coco-mini.pt"),
               "--output", str(out), "--calibration", str(imgs), "--method", "search",
               "--percentiles", "99.99", "--annotations", str(ann),
               "--images", str(imgs)])  # fmt: skip
    assert rc == 0
    printed = capsys.readouterr().out
    info = _quantization(out)["selection"]
    scores = info["scores"]
    assert list(scores) == ["minmax", "mean-minmax", "percentile 99.99"]
    assert info["chosen"] in printed
    assert info["chosen"] == max(scores, key=scores.get)
    assert all(f"{name:<18} {v:.3f}" in printed for name, v in scores.items())
    assert validation_scorer(ann, imgs)(out) == pytest.approx(scores[info["chosen"]])
    assert scores[info["chosen"]] > 0.3


def test_search_flags_are_checked(shared_data: Path, tmp_path: Path, capsys) -> None:
    weights = shared_data / "weights" / "w8-coco-mini.pt"
    base = ["quantize", "--weights", str(weights), "--output", str(tmp_path / "m.onnx"),
            "--calibration", str(shared_data / "examples")]  # fmt: skip
    cases = {
        ("--percentiles", "99.9"): "--percentiles applies to --method search",
        ("--annotations", "a.json", "--images", "x"): "--annotations applies to --method search",
        ("--method", "search", "--annotations", "a.json"): "--annotations and --images go together",
        ("--method", "search", "--percentiles", "40"): "--percentiles 40: give shares in (50, 100]",
    }
    for extra, message in cases.items():
        with pytest.raises(SystemExit):
            main([*base, *extra])
        assert message in capsys.readouterr().err
    rc = main([*base, "--method", "search", "--annotations", str(tmp_path / "no.json"),
               "--images", str(tmp_path)])  # fmt: skip
    assert rc == 2 and "no.json: no such file" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()
