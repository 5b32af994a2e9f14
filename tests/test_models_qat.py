"""Quantization-aware training (``hrpose.models.qat``, ``model.qat=true``): the prepared network
keeps the official state dict, folds BatchNorm exactly, rounds weights and activations to the
INT8 file's grids, is as far from fp32 as the INT8 file is, and a QAT fine-tune of
w8-coco-mini writes a plain checkpoint that `hrpose quantize` turns into an INT8 file."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from hrpose.cli import main
from hrpose.data.images import read_image
from hrpose.loading import load_model
from hrpose.models import HigherHRNet
from hrpose.models.qat import (
    WEIGHT_QMAX,
    QATConv2d,
    QuantReLU,
    fold,
    prepare_qat,
    quantize_weight,
)
from hrpose.predict import prepare_image

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pose" / "coco-mini-qat.yaml"


def _trained_like(width: int = 8) -> HigherHRNet:
    """A HigherHRNet with non-trivial BatchNorm statistics and weights (seeded)."""
    torch.manual_seed(0)
    model = HigherHRNet(width, 17)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.1)
        elif isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            torch.nn.init.normal_(m.weight, std=0.05)
    return model.eval()


def _inputs(shared_data: Path, size: int = 192) -> list[torch.Tensor]:
    images = sorted((shared_data / "coco-mini" / "images").glob("*.jpg"))
    assert len(images) == 4
    return [prepare_image(read_image(p), size, [1.0]).inputs[0][None] for p in images]


def _calibrate(model: torch.nn.Module, inputs: list[torch.Tensor]) -> None:
    model.train()
    with torch.no_grad():
        for x in inputs:
            model(x)
    model.eval()


def test_the_state_dict_is_the_official_one_and_loads_into_a_plain_model() -> None:
    plain = _trained_like()
    q = prepare_qat(copy.deepcopy(plain))
    assert q.qat and isinstance(q.conv1, QATConv2d) and isinstance(q.relu, QuantReLU)
    assert list(q.state_dict()) == list(plain.state_dict())
    fresh = HigherHRNet(8, 17, init_weights=False)
    fresh.load_state_dict(q.state_dict())  # strict: same keys, same shapes
    assert not any(isinstance(m, QATConv2d) for m in fresh.modules())


def test_folding_equals_convolution_then_batchnorm() -> None:
    plain = _trained_like()
    conv, bn = plain.conv2, plain.bn2
    x = torch.randn(1, 64, 24, 24)
    w, b = fold(conv.weight, conv.bias, bn, out_axis=0)
    want = bn(conv(x))
    got = torch.nn.functional.conv2d(x, w, b, conv.stride, conv.padding)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_weights_and_activations_are_rounded_to_the_int8_grids(shared_data: Path) -> None:
    q = prepare_qat(_trained_like())
    inputs = _inputs(shared_data)
    _calibrate(q, inputs[:2])
    w, _ = q.layer1[0].conv2.folded()
    wq = quantize_weight(w, 0)
    scale = w.abs().amax(dim=(1, 2, 3), keepdim=True) / WEIGHT_QMAX
    levels = wq / scale
    torch.testing.assert_close(levels, levels.round(), rtol=0, atol=1e-3)
    assert levels.abs().max() <= WEIGHT_QMAX + 1e-3
    assert (wq != w).any()  # not a pass-through
    outs: list[torch.Tensor] = []
    hook = q.layer1[0].relu.register_forward_hook(lambda m, i, o: outs.append(o))
    with torch.no_grad():
        q(inputs[2])
    hook.remove()
    assert len(outs) == 3  # a Bottleneck calls its ReLU three times
    for out in outs:
        assert out.min() >= 0
        assert 2 < torch.unique(out).numel() <= 256


def test_the_simulation_is_as_far_from_fp32_as_the_int8_file(shared_data: Path,
                                                              tmp_path: Path) -> None:  # fmt: skip
    """QAT trains against the rounding the INT8 file has: its output error against fp32, with
    ranges from the same images, is that of the ONNX Runtime INT8 file within a factor 2."""
    import onnxruntime as ort

    from hrpose.quantize import quantize_model

    weights = shared_data / "weights" / "w8-coco-mini.pt"
    loaded = load_model(weights)
    images = [read_image(p) for p in sorted((shared_data / "coco-mini" / "images").glob("*"))]
    path = quantize_model(loaded.network, loaded.record, images, tmp_path / "int8.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fp32 = copy.deepcopy(loaded.network).eval()
    sim = prepare_qat(loaded.network)
    inputs = _inputs(shared_data, loaded.record.inference.input_size)
    _calibrate(sim, inputs)
    err_sim, err_int8 = [], []
    with torch.no_grad():
        for x in inputs:
            ref, got = fp32(x)[0], sim(x)[0]
            int8 = torch.from_numpy(session.run(None, {"image": x.numpy()})[0])
            err_sim.append((got - ref).abs().mean().item())
            err_int8.append((int8 - ref).abs().mean().item())
    ratio = np.mean(err_sim) / np.mean(err_int8)
    assert np.mean(err_int8) > 0.005  # the INT8 file does round
    assert 0.5 <= ratio <= 2.0, (err_sim, err_int8)


def test_qat_fine_tune_writes_a_checkpoint_quantize_takes(shared_data: Path, tmp_path: Path,
                                                          capsys) -> None:  # fmt: skip
    """Two QAT steps from w8-coco-mini with validation (simulated INT8 finds people), then the
    checkpoint loads as a plain model and quantizes."""
    weights = shared_data / "weights" / "w8-coco-mini.pt"
    rc = main(["train", "pose", "--config", str(CONFIG), f"--weights={weights}",
               f"--output={tmp_path / 'runs'}", "--setup.run_name=qat", "--trainer.max_epochs=1",
               "--trainer.limit_batches=2", "--trainer.val_every=1", "--optimizer.lr=2e-5",
               f"--dataloader.train_ds.root={shared_data / 'coco-mini'}",
               f"--dataloader.val_ds.root={shared_data / 'coco-mini'}"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0, out
    run = tmp_path / "runs" / "coco-mini-qat" / "qat"
    with (run / "metrics.csv").open() as f:
        aps = [float(row["AP"]) for row in csv.DictReader(f) if row["AP"]]
    assert aps and aps[-1] > 0.3, aps  # simulated INT8 still finds the coco-mini people
    best = run / "checkpoints" / "best.pt"
    loaded = load_model(best)
    assert type(loaded.network) is HigherHRNet
    assert loaded.record.width == 8
    onnx_path = tmp_path / "qat-int8.onnx"
    rc = main(["quantize", "--weights", str(best), "--output", str(onnx_path),
               "--calibration", str(shared_data / "coco-mini" / "images")])  # fmt: skip
    assert rc == 0 and onnx_path.is_file()


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--setup.pretrained_ckpt_path=None"], "pass --weights W"),
        (["--trainer.sync_batchnorm=true"], "sync_batchnorm=false"),
    ],
)
def test_qat_refuses_what_it_cannot_do(flags: list[str], message: str, shared_data: Path,
                                       tmp_path: Path, capsys) -> None:  # fmt: skip
    rc = main(["train", "pose", "--config", str(CONFIG), f"--output={tmp_path}",
               f"--dataloader.train_ds.root={shared_data / 'coco-mini'}",
               f"--dataloader.val_ds.root={shared_data / 'coco-mini'}", *flags])  # fmt: skip
    assert rc != 0
    assert message in capsys.readouterr().err


def test_another_network_is_refused_untouched() -> None:
    from hrpose.models import HRNet

    net = HRNet(8)
    with pytest.raises(ValueError, match="takes a HigherHRNet"):
        prepare_qat(net)
    assert not any(isinstance(m, QATConv2d | QuantReLU) for m in net.modules())
