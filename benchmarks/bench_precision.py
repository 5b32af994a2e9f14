"""Accuracy next to speed for each numeric precision of the network (fp32, bf16, int8).

    OMP_NUM_THREADS=1 HRPOSE_OFFICIAL=<official checkout> python benchmarks/bench_precision.py \\
        --clock cpu --repeat 2

Accuracy, w8-coco-mini.pt at its record's settings (input 192, no flip, threshold 0.3): COCO AP
on coco-mini (hrpose's evaluation), the annotated people found at OKS >= 0.5, and against fp32
on coco-mini, the examples and the first street.mp4 frames: the share of fp32 people matched at
OKS >= 0.9 (Hungarian on OKS, scale from the fp32 person's keypoint box) and the median / max
shift (px) of the matched people's joints (those scoring >= 0.1 in fp32). INT8 of w8-coco-mini
is calibrated on coco-mini and the examples (the images it is scored on). Output error: the
official W32 architecture with the key-seeded weights of tests/test_models.py, INT8 calibrated
on coco-mini at 512 with flip, max / mean |output - fp32| on the coco-mini images.
Speed: bench_predict.py's whole-image run (W32, 512, flip, the 640x392 photo) with ``--int8``
(and ``--bf16`` where bf16 is native): the official tools/valid.py path, the fp32 default
Predictor, bf16 and INT8, interleaved in one run.

int8-qat is the INT8 file of a quantization-aware fine-tune of w8-coco-mini
(configs/pose/coco-mini-qat.yaml, trained here unless --qat-weights names one). The spread rows:
each INT8 model's coco-mini AP when calibrated on other image sets, and run with ONNX Runtime's
graph optimizations off, with the mean output error of the int8 kernels against fp32 and
against the same QDQ graph computed in fp32. ``--segments``: where the INT8 error sits, each
network segment left fp32 in turn. ``--weights`` puts another coco-mini model (e.g. a
W32 trained by ``configs/pose/coco-mini.yaml --model.width=32``) in the accuracy table.

A variant is a row of VARIANTS: name -> (LoadedModel, calibration folders) -> Predictor. bf16
is what ``precision="bf16"`` runs (the backbone under autocast, heads in fp32); it is emulated,
and so not timed, on a CPU without AVX512-BF16/AMX.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_predict  # noqa: E402
from hrpose.data.images import list_images, read_image  # noqa: E402
from hrpose.evaluation.coco_eval import evaluate_keypoints  # noqa: E402
from hrpose.evaluation.pose import image_list, predict_images  # noqa: E402
from hrpose.loading import LoadedModel, load_model  # noqa: E402
from hrpose.models import HigherHRNet  # noqa: E402
from hrpose.predict import Predictor  # noqa: E402
from hrpose.quantize import calibration_files  # noqa: E402
from hrpose.runtime import cpu_has_native_bf16  # noqa: E402
from hrpose.skeleton import COCO17  # noqa: E402
from hrpose.structures import People  # noqa: E402
from hrpose.tracking import oks  # noqa: E402
from hrpose.viz.video import read_video  # noqa: E402
from test_models import _official_fill  # noqa: E402
from test_predict import coco_oks, ground_truth  # noqa: E402

SHARED = bench_predict.SHARED
COCO_MINI = SHARED / "coco-mini"
CALIBRATION = [COCO_MINI / "images", SHARED / "examples"]
W8 = SHARED / "weights" / "w8-coco-mini.pt"


def _int8(loaded: LoadedModel, folders: list[Path]) -> Predictor:
    return bench_predict.int8_predictor(loaded.network, folders, loaded.record)


QAT = {"weights": None}  # the QAT fine-tune of w8-coco-mini (--qat-weights, or trained once)


def qat_weights() -> Path:
    """A quantization-aware fine-tune of w8-coco-mini: --qat-weights, else trained here by
    `hrpose train pose --config configs/pose/coco-mini-qat.yaml` (about 2 minutes)."""
    if QAT["weights"] is None:
        from hrpose.cli import main as hrpose_main

        out = Path(tempfile.mkdtemp(prefix="bench-qat-"))
        t0 = time.perf_counter()
        config = ROOT / "configs" / "pose" / "coco-mini-qat.yaml"
        rc = hrpose_main(["train", "pose", "--config", str(config),
                          f"--weights={SHARED / 'weights' / 'w8-coco-mini.pt'}", f"--output={out}",
                          "--setup.run_name=qat", "--tracking.log_images=false",
                          f"--dataloader.train_ds.root={COCO_MINI}",
                          f"--dataloader.val_ds.root={COCO_MINI}"])  # fmt: skip
        assert rc == 0, "the QAT fine-tune failed"
        QAT["weights"] = out / "coco-mini-qat" / "qat" / "checkpoints" / "best.pt"
        print(f"QAT fine-tune of w8-coco-mini in {time.perf_counter() - t0:.0f} s")
    return Path(QAT["weights"])


def _int8_qat(loaded: LoadedModel, folders: list[Path]) -> Predictor:
    qat = load_model(qat_weights())
    return bench_predict.int8_predictor(qat.network, folders, qat.record)


VARIANTS: dict[str, Callable[[LoadedModel, list[Path]], Predictor]] = {
    "fp32": lambda loaded, folders: Predictor.from_loaded(loaded),
    "bf16": lambda loaded, folders: Predictor.from_loaded(loaded, precision="bf16"),
    "int8": _int8,
    "int8-qat": _int8_qat,  # w8-coco-mini only: INT8 of its QAT fine-tune
}
W8_ONLY = {"int8-qat"}


def match_to_reference(got: People, ref: People) -> tuple[np.ndarray, np.ndarray]:
    """(OKS of each fp32 person's partner, 0 if none; the shift (px) of every joint of the
    matched pairs that scores >= 0.1 in fp32)."""
    sim = oks(got.keypoints, ref.keypoints, COCO17.sigmas)  # (P, R)
    best = np.zeros(len(ref))
    if sim.size == 0:
        return best, np.zeros(0)
    rows, cols = linear_sum_assignment(-sim)
    best[cols] = sim[rows, cols]
    d = np.linalg.norm(got.keypoints[rows, :, :2] - ref.keypoints[cols, :, :2], axis=-1)
    return best, d[ref.keypoints[cols, :, 2] >= 0.1]


def image_sets(frames: int) -> dict[str, list[np.ndarray]]:
    """The RGB images each accuracy row runs on."""
    video = []
    for frame in read_video(SHARED / "video" / "street.mp4"):
        video.append(frame)
        if len(video) == frames:
            break
    return {
        "coco-mini": [read_image(p) for p in list_images(COCO_MINI / "images")],
        "examples": [read_image(p) for p in list_images(SHARED / "examples")],
        f"street {len(video)} fr": video,
    }


def bench_w8(variants: list[str], frames: int, weights: Path = W8) -> None:
    loaded = load_model(weights)
    ann = COCO_MINI / "person_keypoints.json"
    annotations = json.loads(ann.read_text())
    sets = image_sets(frames)
    preds = {name: VARIANTS[name](load_model(weights), CALIBRATION) for name in variants}
    print(f"\n{weights.name} ({loaded.description}; {loaded.record.inference.input_size}, flip "
          f"{loaded.record.inference.flip}): AP on coco-mini, people found at OKS >= 0.5; vs fp32: "
          "fp32 people matched at OKS >= 0.9, median / max joint shift (px)")  # fmt: skip
    refs = {s: [preds["fp32"](im) for im in ims] for s, ims in sets.items()}
    for name, pred in preds.items():
        results = predict_images(pred, image_list(ann), COCO_MINI / "images")
        stats, _ = evaluate_keypoints(results, ann)
        found, total = 0, 0
        for info in annotations["images"]:
            gt, area = ground_truth(annotations, info["id"])
            people = pred(read_image(COCO_MINI / "images" / info["file_name"]))
            total += len(gt)
            found += int((coco_oks(people.keypoints, gt, area).max(0) >= 0.5).sum())
        cols = [f"AP {stats['AP']:.3f}", f"found {found}/{total}"]
        for set_name, ims in sets.items():
            best, shift = [], []
            for im, ref in zip(ims, refs[set_name], strict=True):
                b, d = match_to_reference(pred(im), ref)
                best.append(b)
                shift.append(d)
            b, d = np.concatenate(best), np.concatenate(shift)
            cols.append(f"{set_name}: {int((b >= 0.9).sum())}/{len(b)} ({(b >= 0.9).mean():.0%}) "
                        f"{np.median(d):.2f}/{d.max(initial=0):.1f}")  # fmt: skip
        print(f"  {name:<5} " + "; ".join(cols))


def bench_w32_error(variants: list[str]) -> None:
    model = HigherHRNet(32, init_weights=False)
    model.load_state_dict({k: _official_fill(k, v) for k, v in model.state_dict().items()})
    loaded = LoadedModel(model.eval(), load_model("random", width=32).record, "W32 key-seeded")
    preds = {name: VARIANTS[name](loaded, CALIBRATION[:1]) for name in variants
             if name not in W8_ONLY}  # fmt: skip
    images = [read_image(p) for p in list_images(COCO_MINI / "images")]
    print("\nofficial W32 architecture, key-seeded weights, at 512: |output - fp32| on the "
          "coco-mini images (low: heatmaps+tags at 1/4, high: heatmaps at 1/2)")  # fmt: skip
    refs = [preds["fp32"].forward(im)[2] for im in images]
    for name, pred in preds.items():
        if name == "fp32":
            continue
        err = {"low": [], "high": []}
        scale = {"low": [], "high": []}
        for im, ref in zip(images, refs, strict=True):
            got = pred.forward(im)[2]
            for key, g, r in zip(("low", "high"), got, ref, strict=True):
                err[key].append((g - r).abs().flatten())
                scale[key].append(r.abs().max())
        cols = []
        for key in err:
            e = torch.cat(err[key])
            cols.append(f"{key}: max {e.max():.4f}, mean {e.mean():.5f} (fp32 |max| "
                        f"{max(scale[key]):.3f})")  # fmt: skip
        print(f"  {name:<5} " + "; ".join(cols))


SPREAD = {"coco-mini + examples": CALIBRATION, "coco-mini": CALIBRATION[:1],
          "examples": CALIBRATION[1:]}  # fmt: skip


def _ap(pred: Predictor) -> float:
    ann = COCO_MINI / "person_keypoints.json"
    stats, _ = evaluate_keypoints(predict_images(pred, image_list(ann), COCO_MINI / "images"), ann)
    return float(stats["AP"])


def bench_int8_spread(variants: list[str]) -> None:
    """How far coco-mini AP moves between equally valid INT8 files of one model: calibrated on
    other image sets, and the same file run with ONNX Runtime's graph optimizations off (its
    QDQ graph computed in fp32 instead of the int8 kernels)."""
    from hrpose.runtime import OnnxNetwork

    weights = {"int8": SHARED / "weights" / "w8-coco-mini.pt"}
    if "int8-qat" in variants:
        weights["int8-qat"] = qat_weights()
    print("\nw8-coco-mini INT8, coco-mini AP by calibration set; the default file with graph "
          "optimizations off; mean |heatmaps+tags at 1/4 - fp32| on coco-mini, int8 kernels vs "
          "the same graph in fp32")  # fmt: skip
    images = [read_image(p) for p in list_images(COCO_MINI / "images")]
    for name, path in weights.items():
        loaded = load_model(path)
        cols = []
        for set_name, folders in SPREAD.items():
            pred = bench_predict.int8_predictor(loaded.network, folders, loaded.record)
            cols.append(f"{set_name} {_ap(pred):.3f}")
            if set_name == next(iter(SPREAD)):
                default = pred
        plain = bench_predict.onnx_session(default.onnx_path, optimize=False)
        emulated = Predictor(OnnxNetwork(plain), record=default.record)
        cols.append(f"graph optimizations off {_ap(emulated):.3f}")
        fp32 = Predictor.from_loaded(load_model(path))
        err_q, err_qq = [], []
        for im in images:
            ref, got, emu = (p.forward(im)[2][0] for p in (fp32, default, emulated))
            err_q.append((got - ref).abs().mean().item())
            err_qq.append((got - emu).abs().mean().item())
        cols.append(f"|int8 - fp32| {np.mean(err_q):.4f}, |int8 - same graph in fp32| "
                    f"{np.mean(err_qq):.4f}")  # fmt: skip
        print(f"  {name:<8} " + "; ".join(cols))


def _search_scores(path: Path, images: list[np.ndarray]) -> tuple[dict, dict, int]:
    """(coco-mini AP, AP against fp32) of every candidate calibration of the model at
    ``path``, and its width: one search, each candidate file scored both ways."""
    from hrpose.calibration_search import (
        SEARCH_PERCENTILES,
        agreement_scorer,
        search_calibration,
        validation_scorer,
    )

    loaded = load_model(path)
    model, record = loaded.network, loaded.record
    agree: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        by_ap = validation_scorer(COCO_MINI / "person_keypoints.json", COCO_MINI / "images")
        by_fp32 = agreement_scorer(model, record, images, Path(tmp))

        def score(f: Path) -> float:
            agree.append(by_fp32(f))
            return by_ap(f)

        _, aps = search_calibration(model, record, images, Path(tmp) / "int8.onnx", score,
                                    "coco-mini AP", (*SEARCH_PERCENTILES, 99.0))  # fmt: skip
    return aps, dict(zip(aps, agree, strict=True)), int(record.width)


def bench_calibration_search(models: list[Path]) -> None:
    """``hrpose quantize --method search`` on coco-mini models: every candidate calibration's
    coco-mini AP and its AP against the fp32 model's people on the calibration images (the
    label-free score), and what each score would choose. Calibrated on coco-mini + examples."""
    print("\nINT8 calibration chosen by accuracy (quantize --method search), calibrated on "
          "coco-mini + examples: coco-mini AP / AP against fp32 on the calibration "
          "images")  # fmt: skip
    images = [read_image(p) for p in calibration_files(CALIBRATION)]
    for path in models:
        aps, agree, width = _search_scores(path, images)
        print(f"  W{width} {path.name}:")
        for name in aps:
            print(f"    {name:<18} {aps[name]:.3f} / {agree[name]:.3f}")
        best_ap, best_agree = (max(d, key=lambda n, d=d: d[n]) for d in (aps, agree))
        print(f"    chosen by coco-mini AP: {best_ap} (AP {aps[best_ap]:.3f}); by AP against "
              f"fp32: {best_agree} (coco-mini AP {aps[best_agree]:.3f})")  # fmt: skip


def segment_of(node: str) -> str:
    """The network segment an ONNX node of an exported HigherHRNet belongs to: the stem,
    layer1, a transition, one branch or the fusion of a stage module, the Concat, the
    deconvolution (node names follow the module paths: /model/stage3/stage3.1/branches.0/...)."""
    parts = node.strip("/").split("/")[1:]
    if parts[0] in ("conv1", "relu", "conv2", "relu_1"):
        return "stem"
    if parts[0].startswith("stage") and len(parts) > 2:
        return parts[1] + ("." + parts[2] if parts[2].startswith("branches") else ".fuse")
    return parts[0]


def bench_segments(weights: Path, calibration: str = "99.99") -> None:
    """Where the INT8 error sits: the model quantized (``calibration``: a percentile or
    mean-minmax, calibrated on coco-mini + examples) with one segment at a time left fp32; its
    coco-mini AP and mean |heatmaps+tags at 1/4 - fp32| on coco-mini, against everything
    quantized."""
    import onnx

    from hrpose.quantize import MEAN_MINMAX, Prepared, percentile_range_sets

    loaded = load_model(weights)
    fp32 = Predictor.from_loaded(loaded)
    coco = [read_image(p) for p in list_images(COCO_MINI / "images")]
    refs = [fp32.forward(im)[2][0] for im in coco]
    images = [read_image(p) for p in calibration_files(CALIBRATION)]
    with tempfile.TemporaryDirectory(prefix="bench-segments-") as tmp:
        prepared = Prepared(loaded.network, loaded.record, images, Path(tmp))
        key = MEAN_MINMAX if calibration == MEAN_MINMAX else float(calibration)
        percentiles = [] if key == MEAN_MINMAX else [key]
        ranges = percentile_range_sets(prepared.pre, prepared.inputs, percentiles)[key]
        segments: dict[str, list[str]] = {}
        for node in onnx.load(str(prepared.pre)).graph.node:
            if node.name not in prepared.keep_fp32:
                segments.setdefault(segment_of(node.name), []).append(node.name)
        print(f"\n{weights.name} INT8 ({calibration}) with one segment left fp32: "
              "coco-mini AP, mean |heatmaps+tags at 1/4 - fp32| on coco-mini")  # fmt: skip
        for name, nodes in {"(none)": [], **segments}.items():
            path = prepared.write(Path(tmp) / "int8.onnx", ranges, fp32_nodes=nodes)
            pred = Predictor.from_loaded(load_model(path))
            err = [(pred.forward(im)[2][0] - r).abs().mean().item()
                   for im, r in zip(coco, refs, strict=True)]  # fmt: skip
            print(f"  {name:<22} {len(nodes):>4} nodes  AP {_ap(pred):.3f}  error "
                  f"{np.mean(err):.4f}", flush=True)  # fmt: skip


def _ranges_arg(value: str) -> str:
    """--segments RANGES: mean-minmax or a percentile in (50, 100]."""
    if value == "mean-minmax":
        return value
    try:
        if 50.0 < float(value) <= 100.0:
            return value
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"{value!r}: give mean-minmax or a percentile in (50, 100], e.g. 99.99"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="fp32,bf16,int8,int8-qat",
                        help=f"of {sorted(VARIANTS)}")  # fmt: skip
    parser.add_argument(
        "--qat-weights",
        type=Path,
        default=None,
        help="a QAT fine-tune of w8-coco-mini (default: train one, ~2 min)",
    )
    parser.add_argument(
        "--skip-spread",
        action="store_true",
        help="leave out the INT8 AP spread between calibration sets",
    )
    parser.add_argument(
        "--search",
        type=Path,
        nargs="*",
        default=[W8],
        metavar="WEIGHTS",
        help="coco-mini models for the calibration search table (default w8-coco-mini.pt; none "
        "leaves it out)",
    )
    parser.add_argument("--weights", type=Path, default=W8,
                        help="the model of the accuracy table: trained on coco-mini (default "
                        "w8-coco-mini.pt; e.g. a W32 trained by configs/pose/coco-mini.yaml "
                        "--model.width=32)")  # fmt: skip
    parser.add_argument("--segments", nargs="?", const="99.99", default=None,
                        metavar="RANGES", type=_ranges_arg,
                        help="the segment table: --weights quantized (RANGES: a percentile, "
                        "default 99.99, or mean-minmax) with one network segment at a time "
                        "left fp32 (~43 quantizations: 7 min for the W8)")  # fmt: skip
    parser.add_argument("--frames", type=int, default=5, help="street.mp4 frames compared")
    parser.add_argument("--repeat", type=int, default=2, help="speed: interleaved runs")
    parser.add_argument("--clock", choices=["wall", "cpu"], default="cpu")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-seeded", action="store_true",
                        help="leave out the output error of the key-seeded W32")  # fmt: skip
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if "fp32" not in variants:
        variants.insert(0, "fp32")
    if args.clock == "cpu":
        bench_predict.CLOCK["now"] = time.process_time
    print(f"clock: {args.clock}, {torch.get_num_threads()} thread(s); variants {variants}")
    warnings.filterwarnings("ignore", message="INT8 on this CPU")  # stated with the figures
    QAT["weights"] = args.qat_weights
    if not args.skip_accuracy:
        bench_w8([v for v in variants if args.weights == W8 or v not in W8_ONLY], args.frames,
                 args.weights)  # fmt: skip
        if not args.skip_seeded:
            bench_w32_error(variants)
        if not args.skip_spread and "int8" in variants:
            bench_int8_spread(variants)
        if args.search:
            bench_calibration_search(args.search)
        if args.segments:
            bench_segments(args.weights, args.segments)
    if not args.skip_speed:
        root = os.environ.get("HRPOSE_OFFICIAL")
        device = torch.device("cpu")
        official = bench_predict._official(root, 32, device) if root else None
        if official is None:
            print("HRPOSE_OFFICIAL not set: no official comparison")
        bf16 = "bf16" in variants and cpu_has_native_bf16()  # emulated bf16 is not timed
        speed = argparse.Namespace(width=32, repeat=args.repeat, no_fast=True,
                                   int8="int8" in variants, bf16=bf16)  # fmt: skip
        bench_predict.bench_image(speed, device, official)


if __name__ == "__main__":
    main()
