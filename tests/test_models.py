"""Models: official layout (key names, shapes, counts), outputs, init, weights loading, summary."""

from __future__ import annotations

import pickle
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from hrpose.models import (
    HigherHRNet,
    HRNetClassifier,
    WeightsError,
    load_weights,
    summarize,
)

OFFICIAL = np.load(Path(__file__).with_name("data") / "official_model_outputs.npz")


def _official_fill(key: str, t: torch.Tensor) -> torch.Tensor:
    """The deterministic value of one state-dict entry, seeded by its key (tests/data/README.md:
    the official models were filled with the same rule)."""
    g = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    if not t.is_floating_point():
        return t.clone()
    if key.endswith("running_var"):
        return 0.5 + torch.rand(t.shape, generator=g)
    if key.endswith("running_mean") or key.endswith("bias"):
        return 0.1 * torch.randn(t.shape, generator=g)
    if t.ndim == 1:  # BatchNorm weight
        return 0.5 + torch.rand(t.shape, generator=g)
    return 0.5 * torch.randn(t.shape, generator=g) / t[0].numel() ** 0.5


@pytest.mark.parametrize("kind", ["pose", "cls"])
def test_outputs_equal_the_official_models(kind: str) -> None:
    """Official PoseHigherResolutionNet-W32 and HRNet-W32-C, filled with the same values by key:
    same state-dict keys, order and shapes, and the same outputs (stored)."""
    model = (
        HigherHRNet(32, init_weights=False)
        if kind == "pose"
        else HRNetClassifier(32, init_weights=False)
    )
    sd = model.state_dict()
    layout = "\n".join(f"{k} {tuple(v.shape)}" for k, v in sd.items())
    assert layout == str(OFFICIAL[f"{kind}_keys"])
    model.load_state_dict({k: _official_fill(k, v) for k, v in sd.items()})
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(OFFICIAL["input"]))
    names = ("pose_low", "pose_high") if kind == "pose" else ("cls_logits",)
    outs = (out.low, out.high) if kind == "pose" else (out,)
    for name, o in zip(names, outs, strict=True):
        ref = OFFICIAL[name]
        assert ref.std() > 0.05, name  # the reference is a real signal, not zeros
        assert o.shape == ref.shape, name
        assert np.allclose(o.numpy(), ref, rtol=1e-4, atol=1e-5), (
            name,
            np.abs(o.numpy() - ref).max(),
        )


@pytest.fixture(scope="module")
def w32() -> HigherHRNet:
    torch.manual_seed(0)
    return HigherHRNet(32).eval()


def _randomize(model: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        for name, b in model.named_buffers():
            if name.endswith("running_var"):
                b.uniform_(0.5, 1.5)


def test_higherhrnet_counts_match_official(w32: HigherHRNet) -> None:
    assert sum(p.numel() for p in w32.parameters()) == 28_645_331
    assert len(w32.state_dict()) == 1810
    w48 = HigherHRNet(48, init_weights=False)
    assert sum(p.numel() for p in w48.parameters()) == 63_827_139


def test_classifier_counts_match_official() -> None:
    model = HRNetClassifier(32, init_weights=False)
    assert sum(p.numel() for p in model.parameters()) == 41_232_680
    assert len(model.state_dict()) == 1956


def test_official_key_layout(w32: HigherHRNet) -> None:
    sd = w32.state_dict()
    roots = {k.split(".")[0] for k in sd}
    assert roots == {
        "conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "transition2",
        "transition3", "stage2", "stage3", "stage4", "final_layers", "deconv_layers",
    }  # fmt: skip
    assert sd["final_layers.0.weight"].shape == (34, 32, 1, 1)
    assert sd["final_layers.1.weight"].shape == (17, 32, 1, 1)
    assert sd["deconv_layers.0.0.0.weight"].shape == (66, 32, 4, 4)
    assert sd["deconv_layers.0.4.0.conv2.weight"].shape == (32, 32, 3, 3)
    assert sd["transition3.3.0.0.weight"].shape == (256, 128, 3, 3)
    assert sd["stage4.2.fuse_layers.0.3.0.weight"].shape == (32, 256, 1, 1)
    assert "stage4.2.fuse_layers.1.0.0.0.weight" not in sd  # last module: 1/4 output only
    assert sd["stage3.3.fuse_layers.2.0.1.0.weight"].shape == (128, 32, 3, 3)
    cls = HRNetClassifier(32, init_weights=False).state_dict()
    assert cls["incre_modules.3.0.conv3.weight"].shape == (1024, 256, 1, 1)
    assert cls["downsamp_modules.2.0.weight"].shape == (1024, 512, 3, 3)
    assert cls["final_layer.0.weight"].shape == (2048, 1024, 1, 1)
    assert cls["classifier.weight"].shape == (1000, 2048)


def test_forward_shapes_non_square(w32: HigherHRNet) -> None:
    with torch.no_grad():
        low, high = w32(torch.randn(2, 3, 128, 96))
    assert low.shape == (2, 34, 32, 24)
    assert high.shape == (2, 17, 64, 48)
    with pytest.raises(ValueError, match="multiples of 32"):
        w32(torch.randn(1, 3, 100, 96))


def test_classifier_forward() -> None:
    model = HRNetClassifier(18, num_classes=10).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_pose_init_is_official(w32: HigherHRNet) -> None:
    w = w32.stage3[0].branches[1][0].conv1.weight
    assert 0.0008 < float(w.std()) < 0.0012
    assert float(w32.final_layers[0].bias.abs().max()) == 0.0
    assert torch.all(w32.bn1.weight == 1) and torch.all(w32.bn1.bias == 0)


def test_load_official_style_checkpoints(tmp_path) -> None:
    src = HigherHRNet(16, num_joints=5, init_weights=False).eval()
    _randomize(src)
    sd = src.state_dict()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = src(x)
    variants = {
        "plain": sd,
        "ddp": {"state_dict": {"module." + k: v for k, v in sd.items()}},
        "compiled": {"_orig_mod." + k: v for k, v in sd.items()},
        "hrpose": {"version": 1, "model": sd, "epoch": 3},
        "no_bn_counters": {k: v for k, v in sd.items() if "num_batches_tracked" not in k},
    }
    for name, obj in variants.items():
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path)
        dst = HigherHRNet(16, num_joints=5).eval()
        report = load_weights(dst, path)
        assert not report.backbone_only and not report.missing, name
        with torch.no_grad():
            out = dst(x)
        assert torch.equal(out.low, ref.low) and torch.equal(out.high, ref.high), name


