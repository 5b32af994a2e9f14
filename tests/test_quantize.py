"""Static INT8 (`hrpose quantize`, ``hrpose.quantize``): the quantized w8-coco-mini model keeps
its record, says int8, finds every annotated coco-mini person, refuses a mismatched
architecture, warns on a CPU without VNNI, and the command names bad calibration input."""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

from hrpose import runtime
from hrpose.cli import main
from hrpose.data.images import read_image
from hrpose.loading import load_model
from hrpose.models import HigherHRNet, WeightsError
from hrpose.predict import Predictor
from hrpose.quantize import (
    QuantizeError,
    calibration_files,
    conv_weight_shapes,
    fingerprint,
    model_fingerprint,
    record_fingerprint,
)
from hrpose.record import registered_record
from test_predict import coco_oks, ground_truth

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pose" / "coco-mini.yaml"


@pytest.fixture(scope="module")
def weights(shared_data: Path) -> Path:
    return shared_data / "weights" / "w8-coco-mini.pt"


@pytest.fixture(scope="module")
def int8(weights: Path, shared_data: Path, tmp_path_factory) -> Path:
    """w8-coco-mini.pt quantized by the command, calibrated on coco-mini and the examples."""
    path = tmp_path_factory.mktemp("int8") / "w8-int8.onnx"
    folders = [str(shared_data / "coco-mini" / "images"), str(shared_data / "examples")]
    rc = main(["quantize", "--weights", str(weights), "--output", str(path),
               "--calibration", *folders])  # fmt: skip
    assert rc == 0 and path.is_file()
    return path


@pytest.fixture(autouse=True)
def fresh_warning(monkeypatch) -> None:
    """Each test sees the once-per-process INT8 warning as not yet given."""
    monkeypatch.setattr(runtime, "_WARNED", set())


def test_the_file_is_int8_with_its_record(int8: Path, weights: Path) -> None:
    proto = onnx.load(str(int8))
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["precision"] == "int8"
    record = json.loads(meta["model_record"])
    assert (record["width"], record["num_joints"], record["precision"]) == (8, 17, "int8")
    assert record["inference"]["input_size"] == 192 and record["inference"]["flip"] is False
    info = json.loads(meta["quantization"])
    assert info["method"] == "onnxruntime-static-qdq" and info["calibration_images"] == 12
    # quantized: int8 weights behind DequantizeLinear, except the two fp32 head convolutions
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("QuantizeLinear") > 100 and ops.count("DequantizeLinear") > 300
    inits = {t.name: t.data_type for t in proto.graph.initializer}
    heads = [n for n in proto.graph.node if "final_layers" in n.name and n.op_type == "Conv"]
    assert len(heads) == 2
    assert all(inits.get(n.input[1]) == onnx.TensorProto.FLOAT for n in heads)
    # the outputs are the heads' fp32 tensors, not a rounded copy (the Concat reads that one)
    producers = {o: n for n in proto.graph.node for o in n.output}
    assert {producers[o.name].name for o in proto.graph.output} == {n.name for n in heads}
    concat = next(n for n in proto.graph.node if n.op_type == "Concat" and "/model/" in n.name)
    assert "low" not in concat.input
    assert any(producers[i].op_type == "DequantizeLinear" for i in concat.input)
    original = load_model(weights)
    assert meta["architecture_fingerprint"] == model_fingerprint(original.network)
    with pytest.warns(UserWarning) if not runtime.cpu_has_vnni() else warnings.catch_warnings():
        loaded = load_model(int8)
    assert loaded.record.precision == "int8" and "INT8" in loaded.description
    assert loaded.record.keypoint_spec == original.record.keypoint_spec
    predictor = Predictor.from_loaded(loaded)
    assert predictor.precision == "int8" and predictor.input_size == 192
    image = np.random.default_rng(0).integers(0, 256, (192, 192, 3), dtype=np.uint8)
    low = predictor.forward(image)[2][0]
    assert len(np.unique(low.numpy())) > 256  # not 256 uint8 levels


def test_int8_finds_every_annotated_person(int8: Path, coco_mini: Path) -> None:
    annotations = json.loads((coco_mini / "person_keypoints.json").read_text())
    predictor = Predictor.from_weights(int8)
    assert predictor.precision == "int8"
    total = sum(a["num_keypoints"] > 0 for a in annotations["annotations"])
    assert total == 12
    matched = 0
    for info in annotations["images"]:
        people = predictor(read_image(coco_mini / "images" / info["file_name"]))
        gt, area = ground_truth(annotations, info["id"])
        assert len(gt) > 0 and len(people) >= len(gt), info["file_name"]
        sim = coco_oks(people.keypoints, gt, area)  # (P, G)
        assert sim.max(0).min() >= 0.5, (info["file_name"], sim.max(0))
        assert len(set(sim.argmax(0).tolist())) == len(gt), info["file_name"]
        matched += len(gt)
    assert matched == total


