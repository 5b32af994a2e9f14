"""`hrpose eval classifier`: top-1/top-5 of HRNet-C weights on an ImageNet-layout val folder."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def load_classifier(weights: str):
    """HRNetClassifier with architecture and class names from an official or hrpose checkpoint,
    a URL or a registered name (``hrpose weights list``)."""
    from hrpose.hub import resolve_weights
    from hrpose.models import HRNetClassifier, describe_arch, extract_state_dict, load_weights
    from hrpose.models.weights import WeightsError, read_checkpoint

    obj = read_checkpoint(resolve_weights(weights))
    state = extract_state_dict(obj)
    arch = describe_arch(state)
    if arch.get("kind") != "HRNetClassifier":
        raise WeightsError(f"{weights} is a {arch.get('kind', 'unknown')} checkpoint, not HRNet-C")
    model = HRNetClassifier(int(arch["width"]), int(arch["num_classes"]), init_weights=False)
    load_weights(model, state)
    extra = obj.get("extra") or {}
    return model.eval(), extra.get("classes"), extra.get("class_names")


CLASSIFIER_SHORT_FLAGS = {
    "--input-size": ("data.input_size",),
    "--resize": ("data.resize_size",),
    "--batch-size": ("dataloader.val_batch_size",),
    "--workers": ("dataloader.num_workers",),
}


def classifier_config(argv: list[str], prog: str, sections: tuple[str, ...]):
    """(the classifier config of --config, ``--section.field=value`` and the short flags, the
    remaining arguments): the same grammar as the pose commands."""
    from hrpose.cli.options import RENAMED, short_flags_to_overrides
    from hrpose.config.load import ConfigError, load_config
    from hrpose.config.schema import ClassifierTrainConfig

    config, rest, dotted = None, [], []
    argv = short_flags_to_overrides(argv, CLASSIFIER_SHORT_FLAGS)
    i = 0
    while i < len(argv):
        arg, key = argv[i], argv[i].split("=", 1)[0]
        if key in RENAMED:
            raise ConfigError(f"{key} was renamed: use {RENAMED[key]}")
        if key == "--config":
            config = arg.split("=", 1)[1] if "=" in arg else argv[i + 1]
            i += 1 if "=" in arg else 2
            continue
        if arg.startswith("--") and "." in key:
            if key[2:].split(".", 1)[0] not in sections:
                raise ConfigError(f"{key}: {prog} reads only the {', '.join(sections)} "
                                  "section(s) of a config")  # fmt: skip
            dotted.append(arg)
        else:
            rest.append(arg)
        i += 1
    return load_config(ClassifierTrainConfig, config, dotted), rest


def main(argv: list[str]) -> int:
    from hrpose.config.load import ConfigError

    p = argparse.ArgumentParser(
        prog="hrpose eval classifier",
        allow_abbrev=False,
        description=__doc__ + " Also --config FILE (a classifier YAML) and --data.* / "
        "--dataloader.* overrides; --input-size, --resize, --batch-size and --workers set "
        "data.input_size, data.resize_size, dataloader.val_batch_size, dataloader.num_workers.",
    )
    p.add_argument("--weights", required=True)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    try:
        cfg, rest = classifier_config(argv, "hrpose eval classifier", ("data", "dataloader"))
    except ConfigError as e:
        print(f"hrpose eval classifier: {e}", file=sys.stderr)
        return 2
    args = p.parse_args(rest)
    val, d = cfg.dataloader.val_ds, cfg.data
    batch = cfg.dataloader.val_batch_size or cfg.dataloader.batch_size
    import torch

    from hrpose.data.coco import DatasetError
    from hrpose.data.imagenet import ImageFolder, ValTransform
    from hrpose.evaluation.classification import TopkAccuracy
    from hrpose.models.weights import WeightsError
    from hrpose.progress import progress

    try:
        model, _, _ = load_classifier(args.weights)
        data = ImageFolder(Path(val.root) / val.split, ValTransform(d.input_size, d.resize_size))
    except (WeightsError, DatasetError) as e:
        print(f"hrpose eval classifier: {e}", file=sys.stderr)
        return 2
    if len(data.classes) != model.num_classes:
        print(
            f"hrpose eval classifier: {len(data.classes)} class folders but the model has "
            f"{model.num_classes} classes",
            file=sys.stderr,
        )
        return 2
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device)
    loader = torch.utils.data.DataLoader(data, batch, num_workers=cfg.dataloader.num_workers)
    acc = TopkAccuracy((1, 5))
    with torch.no_grad():
        for images, labels in progress(loader, "evaluating", "batch"):
            acc.update(model(images.to(device)).cpu(), labels)
    res = acc.compute()
    print(f"top-1 {res['top1']:.2f}%  top-5 {res['top5']:.2f}%  ({acc.count} images)")
    return 0
