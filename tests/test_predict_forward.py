"""The Predictor's forward options: BatchNorm folding, channels_last, flip batching, precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import hrpose.runtime as runtime
from hrpose.data.images import read_image
from hrpose.decode import DecodeParams
from hrpose.models import HigherHRNet
from hrpose.models.fuse import fuse_batchnorm
from hrpose.predict import Predictor, fast_options


def _model(seed: int = 0) -> HigherHRNet:
    """A W8 HigherHRNet with non-trivial BatchNorm statistics (identity BNs would hide bugs)."""
    torch.manual_seed(seed)
    model = HigherHRNet(8)
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, std=0.2)
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.2)
    return model.eval()


def _image(h: int = 60, w: int = 90) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_fuse_batchnorm_equals_the_unfused_network_and_leaves_it_alone() -> None:
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    fused = fuse_batchnorm(model)
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert n_bn > 100 and not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 64, 96)
    with torch.inference_mode():
        ref, out = model(x), fused(x)
    for a, b in zip(ref, out, strict=True):
        assert a.abs().max() > 1e-2  # a real signal, not zeros
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * a.abs().max().item())
    state = model.state_dict()  # the checkpoint format is untouched
    assert state.keys() == before.keys()
    assert all(torch.equal(state[k], v) for k, v in before.items())


def test_default_forward_is_fused_channels_last_and_equals_the_plain_network() -> None:
    model = _model()
    params = DecodeParams(flip=True, scales=(1.0,))
    fast = Predictor(model, input_size=64, params=params)
    plain = Predictor(model, input_size=64, params=params, channels_last=False, fuse_bn=False)
    assert fast.model is model  # the original stays for export and checkpoints
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.network.modules())
    assert fast.network.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert plain.network is model
    outs, flips, first = fast.forward(_image())
    ref_outs, ref_flips, _ = plain.forward(_image())
    assert first[0].shape == (1, 34, 16, 32) and first[1].shape == (1, 17, 32, 64)
    for got, want in zip(outs[0] + flips[0], ref_outs[0] + ref_flips[0], strict=True):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())
    # the flip pass really is the mirrored image, not a copy of the first pass
    assert not torch.allclose(flips[0][0], outs[0][0])


def test_flip_batched_equals_two_forwards() -> None:
    """The CUDA layout (image and mirror in one batch of 2), checked on the CPU."""
    model = _model()
    params = DecodeParams(flip=True, scales=(1.0, 2.0))
    one = Predictor(model, input_size=64, params=params, batch_flip=True)
    two = Predictor(model, input_size=64, params=params, batch_flip=False)
    assert one.batch_flip and not two.batch_flip  # default on a CPU: two forwards
    assert not Predictor(model, input_size=64).batch_flip
    a, b = one.forward(_image()), two.forward(_image())
    assert len(a[0]) == 2 and len(a[1]) == 2
    for got, want in zip(a[0][1] + a[1][1], b[0][1] + b[1][1], strict=True):
        assert got.shape[0] == 1
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * want.abs().max().item())


def test_precision_options(monkeypatch) -> None:
    model = _model()
    with pytest.raises(ValueError, match="precision must be one of"):
        Predictor(model, precision="int4")
    with pytest.warns(UserWarning, match="fp16 on this CPU is emulated"):
        Predictor(model, precision="fp16")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: False)
    with pytest.warns(UserWarning, match="bf16 on this CPU is emulated"):
        bf16 = Predictor(model, input_size=64, params=DecodeParams(flip=False), precision="bf16")
    ref = Predictor(model, input_size=64, params=DecodeParams(flip=False))
    got, want = bf16.forward(_image())[2], ref.forward(_image())[2]
    for g, w in zip(got, want, strict=True):
        assert g.dtype == torch.float32
        assert not torch.equal(g, w)  # it really ran in bf16 ...
        assert (g - w).abs().max() < 0.05 * w.abs().max()  # ... and stayed close


def test_fast_options_follow_the_hardware(monkeypatch) -> None:
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    # fp32 + compile everywhere: bf16/fp16 moved keypoints by pixels (benchmarks/README.md)
    assert fast_options("cpu") == fast_options("cuda") == {"compile": True}
    compiled = Predictor(_model(), compile=True)  # wrapping only: compiling runs on first call
    assert compiled.network._orig_mod is not compiled.model
    assert isinstance(compiled.network._orig_mod.conv1, nn.Conv2d)


def test_real_weights_keypoints_equal_the_plain_path(shared_data) -> None:
    """w8-coco-mini on a coco-mini image: the default forward moves no keypoint (real peaks)."""
    weights = shared_data / "weights" / "w8-coco-mini.pt"
    params = DecodeParams(flip=False, detection_threshold=0.3)
    fast = Predictor.from_weights(weights, input_size=192, params=params)
    plain = Predictor.from_weights(
        weights, input_size=192, params=params, channels_last=False, fuse_bn=False
    )
    image = read_image(shared_data / "coco-mini" / "images" / "000000197388.jpg")
    a, b = fast(image), plain(image)
    assert len(b) >= 5 and len(a) == len(b)
    np.testing.assert_allclose(a.keypoints[..., :2], b.keypoints[..., :2], atol=0.01)


def test_cli_speed_options_reach_the_predictor(shared_data, monkeypatch, capsys) -> None:
    from hrpose.cli.options import parse
    from hrpose.cli.predict import _parser, build_predictor

    def predictor(*argv: str):
        return build_predictor(
            *parse(_parser(), [src, "--weights", weights, *argv], ("inference",))
        )[0]

    weights = str(shared_data / "weights" / "w8-coco-mini.pt")
    src = str(shared_data / "examples")
    plain = predictor("--device", "cpu")
    assert plain.precision == "fp32" and plain.network._get_name() == "HigherHRNet"
    fast = predictor("--fast")
    assert fast.precision == "fp32" and hasattr(fast.network, "_orig_mod")
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    chosen = predictor("--device", "cpu", "--precision", "bf16", "--fast")
    assert chosen.precision == "bf16" and hasattr(chosen.network, "_orig_mod")
    with pytest.raises(SystemExit):  # one fast flag: the old one names it
        predictor("--compile")
    assert "--compile was renamed: use --fast" in capsys.readouterr().err


def _frames(shared_data, n: int = 3) -> list[np.ndarray]:
    """``n`` same-size frames of a coco-mini image, each shifted a few pixels (real people)."""
    import cv2

    image = read_image(shared_data / "coco-mini" / "images" / "000000197388.jpg")
    h, w = image.shape[:2]
    shifts = [np.float32([[1, 0, 3 * t], [0, 1, -2 * t]]) for t in range(n)]
    return [cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE) for m in shifts]


@pytest.mark.parametrize("batch_flip", [False, True])
def test_predict_batch_equals_one_frame_at_a_time(shared_data, batch_flip) -> None:
    """w8-coco-mini on 3 frames with flip: one network batch gives each frame's own people."""
    weights = shared_data / "weights" / "w8-coco-mini.pt"
    params = DecodeParams(flip=True, detection_threshold=0.3)
    pred = Predictor.from_weights(weights, input_size=192, params=params, batch_flip=batch_flip)
    frames = _frames(shared_data)
    calls = []
    run = pred._run
    pred._run = lambda batch: calls.append(batch.shape[0]) or run(batch)
    batched = pred.predict_batch(frames)
    assert calls == ([6] if batch_flip else [3, 3])  # the frames (and mirrors) in one batch
    singles = [pred.predict(f) for f in frames]
    assert len(batched) == 3
    for got, want in zip(batched, singles, strict=True):
        assert len(want.people) >= 5 and len(got.people) == len(want.people)
        np.testing.assert_allclose(got.people.keypoints, want.people.keypoints, atol=1e-3)
        np.testing.assert_allclose(got.people.scores, want.people.scores, atol=1e-5)
        assert got.outputs[1].shape == want.outputs[1].shape
        assert got.transform == want.transform
    # each frame decodes its own maps: the shifted frames give shifted people
    a, b = batched[0].people.keypoints, batched[1].people.keypoints
    assert not np.allclose(a[0, :, :2], b[0, :, :2])
    assert pred.predict_batch([]) == []
    with pytest.raises(ValueError, match="one size"):
        pred.predict_batch([frames[0], frames[0][:-8]])


