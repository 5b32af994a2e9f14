"""ONNX export of the trained W8 checkpoint: outputs equal torch's, dynamic sizes, metadata, and
the same decoded people through ONNX Runtime as through torch on coco-mini images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from hrpose.cli import main
from hrpose.data.images import read_image
from hrpose.decode import DecodeParams
from hrpose.predict import Predictor

PARAMS = DecodeParams(flip=False, detection_threshold=0.3)  # configs/pose/coco-mini.yaml


@pytest.fixture(scope="module")
def exported(shared_data: Path, tmp_path_factory) -> tuple[Path, Path]:
    weights = shared_data / "weights" / "w8-coco-mini.pt"
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    rc = main(["export", "onnx", "--weights", str(weights), "--output", str(path),
               "--input-size", "192"])  # fmt: skip
    assert rc == 0
    return weights, path


def test_onnx_matches_torch(exported) -> None:
    weights, path = exported
    onnx.checker.check_model(onnx.load(str(path)))
    model = Predictor.from_weights(weights).model
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    for h, w in ((192, 288), (256, 192)):
        x = torch.randn(1, 3, h, w, generator=g)
        with torch.no_grad():
            low, high = model(x)
        o_low, o_high = session.run(None, {"image": x.numpy()})
        assert o_low.shape == tuple(low.shape) and o_high.shape == tuple(high.shape)
        assert float(low[:, :17].max()) > 0.1  # a trained head: real peaks, not zeros
        assert np.abs(o_low - low.numpy()).max() < 1e-4
        assert np.abs(o_high - high.numpy()).max() < 1e-4
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["input_size"] == "192"
    assert json.loads(meta["flip_index"])[1] == 2 and len(json.loads(meta["keypoint_names"])) == 17


def test_onnxruntime_finds_the_same_people(exported, coco_mini) -> None:
    weights, path = exported
    torch_predictor = Predictor.from_weights(weights, input_size=192, params=PARAMS)
    onnx_predictor = Predictor.from_weights(path, params=PARAMS)
    assert onnx_predictor.input_size == 192 and "ONNX" in onnx_predictor.description
    names = ("000000196141.jpg", "000000197388.jpg")
    for name in names:
        image = read_image(coco_mini / "images" / name)
        a, b = torch_predictor(image), onnx_predictor(image)
        assert len(a) >= 4, name  # the annotated people (and fragments) are there
        assert len(a) == len(b), name
        assert np.abs(a.keypoints[..., :2] - b.keypoints[..., :2]).max() < 0.05, name
        assert np.abs(a.keypoints[..., 2] - b.keypoints[..., 2]).max() < 1e-3, name
        assert np.abs(a.scores - b.scores).max() < 1e-3, name


def test_predict_cli_with_onnxruntime(exported, coco_mini, tmp_path) -> None:
    weights, path = exported
    image = coco_mini / "images" / "000000000785.jpg"
    out, torch_out = tmp_path / "o", tmp_path / "t"
    config = Path(__file__).resolve().parents[1] / "configs" / "pose" / "coco-mini.yaml"
    rc = main(["predict", str(image), "--weights", str(path), "--backend", "onnxruntime",
               "--config", str(config), "--output", str(out)])  # fmt: skip
    assert rc == 0 and (out / "000000000785_pose.jpg").is_file()
    rc = main(["predict", str(image), "--weights", str(weights), "--config", str(config),
               "--output", str(torch_out)])  # fmt: skip
    assert rc == 0
    a = json.loads((out / "predictions.json").read_text())
    b = json.loads((torch_out / "predictions.json").read_text())
    assert len(a) == len(b) >= 1
    for ra, rb in zip(a, b, strict=True):
        assert np.abs(np.array(ra["keypoints"]) - np.array(rb["keypoints"])).max() < 0.05


def test_export_leaves_the_model_in_eval_mode(tmp_path) -> None:
    """torch.onnx.export restores the wrapper's mode on the model: it must stay in eval mode, or
    its BatchNorms switch to batch statistics after an export (and the outputs change)."""
    from hrpose.export import export_onnx
    from hrpose.models import HigherHRNet
    from hrpose.record import registered_record

    torch.manual_seed(0)
    model = HigherHRNet(8).eval()
    for m in model.modules():  # non-trivial running statistics, so train mode would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
    moved: list[int] = []
    cpu = torch.nn.Module.cpu

    def spy(self):
        moved.append(id(self))
        return cpu(self)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.nn.Module, "cpu", spy)
        export_onnx(model, tmp_path / "m.onnx", registered_record(8, 17, input_size=64))
    assert moved and id(model) not in moved  # a copy goes to the CPU, never the caller's model
    assert not any(m.training for m in model.modules())
    with torch.no_grad():
        after = model(x)
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b)
