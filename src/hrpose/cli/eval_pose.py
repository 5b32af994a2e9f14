"""`hrpose eval pose`: COCO keypoint AP of weights over every image of a split (or of a results
file), with the pycocotools summary table and a protocol record."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

from hrpose.data.coco import DatasetError, coco_paths
from hrpose.structures import DecodeParams


class _Renamed(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[override]
        parser.error(f"{option_string} was renamed --detection-threshold (the decoder's name)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hrpose eval pose",
        description="COCO keypoint AP. Every image of the split is predicted (images without "
        "people count: false positives there lower AP).",
    )
    p.add_argument("--weights", help="checkpoint (.pth/.pt), .onnx, URL or registered name")
    p.add_argument("--results", help="evaluate this COCO results JSON instead of predicting")
    p.add_argument("--annotations", help="annotation file (default from --data.root/--data.split)")
    p.add_argument("--images", help="image folder (default <root>/images/<split>)")
    p.add_argument("--data.root", dest="root", default="data/COCO", help="COCO root folder")
    p.add_argument("--data.split", dest="split", default="val2017", help="split name")
    p.add_argument("--output", help="output folder (default outputs/eval/<weights>-<split>)")
    p.add_argument("--input-size", type=int, default=None, help="default 512 (640 for W48)")
    d = DecodeParams()  # the flags' defaults and names follow the one decode settings record
    p.add_argument("--no-flip", action="store_true", help="disable the flip test")
    p.add_argument("--scales", type=float, nargs="+", default=list(d.scales), help="multi-scale")
    p.add_argument("--no-adjust", action="store_true")
    p.add_argument("--no-refine", action="store_true")
    p.add_argument("--detection-threshold", type=float, default=d.detection_threshold)
    p.add_argument("--det-threshold", action=_Renamed, help=argparse.SUPPRESS)
    p.add_argument("--tag-threshold", type=float, default=d.tag_threshold)
    p.add_argument("--max-people", type=int, default=d.max_people)
    p.add_argument("--nms-kernel", type=int, default=d.nms_kernel)
    p.add_argument("--limit", type=int, default=None, help="only the first N images (smoke runs)")
    p.add_argument("--backend", default="pycocotools", choices=["pycocotools", "faster-coco-eval"])
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--mlflow", action="store_true", help="also log to the local MLflow store")
    return p


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    from hrpose.evaluation.coco_eval import evaluate_keypoints

    ann, images = coco_paths(args.root, args.split)
    ann = Path(args.annotations) if args.annotations else ann
    images = Path(args.images) if args.images else images
    if not ann.is_file():
        print(
            f"hrpose eval pose: annotation file not found: {ann}. Get COCO with "
            f"`hrpose prepare coco --root {args.root}` or pass --annotations.",
            file=sys.stderr,
        )
        return 2
    if args.results:
        try:
            stats, _ = evaluate_keypoints(
                args.results, ann, backend=args.backend, print_summary=True
            )
        except (ValueError, FileNotFoundError) as e:
            print(f"hrpose eval pose: {e}", file=sys.stderr)
            return 2
        print(f"AP {stats['AP']:.4f}")
        return 0
    if not args.weights:
        from hrpose.predict import WEIGHTS_HELP

        print(f"hrpose eval pose: pass --weights or --results. {WEIGHTS_HELP}", file=sys.stderr)
        return 2
    return _evaluate_weights(args, ann, images)


def _evaluate_weights(args: argparse.Namespace, ann: Path, images: Path) -> int:
    from hrpose.evaluation.coco_eval import evaluate_keypoints, evaluator_name
    from hrpose.evaluation.pose import image_list, predict_images, write_results
    from hrpose.evaluation.protocol import ProtocolRecord, sha256_file
    from hrpose.hub import is_remote, resolve_weights
    from hrpose.models import WeightsError
    from hrpose.predict import Predictor

    params = DecodeParams(
        detection_threshold=args.detection_threshold,
        tag_threshold=args.tag_threshold,
        max_people=args.max_people,
        nms_kernel=args.nms_kernel,
        adjust=not args.no_adjust,
        refine=not args.no_refine,
        flip=not args.no_flip,
        scales=tuple(args.scales),
    )
    try:
        kw = {"params": params, "device": args.device}
        if args.input_size:
            kw["input_size"] = args.input_size
        predictor = Predictor.from_weights(args.weights, **kw)
    except (WeightsError, ValueError, RuntimeError) as e:
        print(f"hrpose eval pose: {e}", file=sys.stderr)
        return 2
    if args.input_size is None and "W48" in predictor.description and not is_remote(args.weights):
        predictor.input_size = 640
    todo = image_list(ann)[: args.limit] if args.limit else image_list(ann)
    name = Path(str(args.weights)).stem
    out = Path(args.output or f"outputs/eval/{name}-{args.split}")
    print(
        f"evaluating {predictor.description} on {len(todo)} images of {ann} "
        f"(input {predictor.input_size}, flip {params.flip}, scales {list(params.scales)})"
    )
    t0 = time.perf_counter()
    try:
        results = predict_images(predictor, todo, images, progress=True)
    except DatasetError as e:
        print(f"hrpose eval pose: {e}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - t0
    res_file = write_results(results, out / f"keypoints_{args.split}_results.json")
    stats, table = evaluate_keypoints(
        results, ann, backend=args.backend, image_ids=[i for i, _ in todo], print_summary=True
    )
    weights = None if args.weights == "random" else str(resolve_weights(args.weights, quiet=True))
    record = ProtocolRecord.from_params(
        params,
        annotation_file=str(ann),
        num_images=len(todo),
        input_size=predictor.input_size,
        weights=weights,
        weights_sha256=sha256_file(weights) if weights else None,
        evaluator=evaluator_name(ann, args.backend),
        stats=stats,
    )
    (out / "protocol.json").write_text(record.to_json())
    (out / "summary.txt").write_text(table)
    if args.mlflow:
        _log_mlflow(record, out)
    print(
        f"AP {stats['AP']:.4f} over {len(todo)} images in {elapsed:.1f} s; results {res_file}, "
        f"protocol {out / 'protocol.json'}"
    )
    return 0


def _log_mlflow(record: object, out: Path) -> None:
    import mlflow

    from hrpose.engine.tracking import default_tracking_uri

    mlflow.set_tracking_uri(default_tracking_uri("results"))
    mlflow.set_experiment("eval")
    data = asdict(record)  # type: ignore[call-overload]
    with mlflow.start_run(run_name=out.name):
        mlflow.log_params(
            {
                k: json.dumps(v) if isinstance(v, list) else v
                for k, v in data.items()
                if k != "stats"
            }
        )
        mlflow.log_metrics(data["stats"])
        mlflow.log_artifacts(str(out))
