"""ONNX export: outputs equal torch's, dynamic sizes, metadata, and predict through ORT."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hrpose.cli import main
from hrpose.models import HigherHRNet

onnx = pytest.importorskip("onnx", reason="the onnx extra is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra is not installed")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = HigherHRNet(8).eval()
    with torch.no_grad():
        model.final_layers[0].weight.normal_(0, 0.2)
    d = tmp_path_factory.mktemp("onnx")
    torch.save(model.state_dict(), d / "w8.pth")
    assert (
        main(
            [
                "export",
                "onnx",
                "--weights",
                str(d / "w8.pth"),
                "--output",
                str(d / "m.onnx"),
                "--input-size",
                "128",
            ]
        )
        == 0
    )
    return model, d


def test_onnx_matches_torch(exported) -> None:
    model, d = exported
    session = ort.InferenceSession(str(d / "m.onnx"), providers=["CPUExecutionProvider"])
    for h, w in ((128, 96), (64, 160)):
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            low, high = model(x)
        o_low, o_high = session.run(None, {"image": x.numpy()})
        assert o_low.shape == tuple(low.shape) and o_high.shape == tuple(high.shape)
        assert np.abs(o_low - low.numpy()).max() < 1e-4
        assert np.abs(o_high - high.numpy()).max() < 1e-4
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["input_size"] == "128"
    assert json.loads(meta["flip_index"])[1] == 2 and len(json.loads(meta["keypoint_names"])) == 17


def test_predict_with_onnxruntime(exported, shared_data, tmp_path) -> None:
    _, d = exported
    out = tmp_path / "o"
    rc = main(
        [
            "predict",
            str(shared_data / "coco-mini" / "images" / "000000000785.jpg"),
            "--weights",
            str(d / "m.onnx"),
            "--backend",
            "onnxruntime",
            "--output",
            str(out),
        ]
    )
    assert rc == 0 and (out / "000000000785_pose.jpg").is_file()
    torch_out = tmp_path / "t"
    main(
        [
            "predict",
            str(shared_data / "coco-mini" / "images" / "000000000785.jpg"),
            "--weights",
            str(d / "w8.pth"),
            "--output",
            str(torch_out),
            "--input-size",
            "128",
        ]
    )
    a = json.loads((out / "predictions.json").read_text())
    b = json.loads((torch_out / "predictions.json").read_text())
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert np.abs(np.array(ra["keypoints"]) - np.array(rb["keypoints"])).max() < 0.05
