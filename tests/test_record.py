"""The model record: carried by checkpoints and ONNX exports, read by every command, with one
precedence (record, then --config's inference section, then flags)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from hrpose.cli import main
from hrpose.record import (
    ModelRecord,
    RecordError,
    record_of_checkpoint,
    registered_record,
)
from hrpose.skeleton import COCO17, CROWDPOSE14
from hrpose.structures import InferenceSettings

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pose" / "coco-mini.yaml"


def test_record_round_trip_and_errors() -> None:
    record = ModelRecord(14, 14, CROWDPOSE14, InferenceSettings(input_size=128, scales=(1.0, 0.5)))
    data = json.loads(json.dumps(record.to_dict()))  # plain JSON data
    assert ModelRecord.from_dict(data) == record
    with pytest.raises(RecordError, match="newer"):
        ModelRecord.from_dict({**data, "record_version": 99})
    with pytest.raises(RecordError, match="unknown field"):
        ModelRecord.from_dict({**data, "colour": 1})
    with pytest.raises(RecordError, match="17 joints but a keypoint spec of 14"):
        ModelRecord(32, 17, CROWDPOSE14)


def test_registered_table_and_old_checkpoints() -> None:
    """Files without a record: W32 512, W48 640 (official test configs); an hrpose file from
    before records: its stored config's inference section (earlier key names too)."""
    assert registered_record(32, 17).inference.input_size == 512
    assert registered_record(48, 17).inference == InferenceSettings(input_size=640)
    assert registered_record(48, 14).keypoint_spec == CROWDPOSE14
    with pytest.raises(RecordError, match="no built-in keypoint set has 5 joints"):
        registered_record(32, 5)
    old = {"task": "pose", "config": {"model": {"width": 8, "num_joints": 17},
           "inference": {"input_size": 192, "flip": False, "det_threshold": 0.3}}}  # fmt: skip
    record = record_of_checkpoint(old, 8, 17)
    assert (record.inference.input_size, record.inference.flip) == (192, False)
    assert record.inference.detection_threshold == 0.3 and record.config_sha256
    with pytest.raises(RecordError, match="W8 with 17 joints"):
        record_of_checkpoint(
            {"extra": {"model_record": registered_record(32, 17).to_dict()}}, 8, 17
        )


@pytest.fixture(scope="module")
def trained_128(coco_mini: Path, tmp_path_factory) -> Path:
    """A short coco-mini run trained at input 128 with detection threshold 0.3 (its config)."""
    results = tmp_path_factory.mktemp("runs")
    argv = ["train", "pose", "--config", str(CONFIG), f"--dataloader.train_ds.root={coco_mini}",
            f"--dataloader.val_ds.root={coco_mini}", f"--setup.results_dir={results}",
            "--setup.run_name=r", "--model.width=8", "--data.input_size=128",
            "--inference.input_size=128", "--inference.detection_threshold=0.3",
            "--trainer.max_epochs=1", "--trainer.limit_batches=1", "--trainer.limit_val_batches=1",
            "--trainer.progress=False", "--tracking.mlflow=False"]  # fmt: skip
    assert main(argv) == 0
    best = results / "coco-mini" / "r" / "checkpoints" / "best.pt"
    assert best.is_file()
    return best


def test_trained_settings_reach_every_command(trained_128, coco_mini, tmp_path) -> None:
    """predict, eval and the ONNX export of a run use its input size and threshold, no flag."""
    state = torch.load(trained_128, weights_only=True)
    assert state["extra"]["model_record"]["dataset"] == "coco-mini/mini"
    image = str(coco_mini / "images" / "000000196141.jpg")
    assert main(["predict", image, "--weights", str(trained_128), "--output", str(tmp_path / "p"),
                 "--device", "cpu"]) == 0  # fmt: skip
    settings = json.loads((tmp_path / "p" / "settings.json").read_text())
    assert settings["settings"]["input_size"] == 128
    assert settings["settings"]["detection_threshold"] == 0.3
    assert settings["set_by"]["input_size"] == "record"
    ann = coco_mini / "person_keypoints.json"
    assert main(["eval", "pose", "--weights", str(trained_128), "--annotations", str(ann),
                 "--images", str(coco_mini / "images"), "--output", str(tmp_path / "e"),
                 "--limit", "1", "--device", "cpu"]) == 0  # fmt: skip
    protocol = json.loads((tmp_path / "e" / "protocol.json").read_text())
    assert (protocol["input_size"], protocol["detection_threshold"]) == (128, 0.3)
    assert protocol["model_record"]["config_sha256"] == settings["model_record"]["config_sha256"]
    onnx = tmp_path / "m.onnx"
    assert main(["export", "onnx", "--weights", str(trained_128), "--output", str(onnx)]) == 0
    assert main(["predict", image, "--weights", str(onnx), "--output", str(tmp_path / "o")]) == 0
    exported = json.loads((tmp_path / "o" / "settings.json").read_text())["settings"]
    assert (exported["input_size"], exported["detection_threshold"]) == (128, 0.3)
    assert exported == settings["settings"]


