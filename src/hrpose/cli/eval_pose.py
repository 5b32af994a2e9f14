"""`hrpose eval pose`: COCO keypoint AP of weights over every image of a split (or of a results
file), with the pycocotools summary table and a protocol record."""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hrpose.data.coco import DatasetError, coco_paths

EVALUATORS = ("pycocotools", "faster-coco-eval")


@dataclass(frozen=True)
class EvalTarget:
    """What to evaluate on: an annotation file, its images, and where the outputs go."""

    annotations: Path
    images: Path
    output: Path
    split: str = "val2017"
    limit: int | None = None  # first N images only (smoke runs)
    evaluator: str = "pycocotools"


def _parser() -> argparse.ArgumentParser:
    from hrpose.cli.options import add_common, add_inference_flags

    p = argparse.ArgumentParser(
        prog="hrpose eval pose",
        allow_abbrev=False,
        description="COCO keypoint AP. Every image of the split is predicted (images without "
        "people count: false positives there lower AP). The settings come from the weights' "
        "record, then --config's inference section, then flags. The data: --annotations and "
        "--images, else --dataloader.val_ds.* (of --config or given), default data/COCO val2017.",
    )
    add_common(p, "checkpoint (.pth/.pt), .onnx, URL or registered name", None)
    p.add_argument("--results", help="evaluate this COCO results JSON instead of predicting")
    p.add_argument("--annotations", help="annotation file (default from --dataloader.val_ds)")
    p.add_argument("--images", help="image folder (default from --dataloader.val_ds)")
    p.add_argument("--backend", default=None, choices=["torch", "onnxruntime"],
                   help="model runtime (default: from the file)")  # fmt: skip
    p.add_argument(
        "--evaluator",
        default="pycocotools",
        choices=EVALUATORS,
        help="COCO evaluator (faster-coco-eval: identical statistics, faster)",
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N images (smoke runs)")
    p.add_argument("--mlflow", action="store_true", help="also log to the local MLflow store")
    add_inference_flags(p)
    return p


def main(argv: list[str]) -> int:
    from hrpose.cli.options import command_config, parse
    from hrpose.config.load import ConfigError
    from hrpose.config.schema import PoseTrainConfig

    p = _parser()
    if any(a.split("=", 1)[0] == "--backend" for a in argv) and any(e in argv for e in EVALUATORS):
        p.error("--backend now names the model runtime; the COCO evaluator is --evaluator")
    args, overrides = parse(p, argv, ("inference", "dataloader"))
    try:
        cfg = command_config(PoseTrainConfig, args, overrides)
    except ConfigError as e:
        print(f"hrpose eval pose: {e}", file=sys.stderr)
        return 2
    val = cfg.dataloader.val_ds
    ann, images = coco_paths(val.root, val.split, val.ann_file, val.images_dir)
    ann = Path(args.annotations) if args.annotations else Path(ann)
    images = Path(args.images) if args.images else Path(images)
    if not ann.is_file():
        print(
            f"hrpose eval pose: annotation file not found: {ann}. Get COCO with "
            f"`hrpose prepare coco --root {val.root}` or pass --annotations.",
            file=sys.stderr,
        )
        return 2
    if args.results:
        return _evaluate_results(args.results, ann, args.evaluator)
    if not args.weights and not cfg.inference.ckpt_path:
        from hrpose.loading import WEIGHTS_HELP

        print(f"hrpose eval pose: pass --weights or --results. {WEIGHTS_HELP}", file=sys.stderr)
        return 2
    weights = args.weights or cfg.inference.ckpt_path
    out = (
        Path(args.output)
        if args.output
        else default_output(weights, ann if args.annotations else None, val.split)
    )
    target = EvalTarget(ann, images, out, val.split, args.limit, args.evaluator)
    try:
        predictor = _predictor(args, overrides, weights)
    except (ConfigError, ValueError, RuntimeError) as e:
        print(f"hrpose eval pose: {e}", file=sys.stderr)
        return 2
    try:
        stats = evaluate_predictor(predictor, target, weights=weights)
    except DatasetError as e:
        print(f"hrpose eval pose: {e}", file=sys.stderr)
        return 1
    if args.mlflow:
        _log_mlflow(out)
    return 0 if stats else 1


def default_output(weights: str, annotations: Path | None, split: str) -> Path:
    """outputs/eval/<weights>-<split>, or -<folder>-<file> of an --annotations file, so that
    evaluations of two annotation files never share a folder."""
    data = f"{annotations.parent.name}-{annotations.stem}" if annotations else split
    return Path("outputs/eval") / f"{Path(str(weights)).stem}-{data}"


def _predictor(args: argparse.Namespace, overrides: list[str], weights: str):
    import torch

    from hrpose.cli.options import resolve_inference
    from hrpose.loading import load_model
    from hrpose.predict import Predictor

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_model(weights, device=device, backend=args.backend)
    settings, _ = resolve_inference(loaded.record.inference, args, overrides)
    return Predictor.from_loaded(loaded, params=settings, device=device)


def _evaluate_results(results: str, ann: Path, evaluator: str) -> int:
    from hrpose.evaluation.coco_eval import evaluate_keypoints

    try:
        stats, _ = evaluate_keypoints(results, ann, backend=evaluator, print_summary=True)
    except (ValueError, FileNotFoundError) as e:
        print(f"hrpose eval pose: {e}", file=sys.stderr)
        return 2
    print(f"AP {stats['AP']:.4f}")
    return 0


def evaluate_predictor(predictor, target: EvalTarget, weights: str | None = None) -> dict:
    """Predict every image of ``target``, score it, and write the results JSON, summary.txt and
    protocol.json (the settings used and the model record) to ``target.output``; the stats."""
    from hrpose.evaluation.coco_eval import evaluate_keypoints, evaluator_name
    from hrpose.evaluation.pose import image_list, predict_images, write_results
    from hrpose.evaluation.protocol import ProtocolRecord, sha256_file
    from hrpose.hub import resolve_weights

    todo = image_list(target.annotations)[: target.limit]
    out = target.output
    s = predictor.params
    print(
        f"evaluating {predictor.description} on {len(todo)} images of {target.annotations} "
        f"(input {s.input_size}, flip {s.flip}, scales {list(s.scales)}, detection threshold "
        f"{s.detection_threshold}, adjust {s.adjust}, refine {s.refine})"
    )
    t0 = time.perf_counter()
    results = predict_images(predictor, todo, target.images, progress=True)
    elapsed = time.perf_counter() - t0
    res_file = write_results(results, out / f"keypoints_{target.split}_results.json")
    stats, table = evaluate_keypoints(
        results,
        target.annotations,
        backend=target.evaluator,
        image_ids=[i for i, _ in todo],
        print_summary=True,
    )
    local = None if weights in (None, "random") else str(resolve_weights(weights, quiet=True))
    record = ProtocolRecord(
        annotation_file=str(target.annotations),
        num_images=len(todo),
        settings=s,
        model_record=predictor.record.to_dict(),
        weights=local,
        weights_sha256=sha256_file(local) if local else None,
        evaluator=evaluator_name(target.annotations, target.evaluator),
        stats=stats,
    )
    (out / "protocol.json").write_text(record.to_json())
    (out / "summary.txt").write_text(table)
    print(
        f"AP {stats['AP']:.4f} over {len(todo)} images in {elapsed:.1f} s; results {res_file}, "
        f"protocol {out / 'protocol.json'}"
    )
    return stats


def _log_mlflow(out: Path) -> None:
    import mlflow

    from hrpose.engine.tracking import default_tracking_uri

    data = json.loads((out / "protocol.json").read_text())
    mlflow.set_tracking_uri(default_tracking_uri("results"))
    mlflow.set_experiment("eval")
    with mlflow.start_run(run_name=out.name):
        mlflow.log_params(
            {
                k: json.dumps(v) if isinstance(v, list | dict) else v
                for k, v in data.items()
                if k not in ("stats", "model_record")
            }
        )
        mlflow.log_metrics(data["stats"])
        mlflow.log_artifacts(str(out))