def test_classifier_into_pose_backbone() -> None:
    cls = HRNetClassifier(16, num_classes=7, init_weights=False)
    _randomize(cls)
    pose = HigherHRNet(16, num_joints=5)
    head_before = pose.final_layers[0].weight.clone()
    report = load_weights(pose, cls.state_dict())
    assert report.backbone_only
    assert any(k.startswith("classifier") for k in report.skipped)
    assert any(k.startswith("final_layers") for k in report.missing)
    assert torch.equal(
        pose.stage4[2].branches[3][0].conv1.weight, cls.stage4[2].branches[3][0].conv1.weight
    )
    assert torch.equal(pose.final_layers[0].weight, head_before)


def test_wrong_width_and_joints_are_named() -> None:
    sd = HigherHRNet(16, num_joints=5, init_weights=False).state_dict()
    with pytest.raises(WeightsError, match="width 16, the model 18"):
        load_weights(HigherHRNet(18, num_joints=5, init_weights=False), sd)
    with pytest.raises(WeightsError, match="joint count 5, the model 17"):
        load_weights(HigherHRNet(16, num_joints=17, init_weights=False), sd)


def test_bad_files(tmp_path) -> None:
    with pytest.raises(WeightsError, match="not found"):
        load_weights(HigherHRNet(16, init_weights=False), tmp_path / "absent.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"<html>404 not found</html>")
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        load_weights(HigherHRNet(16, init_weights=False), junk)
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"x": _Custom()}, f)
    with pytest.raises(WeightsError):
        load_weights(HigherHRNet(16, init_weights=False), evil)
    partial = {k: v for k, v in HigherHRNet(16, init_weights=False).state_dict().items()}
    partial.pop("final_layers.1.weight")
    with pytest.raises(WeightsError, match="missing keys"):
        load_weights(HigherHRNet(16, init_weights=False), partial)
    report = load_weights(HigherHRNet(16, init_weights=False), partial, strict=False)
    assert report.missing == ["final_layers.1.weight"]


class _Custom:
    pass


def test_summary_w32_512(w32: HigherHRNet) -> None:
    s = summarize(w32, (512, 512))
    assert s.params == 28_645_331
    assert round(s.macs / 1e9, 1) == 46.2
    assert round(s.macs_dense_deconv / 1e9, 1) == 47.9


def test_summary_cli(capsys) -> None:
    from hrpose.cli import main

    assert main(["summary", "classifier", "--width", "18", "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "HRNet-W18-C (10 classes) at 224x224" in out and "multiply-adds" in out
    with pytest.raises(SystemExit):
        main(["summary", "--input-size", "100"])