def test_batch_frames_default_is_per_device() -> None:
    assert runtime.default_batch_frames("cpu") == 1  # a batch of 2 was slower on this CPU
    assert runtime.default_batch_frames("cuda") > 1
    assert runtime.default_batch_frames("mps") == 1  # not measured: one frame at a time


def test_bf16_runs_the_backbone_in_bf16_and_the_heads_and_decode_input_in_fp32(monkeypatch) -> None:
    """precision="bf16": backbone convs give bf16, every head conv (final_layers, deconv_layers)
    sees and gives fp32, and the decoder gets fp32 maps, not bf16 values cast up."""
    import hrpose.predict as predict

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)  # no emulation warning
    params = DecodeParams(flip=False, detection_threshold=0.0)
    pred = Predictor(_model(), input_size=64, params=params, precision="bf16")
    seen: dict[str, tuple[torch.dtype, torch.dtype]] = {}
    for name, m in pred.network.named_modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            m.register_forward_hook(
                lambda m, i, o, n=name: seen.__setitem__(n, (i[0].dtype, o.dtype))
            )
    got: list[torch.Tensor] = []
    decode = predict.decode
    monkeypatch.setattr(
        predict, "decode", lambda outs, *a, **k: got.extend(outs[0]) or decode(outs, *a, **k)
    )
    pred.predict(_image())
    heads = {n: d for n, d in seen.items() if "final_layers" in n or "deconv_layers" in n}
    backbone = {n: d for n, d in seen.items() if n not in heads}
    assert len(heads) == 11 and len(backbone) > 100  # 2 final convs, the deconv, 4 blocks x 2
    assert set(heads.values()) == {(torch.float32, torch.float32)}
    assert {out for _, out in backbone.values()} == {torch.bfloat16}
    assert len(got) == 2
    for t in got:  # fp32 values: under whole-network autocast they are all bf16 numbers
        assert t.dtype == torch.float32
        assert (t != t.to(torch.bfloat16).float()).float().mean() > 0.5
    assert isinstance(pred.network, runtime.BackboneAutocast)


