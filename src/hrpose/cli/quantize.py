"""`hrpose quantize --weights W --calibration DIR --output W-int8.onnx`: static INT8 ONNX."""

from __future__ import annotations

import argparse
import sys
import time


def _parser() -> argparse.ArgumentParser:
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
        choices=("minmax", "percentile"),
        default="minmax",
        help="activation ranges: min/max over the calibration inputs (default), or clipped at "
        "--percentile (for models whose activations have outliers)",
    )
    p.add_argument(
        "--percentile",
        type=float,
        default=None,
        help="with --method percentile: the share of values kept, in (50, 100] (default 99.99)",
    )
    add_inference_flags(p)
    return p


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
    if args.percentile is not None and args.method != "percentile":
        p.error("--percentile applies to --method percentile: add --method percentile")
    if args.percentile is not None and not 50.0 < args.percentile <= 100.0:
        p.error(f"--percentile {args.percentile}: give a share in (50, 100], e.g. 99.99")
    if not args.calibration:
        p.error("--calibration DIR is required: a folder of images to calibrate on")
    try:
        files = calibration_files(args.calibration, args.max_images)
        kinds = "a checkpoint, URL or registered name"
        loaded, record = torch_model_and_record(p, args, overrides, kinds)
        images = read_calibration_images(files)
        t0 = time.perf_counter()
        path = quantize_model(loaded.network, record, images, args.output,
                              calibration=args.method,
                              percentile=args.percentile or DEFAULT_PERCENTILE)  # fmt: skip
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
        f"input {s.input_size}, flip {s.flip}, in {time.perf_counter() - t0:.0f} s); run it "
        f"with `hrpose predict SOURCE --weights {path}`"
    )
    return 0
