"""`hrpose quantize --weights W --calibration DIR --output W-int8.onnx`: static INT8 ONNX."""

from __future__ import annotations

import argparse
import sys
import time


def _parser() -> argparse.ArgumentParser:
    from hrpose.calibration_search import SEARCH_PERCENTILES
    from hrpose.cli.options import add_common, add_inference_flags
    from hrpose.quantize import DEFAULT_MAX_IMAGES

    p = argparse.ArgumentParser(
        prog="hrpose quantize",
        allow_abbrev=False,
        description="Quantize a pose model to static INT8 (ONNX Runtime QDQ: int8 weights per "
        "output channel, uint8 activations; the final heatmap and tag layers stay fp32), "
        "calibrated on images preprocessed as predict does under the model's record (then "
        "--config's inference section, then flags such as --input-size). The .onnx file "
        "carries the record, says int8, and runs with `hrpose predict --weights FILE`.",
    )
    add_common(p, "official, mmpose or hrpose checkpoint, URL or registered name", None,
               "the INT8 .onnx file to write (required)")  # fmt: skip
    p.add_argument(
        "--calibration",
        action="extend",
        nargs="+",
        metavar="DIR",
        default=[],
        help="folder(s) of images like those the model will see (repeatable); 8-16 images "
        "calibrate well",
    )
    p.add_argument(
        "--max-images",
        type=int,
        default=DEFAULT_MAX_IMAGES,
        metavar="N",
        help=f"use at most N calibration images, spread over the folders (default "
        f"{DEFAULT_MAX_IMAGES})",
    )
    p.add_argument(
        "--method",
        choices=("minmax", "mean-minmax", "percentile", "search"),
        default="minmax",
        help="activation ranges: min/max over the calibration inputs (default); mean-minmax, "
        "the mean of each input's min/max, or clipped at --percentile (both for models whose "
        "activations have outliers); or search: min/max, mean-minmax and each of "
        "--percentiles written and scored, the best kept (by COCO AP on --annotations and "
        "--images, else by AP against the fp32 model's people on the calibration images)",
    )
    p.add_argument(
        "--percentile",
        type=float,
        default=None,
        help="with --method percentile: the share of values kept, in (50, 100] (default 99.99)",
    )
    p.add_argument(
        "--percentiles",
        type=float,
        nargs="+",
        default=None,
        metavar="P",
        help="with --method search: the percentiles tried besides min/max and mean-minmax "
        f"(default {' '.join(f'{v:g}' for v in SEARCH_PERCENTILES)})",
    )
    p.add_argument("--annotations", help="with --method search: a COCO keypoints JSON to score "
                   "the candidates on (COCO AP), with --images")  # fmt: skip
    p.add_argument("--images", help="with --annotations: its image folder")
    add_inference_flags(p)
    return p


def _check_method_flags(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Each method's own flags, and only with it."""
    if args.percentile is not None and args.method != "percentile":
        p.error("--percentile applies to --method percentile: add --method percentile")
    if args.percentile is not None and not 50.0 < args.percentile <= 100.0:
        p.error(f"--percentile {args.percentile}: give a share in (50, 100], e.g. 99.99")
    for flag in ("percentiles", "annotations", "images"):
        if getattr(args, flag) is not None and args.method != "search":
            p.error(f"--{flag} applies to --method search: add --method search")
    bad = [v for v in args.percentiles or () if not 50.0 < v <= 100.0]
    if bad:
        p.error(f"--percentiles {bad[0]:g}: give shares in (50, 100], e.g. 99.99 99.9")
    if (args.annotations is None) != (args.images is None):
        p.error("--annotations and --images go together: the COCO keypoints JSON and its "
                "image folder")  # fmt: skip


def _search(args: argparse.Namespace, model, record, images) -> tuple[object, str]:
    """--method search: every candidate written and scored, the best kept."""
    import tempfile
    from pathlib import Path

    from hrpose.calibration_search import (
        SEARCH_PERCENTILES,
        agreement_scorer,
        search_calibration,
        validation_scorer,
    )

    with tempfile.TemporaryDirectory(prefix="hrpose-quantize-") as tmp:
        if args.annotations:
            score = validation_scorer(args.annotations, args.images)
            criterion = f"COCO AP on {Path(args.annotations).name}"
        else:
            score = agreement_scorer(model, record, images, Path(tmp))
            criterion = "AP against the fp32 model's people on the calibration images"
        print(f"scoring each calibration by {criterion}:")
        path, scores = search_calibration(
            model, record, images, args.output, score, criterion,
            args.percentiles or SEARCH_PERCENTILES,
            report=lambda name, v: print(f"  {name:<18} {v:.3f}", flush=True),
        )  # fmt: skip
    best = max(scores, key=lambda n: scores[n])
    return path, f"; {best} chosen, {criterion} {scores[best]:.3f}"


def main(argv: list[str]) -> int:
    from hrpose.cli.options import parse, torch_model_and_record
    from hrpose.config.load import ConfigError
    from hrpose.models import WeightsError
    from hrpose.quantize import (
        DEFAULT_PERCENTILE,
        QuantizeError,
        calibration_files,
        quantize_model,
        read_calibration_images,
    )

    p = _parser()
    args, overrides = parse(p, argv, ("inference",))
    if args.device not in (None, "cpu"):
        p.error("quantize runs on the CPU; leave out --device")
    if not args.output or not args.output.endswith(".onnx"):
        p.error("--output FILE.onnx is required (the INT8 model file to write)")
    _check_method_flags(p, args)
    if not args.calibration:
        p.error("--calibration DIR is required: a folder of images to calibrate on")
    try:
        files = calibration_files(args.calibration, args.max_images)
        kinds = "a checkpoint, URL or registered name"
        loaded, record = torch_model_and_record(p, args, overrides, kinds)
        images = read_calibration_images(files)
        t0 = time.perf_counter()
        if args.method == "search":
            path, chosen = _search(args, loaded.network, record, images)
        else:
            path = quantize_model(loaded.network, record, images, args.output,
                                  calibration=args.method,
                                  percentile=args.percentile or DEFAULT_PERCENTILE)  # fmt: skip
            chosen = ""
    except (ConfigError, WeightsError, QuantizeError, ValueError) as e:
        print(f"hrpose quantize: {e}", file=sys.stderr)
        return 2
    except ImportError as e:
        print(f"hrpose quantize: {e}; install the extra: pip install 'hrpose[onnx]'",
              file=sys.stderr)  # fmt: skip
        return 2
    s = record.inference
    print(
        f"wrote {path} ({loaded.description}, INT8; calibrated on {len(images)} image(s) at "
        f"input {s.input_size}, flip {s.flip}{chosen}, in {time.perf_counter() - t0:.0f} s); "
        f"run it with `hrpose predict SOURCE --weights {path}`"
    )
    return 0
