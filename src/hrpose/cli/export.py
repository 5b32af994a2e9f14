"""`hrpose export onnx --weights W --output model.onnx`: the network and its model record."""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    from hrpose.cli.options import add_common, add_inference_flags

    p = argparse.ArgumentParser(
        prog="hrpose export",
        allow_abbrev=False,
        description="Export the network as ONNX with its model record in the metadata: the "
        "weights' record, then --config's inference section, then flags (e.g. --input-size).",
    )
    p.add_argument("format", choices=["onnx"])
    add_common(p, "official, mmpose or hrpose checkpoint, URL, registered name, or 'random'",
               "model.onnx", "the .onnx file to write (default: model.onnx)")  # fmt: skip
    p.add_argument("--opset", type=int, default=17)
    add_inference_flags(p)
    return p


def main(argv: list[str]) -> int:
    from hrpose.cli.options import parse, torch_model_and_record
    from hrpose.config.load import ConfigError
    from hrpose.models import WeightsError

    p = _parser()
    args, overrides = parse(p, argv, ("inference",))
    if args.device not in (None, "cpu"):
        p.error("export runs on the CPU; leave out --device")
    try:
        kinds = "a checkpoint, URL, registered name or 'random'"
        loaded, record = torch_model_and_record(p, args, overrides, kinds)
    except (ConfigError, WeightsError, ValueError) as e:
        print(f"hrpose export: {e}", file=sys.stderr)
        return 2
    try:
        from hrpose.export import export_onnx

        path = export_onnx(loaded.network, args.output, record, args.opset)
    except ImportError as e:
        print(f"hrpose export: {e}; install the extra: pip install 'hrpose[onnx]'", file=sys.stderr)
        return 2
    s = record.inference
    print(
        f"wrote {path} ({loaded.description}; record: input {s.input_size}, flip {s.flip}, "
        f"detection threshold {s.detection_threshold}); run it with "
        f"`hrpose predict SOURCE --weights {path}`"
    )
    return 0
