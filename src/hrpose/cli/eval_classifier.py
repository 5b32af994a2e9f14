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


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="hrpose eval classifier", description=__doc__)
    p.add_argument("--weights", required=True)
    p.add_argument("--data.root", dest="root", default="data/ImageNet")
    p.add_argument("--data.split", dest="split", default="val")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--resize", type=int, default=256)
    p.add_argument("--workers", type=int, default=4)
    args = p.parse_args(argv)
    import torch

    from hrpose.data.coco import DatasetError
    from hrpose.data.imagenet import ImageFolder, ValTransform
    from hrpose.evaluation.classification import TopkAccuracy
    from hrpose.models.weights import WeightsError
    from hrpose.progress import progress

    try:
        model, _, _ = load_classifier(args.weights)
        data = ImageFolder(Path(args.root) / args.split, ValTransform(args.input_size, args.resize))
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
    loader = torch.utils.data.DataLoader(data, args.batch_size, num_workers=args.workers)
    acc = TopkAccuracy((1, 5))
    with torch.no_grad():
        for images, labels in progress(loader, "evaluating", "batch"):
            acc.update(model(images), labels)
    res = acc.compute()
    print(f"top-1 {res['top1']:.2f}%  top-5 {res['top5']:.2f}%  ({acc.count} images)")
    return 0
