"""Whole-image inference (network + decode) at 1, 5 and 30 people and video frames/s, vs official.

    python benchmarks/bench_predict.py                       # hrpose alone
    HRPOSE_OFFICIAL=/path/to/HigherHRNet-Human-Pose-Estimation python benchmarks/bench_predict.py
    python benchmarks/bench_predict.py --device cuda --video-size 640x480
    python benchmarks/bench_predict.py --keypoints-only      # fast path vs fp32 keypoints only

Network: the 640x392 coco-mini photo (input 512x832 at 512) through W32 with flip. "official" is
the official model module (``lib/models/pose_higher_hrnet.py``, same weights) run eagerly in
contiguous fp32, two forwards, as ``tools/valid.py``; "default" is ``Predictor()``; "fast" adds
``hrpose.predict.fast_options(device)``; "int8" (``--int8``) is the model quantized by
``hrpose.quantize`` (calibrated on the coco-mini images), run by ONNX Runtime; "bf16"
(``--bf16``) is ``precision="bf16"``. Decode:
synthetic network outputs with N planted people (as bench_decode.py) through hrpose's decoder and
the official post-processing
(``get_multi_stage_outputs``, ``aggregate_results``, ``HeatmapParser``, ``get_final_preds``).
Whole image = network + decode; each part is printed so it can be rerun after decoder changes.
Video: frames decoded with PyAV, predicted (``--batch-frames``: that many frames per network
batch for hrpose), drawn and encoded to H.264, end to end.
Keypoints: w8-coco-mini.pt (real peaks) on coco-mini and the examples, each path against fp32.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from hrpose.data.images import list_images, read_image  # noqa: E402
from hrpose.decode import DecodeParams, Transform, decode, input_size_for  # noqa: E402
from hrpose.models import HigherHRNet  # noqa: E402
from hrpose.normalization import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from hrpose.predict import Predictor, fast_options  # noqa: E402
from hrpose.structures import People  # noqa: E402
from hrpose.viz.draw import draw_people  # noqa: E402
from hrpose.viz.video import VideoWriter, read_video  # noqa: E402
from official_code import Cfg, add_official_lib, test_config  # noqa: E402
from synthetic import make_outputs, random_people  # noqa: E402

SHARED = Path(os.environ.get("HRPOSE_SHARED_DATA", ROOT.parent / "shared" / "data"))
PHOTO = SHARED / "coco-mini" / "images" / "000000197388.jpg"  # 640x392, as in the issue
CALIBRATION = [SHARED / "coco-mini" / "images"]  # --int8: the images the W32 is calibrated on


def _official(root: str, width: int, device: torch.device):
    """(model factory, preprocess, post-process) from a local official checkout."""
    lib = add_official_lib(root)
    from core.group import HeatmapParser
    from core.inference import aggregate_results, get_multi_stage_outputs
    from utils.transforms import get_final_preds, get_multi_scale_size, resize_align_multi_scale

    spec = importlib.util.spec_from_file_location(
        "official_hhrnet", lib / "models" / "pose_higher_hrnet.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def stage(n_modules: int, n_branches: int) -> Cfg:
        return Cfg(NUM_MODULES=n_modules, NUM_BRANCHES=n_branches, BLOCK="BASIC",
                    NUM_BLOCKS=[4] * n_branches, FUSE_METHOD="SUM",
                    NUM_CHANNELS=[width * 2**i for i in range(n_branches)])  # fmt: skip

    cfg = test_config(NUM_JOINTS=17, EXTRA=Cfg(
        FINAL_CONV_KERNEL=1, PRETRAINED_LAYERS=["*"], STEM_INPLANES=64,
        STAGE2=stage(1, 2), STAGE3=stage(4, 3), STAGE4=stage(3, 4),
        DECONV=Cfg(NUM_DECONVS=1, NUM_CHANNELS=[width], KERNEL_SIZE=[4],
                   NUM_BASIC_BLOCKS=4, CAT_OUTPUT=[True])))  # fmt: skip
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


CLOCK = {"now": time.perf_counter}  # --clock cpu: process CPU time (see main)


def _timed(fn, device: torch.device) -> float:
    _sync(device)
    t0 = CLOCK["now"]()
    fn()
    _sync(device)
    return CLOCK["now"]() - t0


def _fmt(times: list[float]) -> str:
    lo, hi = min(times) * 1000, max(times) * 1000
    return f"{lo:7.0f}-{hi:<7.0f}"


def _predictors(
    model: torch.nn.Module,
    device: torch.device,
    fast: bool,
    int8: bool = False,
    bf16: bool = False,
) -> dict[str, Predictor]:
    out = {"default": Predictor(model, device=device)}
    if bf16:  # what precision="bf16" runs: the backbone under autocast, heads in fp32
        out["bf16 (backbone)"] = Predictor(model, device=device, precision="bf16")
    if fast:
        opts = fast_options(device)
        name = "fast (" + "+".join(f"{k}={v}" for k, v in opts.items()) + ")"
        out[name] = Predictor(model, device=device, **opts)
    if int8:
        out["int8 (hrpose quantize, ONNX Runtime)"] = int8_predictor(model, CALIBRATION)
    return out


def onnx_session(path: str | Path, optimize: bool = True):
    """An ONNX Runtime CPU session on torch's thread count (OMP_NUM_THREADS), as torch runs;
    ``optimize=False`` turns the graph optimizations off (a QDQ graph then runs in fp32)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def int8_predictor(model: torch.nn.Module, folders: list[Path], record=None) -> Predictor:
    """``model`` quantized by hrpose.quantize, calibrated on ``folders``' images under
    ``record`` (default: the registered one of its width, W32: 512 with flip), run by ONNX
    Runtime on torch's thread count."""
    import warnings

    from hrpose.loading import load_model
    from hrpose.quantize import calibration_files, quantize_model, read_calibration_images
    from hrpose.record import registered_record
    from hrpose.runtime import OnnxNetwork

    record = record or registered_record(int(model.width), int(model.num_joints))
    images = read_calibration_images(calibration_files(folders))
    path = Path(tempfile.mkdtemp(prefix="bench-int8-")) / "int8.onnx"
    t0 = time.perf_counter()
    quantize_model(model, record, images, path)
    print(f"quantized W{model.width} on {len(images)} images in {time.perf_counter() - t0:.0f} s")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the non-VNNI warning: the README states the CPU
        loaded = load_model(path)
    predictor = Predictor(OnnxNetwork(onnx_session(path)), record=loaded.record)
    predictor.onnx_path = path  # for a second session on the same file
    return predictor


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
    preds = _predictors(
        model, device, not args.no_fast, getattr(args, "int8", False), getattr(args, "bf16", False)
    )
    for name, p in preds.items():
        runners[name] = lambda p=p: p.forward(image)
    print(f"HigherHRNet-W{args.width}, {size[0]}x{size[1]} photo -> input {w}x{h}, flip, {device}")
    t0 = time.perf_counter()
    for fn in runners.values():  # warm-up (and compilation)
        fn()
    print(f"warm-up and compilation: {time.perf_counter() - t0:.0f} s")
    net = {name: [] for name in runners}
    for _ in range(args.repeat):  # interleaved, so load changes hit every variant alike
        for name, fn in runners.items():
            net[name].append(_timed(fn, device))
    print(
        f"\nnetwork (preprocess + 2 forwards), ms over {args.repeat} interleaved runs "
        "(ratios: runs of one round paired)"
    )
    for name, times in net.items():
        ratios = []
        for ref_name in ("official", "default"):
            ref = net.get(ref_name)
            if ref is not None and name not in ("official", ref_name):
                r = [b / t for b, t in zip(ref, times, strict=True)]  # pairs of one round
                ratios.append(f"x{min(r):.2f}-{max(r):.2f} vs {ref_name}")
        print(f"  {name:<40} {_fmt(times)} {', '.join(ratios)}")

    print("\ndecode of synthetic outputs with N people (median of 3, ms), then whole image")
    names = [n for n in net if n != "official"]
    head = f"  {'N':>3} {'hrpose':>8} {'official':>9} | whole image ms (network + decode)"
    print(head)
    for n in (1, 5, 30):
        xy, wh = random_people(n, size, seed=n)
        outs, flips = make_outputs(xy, np.arange(n) * 3.0, (w, h), seed=n)
        # float32, as a model gives (make_outputs' tags are float64, which the decoder can
        # only project fully: that made this row's decode 10x slower than bench_decode's)
        outs, flips = [t.float() for t in outs], [t.float() for t in flips]
        tf = [Transform.for_image(size, 512)]
        ours = lambda o=outs, f=flips, t=tf: decode([o], t, flip_outputs=[f])  # noqa: E731
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

        runners["official"] = (lambda frames: [off_predict(f) for f in frames], 1)
    sizes = [int(b) for b in args.batch_frames.split(",")]
    for name, p in _predictors(model, device, not args.no_fast).items():
        for b in sizes:
            label = name if sizes == [1] else f"{name}, {b} frame(s)/batch"
            runners[label] = (lambda frames, p=p: [q.people for q in p.predict_batch(frames)], b)
    h, w = frames[0].shape[:2]
    weights = args.weights or "random (decode sees few peaks)"
    print(f"\nvideo {Path(args.video).name}: {len(frames)} frames {w}x{h}, W{args.width} at 512 "
          f"with flip, {device}, weights {weights}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.mp4"
        with VideoWriter(src, 25) as writer:  # the resized clip, so decoding is part of the run
            for f in frames:
                writer.write(f)
        for name, (predict, batch) in runners.items():
            predict(frames[:batch])  # warm-up (and compilation) at the timed batch size
            _sync(device)
            t0 = CLOCK["now"]()
            n = 0
            with VideoWriter(Path(tmp) / "out.mp4", 25) as writer:
                for chunk in _chunks(read_video(src), batch):
                    for frame, people in zip(chunk, predict(chunk), strict=True):
                        writer.write(draw_people(frame, people))
                        n += 1
            _sync(device)
            fps = n / (CLOCK["now"]() - t0)
            print(f"  {name:<40} {fps:6.2f} frames/s end to end (decode, network, draw, encode)")


def _chunks(frames, size: int):
    """Lists of ``size`` consecutive frames (the last one shorter)."""
    chunk: list[np.ndarray] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _person_diffs(a: People, b: People, min_score: float) -> np.ndarray:
    """Per matched person, the max |xy| difference over joints scoring >= min_score in ``b``.

    People are paired by least mean joint distance (the decoder's order can swap near-equal
    scores); people without a partner are counted by the caller.
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0)
    cost = np.abs(a.keypoints[:, None, :, :2] - b.keypoints[None, :, :, :2]).max(-1).mean(-1)
    ia, ib = linear_sum_assignment(cost)
    d = np.abs(a.keypoints[ia, :, :2] - b.keypoints[ib, :, :2]).max(-1)
    keep = b.keypoints[ib, :, 2] >= min_score
    return np.where(keep, d, 0.0).max(-1)


def bench_keypoints(args, device: torch.device) -> None:
    weights = SHARED / "weights" / "w8-coco-mini.pt"
    sets = {
        "coco-mini": list_images(SHARED / "coco-mini" / "images"),
        "examples": list_images(SHARED / "examples"),
    }
    params = DecodeParams(flip=False, detection_threshold=0.3)  # coco-mini.yaml's inference
    kw = {"input_size": 192, "params": params, "device": device}
    ref = Predictor.from_weights(weights, channels_last=False, fuse_bn=False, **kw)
    variants = {  # on a CPU, fp16 (and bf16 without AMX) run emulated: their numerics only
        "default": {},
        "bf16": {"precision": "bf16"},
        "fp16": {"precision": "fp16"},
        "compile": {"compile": True},
    }
    variants = {k: v for k, v in variants.items() if k in args.keypoint_variants.split(",")}
    print("\nkeypoints vs fp32 eager: w8-coco-mini.pt, input 192, no flip, threshold 0.3; per "
          "matched person the max |dxy| over joints scoring >= 0.1")  # fmt: skip
    images = {name: [read_image(p) for p in paths] for name, paths in sets.items()}
    refs = {name: [ref(im) for im in ims] for name, ims in images.items()}
    for name, opts in variants.items():
        pred = Predictor.from_weights(weights, **kw, **opts)
        for set_name, ims in images.items():
            diffs, lost, total = [], 0, 0
            for im, r in zip(ims, refs[set_name], strict=True):
                got = pred(im)
                diffs.append(_person_diffs(got, r, 0.1))
                lost += abs(len(got) - len(r))
                total += len(r)
            d = np.concatenate(diffs)
            within = int((d <= 1.0).sum())
            print(f"  {name:<8} {set_name:<10} {total:3d} people: {within}/{len(d)} matched "
                  f"within 1 px, max {d.max(initial=0):.3f} px, median {np.median(d):.3f} px; "
                  f"{lost} added/lost")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--video", default=str(SHARED / "video" / "street.mp4"))
    parser.add_argument("--video-size", default="640x480", help="WxH the frames are resized to")
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument(
        "--batch-frames",
        default="1",
        help="video: comma list of frames per network batch for hrpose (Predictor.predict_batch, "
        "hrpose predict --batch-frames), e.g. 1,2,8; the official path runs one frame at a time",
    )
    parser.add_argument("--weights", default=None, help="W32 weights for the video (real people)")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time, for a loaded shared host (run with OMP_NUM_THREADS=1)",
    )
    parser.add_argument("--no-fast", action="store_true", help="time the default path only")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also time INT8 (hrpose quantize, ONNX Runtime QDQ, calibrated on coco-mini)",
    )
    parser.add_argument(
        "--bf16",
        action="store_true",
        help='also time precision="bf16" (the backbone under autocast; native only with '
        "AVX512-BF16 or AMX)",
    )
    parser.add_argument("--keypoints-only", action="store_true")
    parser.add_argument(
        "--keypoint-variants", default="default,bf16,fp16,compile", help="paths compared to fp32"
    )
    parser.add_argument("--skip-keypoints", action="store_true")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.clock == "cpu":
        if device.type == "cuda":
            raise SystemExit("--clock cpu measures CPU work; time CUDA with --clock wall")
        CLOCK["now"] = time.process_time
        print(f"clock: process CPU time, {torch.get_num_threads()} thread(s)")
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
