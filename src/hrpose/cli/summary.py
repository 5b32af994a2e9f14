"""`hrpose summary`: parameters and multiply-adds of a model at an input size."""

from __future__ import annotations

import argparse

from hrpose.models import HigherHRNet, HRNetClassifier, summarize


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hrpose summary", description="Parameters and multiply-adds of a model."
    )
    parser.add_argument(
        "model", nargs="?", default="higherhrnet", choices=["higherhrnet", "classifier"]
    )
    parser.add_argument("--width", type=int, default=32, help="HRNet width (18, 32, 48)")
    parser.add_argument("--num-joints", type=int, default=17)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument(
        "--input-size", type=int, nargs="+", default=None,
        help="H [W]; default 512 for pose, 224 for the classifier (multiples of 32)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.model == "higherhrnet":
        model = HigherHRNet(args.width, args.num_joints, init_weights=False)
        name = f"HigherHRNet-W{args.width} ({args.num_joints} joints)"
        default = 512
    else:
        model = HRNetClassifier(args.width, args.num_classes, init_weights=False)
        name = f"HRNet-W{args.width}-C ({args.num_classes} classes)"
        default = 224
    size = args.input_size or [default]
    h, w = size[0], size[-1]
    if h % 32 or w % 32:
        parser.error(f"--input-size must be multiples of 32, got {h}x{w}")
    print(f"{name} at {h}x{w}")
    print(summarize(model, (h, w)).format())
    return 0
