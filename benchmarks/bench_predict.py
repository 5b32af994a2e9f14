"""Whole-image inference (network + decode) at 1, 5 and 30 people and video frames/s, vs official.

    python benchmarks/bench_predict.py                       # hrpose alone
    HRPOSE_OFFICIAL=/path/to/HigherHRNet-Human-Pose-Estimation python benchmarks/bench_predict.py
    python benchmarks/bench_predict.py --device cuda --video-size 640x480
    python benchmarks/bench_predict.py --keypoints-only      # fast path vs fp32 keypoints only

Network: the 640x392 coco-mini photo (input 512x832 at 512) through W32 with flip. "official" is
the official model module (``lib/models/pose_higher_hrnet.py``, same weights) run eagerly in
contiguous fp32, two forwards, as ``tools/valid.py``; "default" is ``Predictor()``; "fast" adds
``hrpose.predict.fast_options(device)``. Decode: synthetic network outputs with N planted people
(as bench_decode.py) through hrpose's decoder and the official post-processing
(``get_multi_stage_outputs``, ``aggregate_results``, ``HeatmapParser``, ``get_final_preds``).
Whole image = network + decode; each part is printed so it can be rerun after decoder changes.
Video: frames decoded with PyAV, predicted, drawn and encoded to H.264, end to end.
Keypoints: w8-coco-mini.pt (real peaks) on coco-mini and the examples, each path against fp32.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from hrpose.data.images import list_images, read_image  # noqa: E402
from hrpose.decode import DecodeParams, decode, input_size_for  # noqa: E402
from hrpose.models import HigherHRNet  # noqa: E402
from hrpose.normalization import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from hrpose.predict import Predictor, fast_options  # noqa: E402
from hrpose.skeleton import COCO17  # noqa: E402
from hrpose.structures import People  # noqa: E402
from hrpose.viz.draw import draw_people  # noqa: E402
from hrpose.viz.video import VideoWriter, read_video  # noqa: E402
from synthetic import make_outputs, random_people  # noqa: E402

SHARED = Path(os.environ.get("HRPOSE_SHARED_DATA", ROOT.parent / "shared" / "data"))
PHOTO = SHARED / "coco-mini" / "images" / "000000197388.jpg"  # 640x392, as in the issue


class _Cfg(dict):
    __getattr__ = dict.__getitem__


def _official(root: str, width: int, device: torch.device):
    """(model factory, preprocess, post-process) from a local official checkout."""
    lib = Path(root) / "lib"
    sys.path.insert(0, str(lib))
    for alias, real in (("float", float), ("int", int), ("bool", bool)):
        if not hasattr(np, alias):
            setattr(np, alias, real)
    shim = types.ModuleType("dataset.transforms")
    shim.FLIP_CONFIG = {"COCO": list(COCO17.flip_index)}
    sys.modules.setdefault("dataset", types.ModuleType("dataset"))
    sys.modules["dataset.transforms"] = shim
    from core.group import HeatmapParser
    from core.inference import aggregate_results, get_multi_stage_outputs
    from utils.transforms import get_final_preds, get_multi_scale_size, resize_align_multi_scale

    spec = importlib.util.spec_from_file_location(
        "official_hhrnet", lib / "models" / "pose_higher_hrnet.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def stage(n_modules: int, n_branches: int) -> _Cfg:
        return _Cfg(NUM_MODULES=n_modules, NUM_BRANCHES=n_branches, BLOCK="BASIC",
                    NUM_BLOCKS=[4] * n_branches, FUSE_METHOD="SUM",
                    NUM_CHANNELS=[width * 2**i for i in range(n_branches)])  # fmt: skip

    cfg = _Cfg(
        MODEL=_Cfg(NUM_JOINTS=17, TAG_PER_JOINT=True, EXTRA=_Cfg(
            FINAL_CONV_KERNEL=1, PRETRAINED_LAYERS=["*"], STEM_INPLANES=64,
            STAGE2=stage(1, 2), STAGE3=stage(4, 3), STAGE4=stage(3, 4),
            DECONV=_Cfg(NUM_DECONVS=1, NUM_CHANNELS=[width], KERNEL_SIZE=[4],
                        NUM_BASIC_BLOCKS=4, CAT_OUTPUT=[True]))),
        DATASET=_Cfg(NUM_JOINTS=17, MAX_NUM_PEOPLE=30, WITH_CENTER=False, DATASET="coco_kpt"),
        LOSS=_Cfg(WITH_HEATMAPS_LOSS=[True, True], WITH_AE_LOSS=[True, False]),
        TEST=_Cfg(DETECTION_THRESHOLD=0.1, TAG_THRESHOLD=1.0, USE_DETECTION_VAL=True,
                  IGNORE_TOO_MUCH=False, NMS_KERNEL=5, NMS_PADDING=2, WITH_HEATMAPS=(True, True),
                  WITH_AE=(True, False), PROJECT2IMAGE=True, FLIP_TEST=True, SCALE_FACTOR=[1],
                  ADJUST=True, REFINE=True),
    )  # fmt: skip
    parser = HeatmapParser(cfg)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]

    def make_model(state: dict) -> torch.nn.Module:
        model = module.PoseHigherResolutionNet(cfg)
        model.load_state_dict(state)
        return model.eval().to(device)

    def network(model, image: np.ndarray):
        """valid.py up to the network: resize, ToTensor + Normalize, 2 forwards (no aggregation)."""
        resized, _, _ = resize_align_multi_scale(image, 512, 1.0, 1.0)
        x = torch.from_numpy(resized).permute(2, 0, 1).float().div(255).sub_(mean).div_(std)
        x = x[None].to(device)
        with torch.no_grad():
            return [t.float() for t in model(x)], [t.float() for t in model(torch.flip(x, [3]))]

    def post(image: np.ndarray, outs, flips):
        """valid.py after the network: aggregate (flip, project to image), group, final preds."""
        base, center, scale = get_multi_scale_size(image, 512, 1.0, 1.0)
        calls = iter([outs, flips])
        with torch.no_grad():
            _, heat, tags = get_multi_stage_outputs(
                cfg, lambda x: list(next(calls)), torch.zeros(1, 3, 8, 8), True, True, base
            )
            final, tag_list = aggregate_results(cfg, 1, None, [], heat, tags)
            grouped, scores = parser.parse(final, torch.cat(tag_list, 4), True, True)
        return get_final_preds(grouped, center, scale, [final.size(3), final.size(2)]), scores

    return make_model, network, post


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def _fmt(times: list[float]) -> str:
    lo, hi = min(times) * 1000, max(times) * 1000
    return f"{lo:7.0f}-{hi:<7.0f}"


def _predictors(model: torch.nn.Module, device: torch.device, **kw) -> dict[str, Predictor]:
    fast = fast_options(device)
    return {
        "default": Predictor(model, device=device, **kw),
        "fast (" + "+".join(f"{k}={v}" for k, v in fast.items()) + ")": Predictor(
            model, device=device, **kw, **fast
        ),
    }


def bench_image(args, device: torch.device, official) -> None:
    image = read_image(PHOTO)
    size = (image.shape[1], image.shape[0])
    (w, h), _, _ = input_size_for(size, 512)
    torch.manual_seed(0)
    model = HigherHRNet(args.width).eval()
    runners = {}
    if official is not None:
        make_model, network, post = official
        off_model = make_model(model.state_dict())
        runners["official"] = lambda: network(off_model, image)
    preds = _predictors(model, device)
    for name, p in preds.items():
        runners[name] = lambda p=p: p.forward(image)
    print(f"HigherHRNet-W{args.width}, {size[0]}x{size[1]} photo -> input {w}x{h}, flip, {device}")
    t0 = time.perf_counter()
    for fn in runners.values():  # warm-up (and compilation)
        fn()
        fn()
    print(f"warm-up and compilation: {time.perf_counter() - t0:.0f} s")
    net = {name: [] for name in runners}
    for _ in range(args.repeat):  # interleaved, so load changes hit every variant alike
        for name, fn in runners.items():
            net[name].append(_timed(fn, device))
    base = net.get("official")
    print(f"\nnetwork (preprocess + 2 forwards), ms over {args.repeat} interleaved runs")
    for name, times in net.items():
        ratio = ""
        if base is not None and name != "official":
            r = [b / t for b, t in zip(base, times, strict=True)]
            ratio = f"x{min(r):.2f}-{max(r):.2f} vs official (same run)"
        print(f"  {name:<40} {_fmt(times)} {ratio}")

    print("\ndecode of synthetic outputs with N people (median of 3, ms), then whole image")
    names = [n for n in net if n != "official"]
    head = f"  {'N':>3} {'hrpose':>8} {'official':>9} | whole image ms (network + decode)"
    print(head)
    for n in (1, 5, 30):
        xy, wh = random_people(n, size, seed=n)
        outs, flips = make_outputs(xy, np.arange(n) * 3.0, (w, h), seed=n)
        ours = lambda o=outs, f=flips: decode(o, image_size=size, flip_outputs=f)  # noqa: E731
        d_ours = np.median([_timed(ours, device) for _ in range(3)])
        d_off = None
        if official is not None:
            theirs = lambda o=outs, f=flips: official[2](image, o, f)  # noqa: E731
            d_off = np.median([_timed(theirs, device) for _ in range(3)])
        cols = []
        off_total = None if d_off is None else np.median(net["official"]) + d_off
        if off_total is not None:
            cols.append(f"official {off_total * 1000:.0f}")
        for name in names:
            total = np.median(net[name]) + d_ours
            ratio = "" if off_total is None else f" (x{off_total / total:.2f})"
            cols.append(f"{name.split(' ')[0]} {total * 1000:.0f}{ratio}")
        off = "n/a" if d_off is None else f"{d_off * 1000:.0f}"
        print(f"  {n:>3} {d_ours * 1000:>8.0f} {off:>9} | " + ", ".join(cols))


def bench_video(args, device: torch.device, official) -> None:
    frames = list(read_video(args.video))[: args.frames]
    if args.video_size:
        import cv2

        vw, vh = (int(v) for v in args.video_size.lower().split("x"))
        frames = [cv2.resize(f, (vw, vh), interpolation=cv2.INTER_AREA) for f in frames]
    torch.manual_seed(0)
    model = HigherHRNet(args.width).eval()
    if args.weights:
        from hrpose.models import load_weights

        load_weights(model, args.weights)
    runners = {}
    if official is not None:
        make_model, network, post = official
        off_model = make_model(model.state_dict())

        def off_predict(frame: np.ndarray) -> People:
            res, scores = post(frame, *network(off_model, frame))
            kp = np.zeros((0, 17, 3), np.float32)
            if len(res):
                kp = np.stack([np.asarray(r, np.float32)[:, :3] for r in res])
            return People(kp, np.array(scores, np.float32), kp[..., :1] * 0)

        runners["official"] = off_predict
    for name, p in _predictors(model, device).items():
        runners[name] = p
    h, w = frames[0].shape[:2]
    weights = args.weights or "random (decode sees few peaks)"
    print(f"\nvideo {Path(args.video).name}: {len(frames)} frames {w}x{h}, W{args.width} at 512 "
          f"with flip, {device}, weights {weights}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.mp4"
        with VideoWriter(src, 25) as writer:  # the resized clip, so decoding is part of the run
            for f in frames:
                writer.write(f)
        for name, predict in runners.items():
            predict(frames[0])  # warm-up (and compilation)
            _sync(device)
            t0 = time.perf_counter()
            n = 0
            with VideoWriter(Path(tmp) / "out.mp4", 25) as writer:
                for frame in read_video(src):
                    writer.write(draw_people(frame, predict(frame)))
                    n += 1
            _sync(device)
            fps = n / (time.perf_counter() - t0)
            print(f"  {name:<40} {fps:6.2f} frames/s end to end (decode, network, draw, encode)")


def _match_max_diff(a: People, b: People, min_score: float) -> tuple[float, int]:
    """Max |xy| difference over joints (score >= min_score in the reference) of matched people."""
    if len(a) == 0 or len(b) == 0:
        return 0.0, abs(len(a) - len(b))
    cost = np.abs(a.keypoints[:, None, :, :2] - b.keypoints[None, :, :, :2]).max(-1).mean(-1)
    ia, ib = linear_sum_assignment(cost)
    d = np.abs(a.keypoints[ia, :, :2] - b.keypoints[ib, :, :2]).max(-1)
    keep = b.keypoints[ib, :, 2] >= min_score
    return float(d[keep].max()) if keep.any() else 0.0, abs(len(a) - len(b))


def bench_keypoints(args, device: torch.device) -> None:
    weights = SHARED / "weights" / "w8-coco-mini.pt"
    images = list_images(SHARED / "coco-mini" / "images") + list_images(SHARED / "examples")
    params = DecodeParams(flip=False, detection_threshold=0.3)  # coco-mini.yaml's inference
    kw = {"input_size": 192, "params": params, "device": device}
    ref = Predictor.from_weights(weights, channels_last=False, fuse_bn=False, **kw)
    variants = {"default (fused, channels_last)": {}, "bf16 autocast": {"precision": "bf16"}}
    if device.type == "cuda":
        variants["fp16 autocast"] = {"precision": "fp16"}
    variants["torch.compile"] = {"compile": True}
    print(f"\nkeypoints vs fp32 eager: w8-coco-mini.pt, {len(images)} images (coco-mini + "
          "examples), input 192, no flip, threshold 0.3")  # fmt: skip
    refs = [ref(read_image(p)) for p in images]
    people = sum(len(r) for r in refs)
    for name, opts in variants.items():
        pred = Predictor.from_weights(weights, **kw, **opts)
        worst_all = worst_vis = 0.0
        count_diff = 0
        for path, r in zip(images, refs, strict=True):
            got = pred(read_image(path))
            d_all, dn = _match_max_diff(got, r, -np.inf)
            d_vis, _ = _match_max_diff(got, r, 0.1)
            worst_all, worst_vis = max(worst_all, d_all), max(worst_vis, d_vis)
            count_diff += dn
        print(f"  {name:<32} max |dxy| {worst_all:.4f} px all joints, {worst_vis:.4f} px joints "
              f"scoring >= 0.1; {count_diff} of {people} people added/lost")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--video", default=str(SHARED / "video" / "street.mp4"))
    parser.add_argument("--video-size", default="640x480", help="WxH the frames are resized to")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--weights", default=None, help="W32 weights for the video (real people)")
    parser.add_argument("--keypoints-only", action="store_true")
    parser.add_argument("--skip-keypoints", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    root = os.environ.get("HRPOSE_OFFICIAL")
    official = _official(root, args.width, device) if root else None
    if official is None:
        print("HRPOSE_OFFICIAL not set: hrpose alone (no official comparison)")
    if not args.keypoints_only:
        bench_image(args, device, official)
        bench_video(args, device, official)
    if not args.skip_keypoints:
        bench_keypoints(args, device)


if __name__ == "__main__":
    main()
