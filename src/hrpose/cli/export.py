"""`hrpose export onnx --weights W --output model.onnx`."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hrpose export", description="Export the network.")
    p.add_argument("format", choices=["onnx"])
    p.add_argument("--weights", required=True, help="official or hrpose checkpoint, or 'random'")
    p.add_argument("--output", default="model.onnx")
    p.add_argument("--input-size", type=int, default=512, help="recorded in the metadata")
    p.add_argument("--opset", type=int, default=17)
    args = p.parse_args(argv)
    from hrpose.models import WeightsError
    from hrpose.predict import Predictor

    try:
        predictor = Predictor.from_weights(args.weights, input_size=args.input_size)
    except (WeightsError, ValueError) as e:
        print(f"hrpose export: {e}", file=sys.stderr)
        return 2
    try:
        from hrpose.export import export_onnx

        path = export_onnx(
            predictor.model, args.output, predictor.spec, args.input_size, args.opset
        )
    except ImportError as e:
        print(f"hrpose export: {e}; install the extra: pip install 'hrpose[onnx]'", file=sys.stderr)
        return 2
    print(
        f"wrote {path} ({predictor.description}); run it with "
        f"`hrpose predict SOURCE --weights {path} --backend onnxruntime`"
    )
    return 0
