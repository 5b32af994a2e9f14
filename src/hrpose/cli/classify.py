"""`hrpose classify SOURCE --weights W`: top-5 classes of an image or a folder (HRNet-C)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    from hrpose.cli.eval_classifier import classifier_config
    from hrpose.config.load import ConfigError

    p = argparse.ArgumentParser(
        prog="hrpose classify",
        allow_abbrev=False,
        description=__doc__ + " Also --config FILE (a classifier YAML) and --data.* overrides; "
        "--input-size and --resize set data.input_size and data.resize_size.",
    )
    p.add_argument("source", help="an image or a folder of images")
    p.add_argument(
        "--weights",
        required=True,
        help="official HRNet-W32-C or hrpose classifier, a URL or a registered name",
    )
    p.add_argument("--labels", help="labels.json from `hrpose prepare imagenet` (wnid -> name)")
    p.add_argument("--output", default=None, help="also write images with the top-5 drawn")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    try:
        cfg, rest = classifier_config(argv, "hrpose classify", ("data",))
    except ConfigError as e:
        print(f"hrpose classify: {e}", file=sys.stderr)
        return 2
    args = p.parse_args(rest)
    import cv2
    import numpy as np
    import torch

    from hrpose.cli.eval_classifier import load_classifier
    from hrpose.data.imagenet import ValTransform
    from hrpose.data.images import ImageReadError, list_images, read_image_pil
    from hrpose.models.weights import WeightsError

    try:
        model, classes, names = load_classifier(args.weights)
    except WeightsError as e:
        print(f"hrpose classify: {e}", file=sys.stderr)
        return 2
    if args.labels:
        mapping = json.loads(Path(args.labels).read_text())
        keys = classes or sorted(mapping)
        if len(keys) == model.num_classes:
            names = [mapping.get(k, k) for k in keys]
        else:
            print(
                f"{args.labels} has {len(keys)} classes, the model {model.num_classes}: "
                "showing class indices",
                file=sys.stderr,
            )
    names = names or [f"class {i}" for i in range(model.num_classes)]
    src = Path(args.source)
    paths = list_images(src) if src.is_dir() else [src]
    transform, failed = ValTransform(cfg.data.input_size, cfg.data.resize_size), 0
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = model.to(device)
    out = Path(args.output) if args.output else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        try:
            # Pillow, EXIF orientation ignored: the picture ImageNet training saw (ImageFolder)
            image = read_image_pil(path)
        except ImageReadError as e:
            print(f"skipped {e}", file=sys.stderr)
            failed += 1
            continue
        with torch.no_grad():
            prob = torch.softmax(model(transform(image)[None].to(device)), 1)[0].cpu()
        top = prob.topk(min(args.topk, len(prob)))
        lines = [
            f"{names[i]} {v:.1%}"
            for v, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]
        print(f"{path.name}: " + "; ".join(lines))
        if out:
            canvas = np.array(image)
            for n, text in enumerate(lines):
                cv2.putText(
                    canvas,
                    text,
                    (8, 22 + 20 * n),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.6,
                    (255, 255, 0),
                    2,
                    cv2.LINE_AA,
                )
            cv2.imwrite(str(out / f"{path.stem}_top{args.topk}.jpg"), canvas[:, :, ::-1])
    return 1 if failed else 0
