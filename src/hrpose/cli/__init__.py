"""`hrpose` command line: one sub-command per module, imported only when used."""

from __future__ import annotations

import importlib
import sys

# name -> (module, one-line help). Each module exposes ``main(argv: list[str]) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("hrpose.cli.demo", "train on coco-mini, evaluate, predict: the end-to-end demo"),
    "train": ("hrpose.cli.train", "train pose | classifier"),
    "eval": ("hrpose.cli.evaluate", "eval pose | classifier: COCO AP or ImageNet top-1/5"),
    "predict": ("hrpose.cli.predict", "predict on an image, folder, video or camera"),
    "classify": ("hrpose.cli.classify", "top-5 classes of an image or folder (HRNet-W32-C)"),
    "export": ("hrpose.cli.export", "export onnx: the network as an ONNX file"),
    "quantize": ("hrpose.cli.quantize", "static INT8 ONNX file, calibrated on images"),
    "prepare": ("hrpose.cli.prepare", "prepare coco | imagenet: download and lay out data"),
    "serve": ("hrpose.cli.serve", "serve a model over HTTP: JSON API and a web page"),
    "summary": ("hrpose.cli.summary", "parameters and multiply-adds of a model"),
    "weights": ("hrpose.cli.weights", "weights list | download: registered pretrained weights"),
}


def _usage() -> str:
    lines = ["usage: hrpose COMMAND [options]   (hrpose COMMAND --help for details)", ""]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``hrpose COMMAND ...`` to ``hrpose.cli.<module>.main``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] in ("-V", "--version"):
        from hrpose import __version__

        print(f"hrpose {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        import difflib

        close = difflib.get_close_matches(name, COMMANDS, n=3)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        print(f"hrpose: unknown command {name!r}.{hint}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(argv[1:]) or 0)