def test_bf16_finds_every_coco_mini_person_as_fp32_does(shared_data) -> None:
    """w8-coco-mini with precision="bf16": each annotated person's fp32 prediction has a bf16
    partner at OKS >= 0.5 (COCO sigmas, the annotation's area), as fp32 has with the truth."""
    import json
    import warnings

    from hrpose.loading import load_model
    from test_predict import coco_oks, ground_truth

    loaded = load_model(shared_data / "weights" / "w8-coco-mini.pt")  # one load, two networks
    kw = {"input_size": 192, "params": DecodeParams(flip=False, detection_threshold=0.3)}
    fp32 = Predictor.from_loaded(loaded, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # emulated on CPUs without AVX512-BF16: numerics only
        bf16 = Predictor.from_loaded(loaded, precision="bf16", **kw)
    coco = shared_data / "coco-mini"
    annotations = json.loads((coco / "person_keypoints.json").read_text())
    matched = 0
    for info in annotations["images"]:
        image = read_image(coco / "images" / info["file_name"])
        gt, area = ground_truth(annotations, info["id"])
        ref, got = fp32(image), bf16(image)
        assert len(gt) > 0 and len(ref) > 0 and len(got) > 0
        best = ref.keypoints[coco_oks(ref.keypoints, gt, area).argmax(0)]  # (G, 17, 3)
        as_truth = np.concatenate([best[..., :2], np.ones_like(best[..., 2:])], -1)
        sim = coco_oks(got.keypoints, as_truth, area)  # (P_bf16, G)
        assert sim.max(0).min() >= 0.5, (info["file_name"], sim.max(0))
        matched += len(gt)
    assert matched == 12