def test_precedence_record_then_config_then_flags(trained_128, tmp_path) -> None:
    from hrpose.cli.options import parse
    from hrpose.cli.predict import _parser, build_predictor

    yaml = tmp_path / "inf.yaml"
    yaml.write_text("inference: {detection_threshold: 0.2, tag_threshold: 0.8}\n")
    argv = ["x.jpg", "--weights", str(trained_128), "--config", str(yaml),
            "--tag-threshold", "0.7", "--inference.refine=false"]  # fmt: skip
    predictor, set_by = build_predictor(*parse(_parser(), argv, ("inference",)))
    s = predictor.params
    assert (s.input_size, s.detection_threshold, s.tag_threshold, s.refine) == (
        128,
        0.2,
        0.7,
        False,
    )
    assert set_by["input_size"] == "record" and set_by["detection_threshold"] == "config"
    assert set_by["tag_threshold"] == "flag" and set_by["refine"] == "config"


def test_official_w48_gets_640_everywhere(tmp_path, monkeypatch) -> None:
    """An official-layout W48 file (no record): 640 in predict, eval and export; a flag changes
    one field and leaves the rest."""
    import hrpose.export
    from hrpose.cli import eval_pose
    from hrpose.cli import predict as predict_cli
    from hrpose.cli.options import parse
    from hrpose.models import HigherHRNet

    w48 = tmp_path / "pose_higher_hrnet_w48_640.pth"
    torch.save(HigherHRNet(48, 17, init_weights=False).state_dict(), w48)
    args = parse(predict_cli._parser(), ["x.jpg", "--weights", str(w48)], ("inference",))
    assert predict_cli.build_predictor(*args)[0].params == InferenceSettings(input_size=640)
    argv = ["--weights", str(w48), "--detection-threshold", "0.2"]
    args, over = parse(eval_pose._parser(), argv, ("inference", "dataloader"))
    s = eval_pose._predictor(args, over, str(w48)).params
    assert s == InferenceSettings(input_size=640, detection_threshold=0.2)
    written: list[ModelRecord] = []
    monkeypatch.setattr(hrpose.export, "export_onnx", lambda m, p, r, o: written.append(r) or p)
    assert (
        main(["export", "onnx", "--weights", str(w48), "--output", str(tmp_path / "w.onnx")]) == 0
    )
    assert written[0].inference.input_size == 640 and written[0].origin == "registered"
    assert written[0].keypoint_spec == COCO17


def test_backend_is_honoured(trained_128, coco_mini, tmp_path, capsys) -> None:
    image = str(coco_mini / "images" / "000000196141.jpg")
    assert main(["predict", image, "--weights", str(trained_128), "--backend",
                 "onnxruntime"]) == 2  # fmt: skip
    assert "hrpose export onnx --weights" in capsys.readouterr().err
    onnx = tmp_path / "m.onnx"
    onnx.write_bytes(b"")
    assert main(["predict", image, "--weights", str(onnx), "--backend", "torch"]) == 2
    assert "use --backend onnxruntime" in capsys.readouterr().err


def test_library_keeps_the_callers_state() -> None:
    """Random weights do not reseed torch's global generator; mps is refused by name."""
    from hrpose.loading import load_model
    from hrpose.predict import Predictor

    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a = load_model("random", width=8).network
    assert torch.equal(torch.rand(1), expected)
    b = load_model("random", width=8).network  # still the same weights every time
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(),
                                                 strict=True))  # fmt: skip
    with pytest.raises(ValueError, match="mps .*float64.*--device cpu"):
        Predictor(a, device="mps")


def test_onnx_weights_take_a_spec(tmp_path) -> None:
    """from_weights("x.onnx", spec=...) replaces the keypoint set (it raised a TypeError)."""
    from hrpose.export import export_onnx
    from hrpose.loading import load_model
    from hrpose.predict import Predictor
    from hrpose.skeleton import KeypointSpec

    loaded = load_model("random", width=8)
    path = export_onnx(loaded.network, tmp_path / "m.onnx", registered_record(8, 17, input_size=64))
    renamed = KeypointSpec(names=tuple(f"j{i}" for i in range(17)), flip_index=COCO17.flip_index,
                           skeleton=COCO17.skeleton, sigmas=COCO17.sigmas)  # fmt: skip
    predictor = Predictor.from_weights(path, spec=renamed)
    assert predictor.spec.names[0] == "j0" and predictor.input_size == 64
    with pytest.raises(Exception, match="predicts 17 joints but the keypoint spec has 14"):
        Predictor.from_weights(path, spec=CROWDPOSE14)


def test_load_model_from_the_package_root() -> None:
    import hrpose
    from hrpose.loading import load_model

    assert hrpose.load_model is load_model
    assert hrpose.load_model("random", width=8).record.origin == "untrained"


def test_onnxruntime_uses_cuda_when_asked_and_installed(monkeypatch) -> None:
    import onnxruntime as ort

    from hrpose.runtime import onnx_providers

    assert onnx_providers(torch.device("cpu")) == ["CPUExecutionProvider"]
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    with pytest.raises(ValueError, match="onnxruntime-gpu, or use --device cpu"):
        onnx_providers(torch.device("cuda"))
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])  # fmt: skip
    assert onnx_providers(torch.device("cuda"))[0] == "CUDAExecutionProvider"