def _with_record(src: Path, dst: Path, **changes) -> Path:
    """A copy of an INT8 file whose stored record has ``changes``."""
    proto = onnx.load(str(src))
    for p in proto.metadata_props:
        if p.key == "model_record":
            record = json.loads(p.value)
            record.update(changes)
            p.value = json.dumps(record)
    onnx.save(proto, str(dst))
    return dst


def test_a_mismatched_architecture_is_refused(int8: Path, tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="W8 with 17 joints, not width=32"):
        load_model(int8, width=32)
    with pytest.raises(WeightsError, match="not num_joints=14"):
        load_model(int8, num_joints=14)
    # a record edited to another architecture than the graph's convolutions
    edited = _with_record(int8, tmp_path / "w16.onnx", width=16)
    with pytest.raises(WeightsError, match="graph is W8 with 17 joints .* says HigherHRNet-W16"):
        load_model(edited)
    # the fingerprint is the convolution layout: equal for the graph and for the record's model
    proto = onnx.load(str(int8))
    assert fingerprint(conv_weight_shapes(proto)) == record_fingerprint(load_model(int8).record)
    assert record_fingerprint(replace(load_model(int8).record, width=16)) != fingerprint(
        conv_weight_shapes(proto)
    )
    # a network given another record than its own, and other precisions on an INT8 model
    network = load_model(int8).network
    w32 = replace(registered_record(32, 17), precision="int8")
    with pytest.raises(ValueError, match="INT8 network is HigherHRNet-W8 with 17 joints"):
        Predictor(network, record=w32)
    with pytest.raises(ValueError, match="runs in int8"):
        Predictor.from_weights(int8, precision="bf16")
    with pytest.raises(ValueError, match="needs a quantized model"):
        Predictor(HigherHRNet(8), precision="int8")


def test_the_vnni_warning_follows_the_cpu_flags(int8: Path, monkeypatch) -> None:
    text = Path("/proc/cpuinfo").read_text()
    real = any(f in text.split() for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
    assert runtime.cpu_has_vnni() == real
    if not real:  # this machine (AVX2 only): the warning fires, once per process
        with pytest.warns(UserWarning, match="INT8 will be slow on this CPU"):
            load_model(int8)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            Predictor.from_weights(int8)
    runtime._WARNED.clear()
    monkeypatch.setattr(runtime, "_cpuinfo", lambda: "flags\t\t: fpu sse2 avx2 avx512_vnni\n")
    assert runtime.cpu_has_vnni()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_model(int8)  # a VNNI CPU: no warning
    monkeypatch.setattr(runtime, "_cpuinfo", lambda: "flags\t\t: fpu sse2 avx2 fma\n")
    assert not runtime.cpu_has_vnni()
    with pytest.warns(UserWarning, match="avx512_vnni, avx_vnni, amx_int8"):
        Predictor.from_weights(int8)


def test_bad_calibration_input_is_named(weights: Path, coco_mini: Path, tmp_path: Path,
                                        capsys) -> None:  # fmt: skip
    out = str(tmp_path / "m.onnx")
    base = ["quantize", "--weights", str(weights), "--output", out]
    assert main([*base, "--calibration", str(tmp_path / "missing")]) == 2
    assert "missing: no such folder" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*base, "--calibration", str(empty)]) == 2
    assert "has no images" in capsys.readouterr().err
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(coco_mini / "images" / "000000000785.jpg", bad / "a.jpg")
    (bad / "b.jpg").write_bytes(b"\xff\xd8 truncated")
    assert main([*base, "--calibration", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "b.jpg" in err and "remove or replace it" in err
    with pytest.raises(SystemExit):
        main(base)  # no --calibration
    assert "--calibration DIR is required" in capsys.readouterr().err
    assert not Path(out).exists()
    with pytest.raises(QuantizeError, match="max_images must be >= 1"):
        calibration_files([coco_mini / "images"], 0)
    picked = calibration_files([coco_mini / "images", coco_mini.parent / "examples"], 3)
    assert len(picked) == 3 and picked[0].parent.name == "images"
    assert picked[-1].parent.name == "examples"


def test_predict_with_an_int8_file_and_on_the_fly(int8: Path, weights: Path, shared_data: Path,
                                                  tmp_path: Path) -> None:  # fmt: skip
    images = shared_data / "coco-mini" / "images"
    out = tmp_path / "folder"
    assert main(["predict", str(images), "--weights", str(int8), "--output", str(out)]) == 0
    settings = json.loads((out / "settings.json").read_text())
    assert settings["precision"] == "int8" and settings["model_record"]["precision"] == "int8"
    assert len(list(out.glob("*_pose.jpg"))) == 4
    video = tmp_path / "video"
    rc = main(["predict", str(shared_data / "video" / "street.mp4"), "--weights", str(int8),
               "--output", str(video), "--max-frames", "2"])  # fmt: skip
    assert rc == 0 and (video / "street_pose.mp4").is_file()
    rows = [json.loads(line) for line in (video / "predictions.jsonl").read_text().splitlines()]
    assert {r.get("frame") for r in rows if "frame" in r} >= {0, 1}
    fly = tmp_path / "fly"
    one = images / "000000196141.jpg"
    rc = main(["predict", str(one), "--weights", str(weights), "--precision", "int8",
               "--output", str(fly)])  # fmt: skip
    assert rc == 0
    settings = json.loads((fly / "settings.json").read_text())
    assert settings["precision"] == "int8"
    assert "quantized on the fly (1 images)" in settings["model"]
    people = json.loads((fly / "predictions.json").read_text())
    annotations = json.loads((shared_data / "coco-mini" / "person_keypoints.json").read_text())
    gt, area = ground_truth(annotations, 196141)
    kp = np.array([r["keypoints"] for r in people]).reshape(-1, 17, 3)
    assert len(kp) >= len(gt) > 0
    assert coco_oks(kp, gt, area).max(0).min() > 0.3  # calibrated on one image: a quick look


def test_percentile_calibration_clips_the_ranges(weights: Path, coco_mini: Path,
                                                 tmp_path: Path) -> None:  # fmt: skip
    """``calibration="percentile"`` ranges sit inside the min/max ones, and the file says so."""
    from hrpose.export import export_onnx
    from hrpose.quantize import (
        MEAN_MINMAX,
        activation_tensors,
        percentile_range_sets,
        percentile_ranges,
        quantize_model,
    )

    loaded = load_model(weights)
    images = [read_image(p) for p in sorted((coco_mini / "images").glob("*.jpg"))[:2]]
    fp32 = export_onnx(loaded.network, tmp_path / "fp32.onnx", loaded.record)
    from hrpose.quantize import calibration_inputs

    inputs = calibration_inputs(images, loaded.record)
    clipped = percentile_ranges(fp32, inputs, 99.9)
    full = percentile_ranges(fp32, inputs, 100.0)
    assert len(clipped) == len(activation_tensors(onnx.load(str(fp32)))) > 100
    narrower = [n for n in full if clipped[n][1] - clipped[n][0] < full[n][1] - full[n][0]]
    assert len(narrower) > len(full) // 2
    assert all(full[n][0] <= clipped[n][0] <= clipped[n][1] <= full[n][1] for n in full)
    mean = percentile_range_sets(fp32, inputs, ())[MEAN_MINMAX]  # the mean of per-input ranges
    assert mean.keys() == full.keys()
    assert all(full[n][0] <= mean[n][0] <= mean[n][1] <= full[n][1] for n in full)
    assert sum(mean[n][1] < full[n][1] for n in full) > len(full) // 2  # the two images differ
    path = quantize_model(loaded.network, loaded.record, images, tmp_path / "m.onnx",
                          calibration="mean-minmax")  # fmt: skip
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert "mean of each input's min/max" in json.loads(meta["quantization"])["activations"]
    path = quantize_model(loaded.network, loaded.record, images, tmp_path / "p.onnx",
                          calibration="percentile", percentile=99.99)  # fmt: skip
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert "99.99 percentile" in json.loads(meta["quantization"])["activations"]
    with pytest.raises(QuantizeError, match="calibration"):
        quantize_model(loaded.network, loaded.record, images, tmp_path / "x.onnx",
                       calibration="entropy")  # fmt: skip


def test_named_nodes_stay_fp32(weights: Path, coco_mini: Path, tmp_path: Path) -> None:
    """``Prepared.write(fp32_nodes=...)`` leaves those nodes fp32 besides the heads, and says so."""
    from hrpose.quantize import Prepared

    loaded = load_model(weights)
    images = [read_image(sorted((coco_mini / "images").glob("*.jpg"))[0])]
    prepared = Prepared(loaded.network, loaded.record, images, tmp_path)
    stem = [n.name for n in onnx.load(str(prepared.pre)).graph.node
            if n.name in ("/model/conv1/Conv", "/model/conv2/Conv")]  # fmt: skip
    assert len(stem) == 2
    proto = onnx.load(str(prepared.write(tmp_path / "m.onnx", fp32_nodes=stem)))
    inits = {t.name: t.data_type for t in proto.graph.initializer}
    convs = {n.name: n for n in proto.graph.node if n.op_type == "Conv"}
    assert all(inits.get(convs[name].input[1]) == onnx.TensorProto.FLOAT for name in stem)
    assert inits.get(convs["/model/layer1/layer1.0/conv1/Conv"].input[1]) is None  # quantized
    info = json.loads({p.key: p.value for p in proto.metadata_props}["quantization"])
    assert set(stem) < set(info["fp32_nodes"]) and len(info["fp32_nodes"]) == 4
