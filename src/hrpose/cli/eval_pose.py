"""`hrpose eval pose`: COCO keypoint AP of weights over every image of a split (or of a results
file), with the pycocotools summary table and a protocol record."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hrpose.data.coco import DatasetError, coco_paths

if TYPE_CHECKING:
    from hrpose.cli.sharded import Job

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
    workers: int | None = None  # DataLoader workers decoding ahead (None: per CPU count)


def _parser() -> argparse.ArgumentParser:
    from hrpose.cli.options import add_common, add_inference_flags

    p = argparse.ArgumentParser(
        prog="hrpose eval pose",
        allow_abbrev=False,
        description="COCO keypoint AP. Every image of the split is predicted (images without "
        "people count: false positives there lower AP). The settings come from the weights' "
        "record, then --config's inference section, then flags. The data: --annotations and "
        "--images, else --dataloader.val_ds.* (of --config or given), default data/COCO val2017. "
        "Under torchrun (--nproc-per-node=N) each rank predicts one contiguous shard of the "
        "images and rank 0 scores them all: the same table as one process.",
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
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="DataLoader workers that decode and preprocess images ahead of the network (0: "
        "in the main process; default: the CPUs per rank less one, at most 4)",
    )
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
    if args.workers is not None and args.workers < 0:
        p.error(f"--workers must be >= 0, got {args.workers}")
    if args.results:
        if int(os.environ.get("RANK", "0")) != 0:
            return 0  # scoring a file is one process's work; rank 0 does it
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
    target = EvalTarget(ann, images, out, val.split, args.limit, args.evaluator, args.workers)
    import torch

    from hrpose.cli.sharded import end_job, job_device, start_job

    device = job_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    job = start_job(torch.device(device))
    try:
        try:
            predictor = _predictor(args, overrides, weights, device)
        except (ConfigError, ValueError, RuntimeError) as e:
            print(f"hrpose eval pose: {e}", file=sys.stderr)
            return 2
        try:
            stats = evaluate_predictor(predictor, target, weights=weights, job=job)
        except DatasetError as e:
            print(f"hrpose eval pose: {e}", file=sys.stderr)
            return 1
        if args.mlflow and job.is_main:
            _log_mlflow(out)
        return 0 if stats or not job.is_main else 1
    finally:
        end_job(job)


def default_output(weights: str, annotations: Path | None, split: str) -> Path:
    """outputs/eval/<weights>-<split>, or -<folder>-<file> of an --annotations file, so that
    evaluations of two annotation files never share a folder."""
    data = f"{annotations.parent.name}-{annotations.stem}" if annotations else split
    return Path("outputs/eval") / f"{Path(str(weights)).stem}-{data}"


def _predictor(
    args: argparse.Namespace, overrides: list[str], weights: str, device: str | None = None
):
    from hrpose.cli.options import resolve_inference
    from hrpose.cli.sharded import job_device
    from hrpose.loading import load_model
    from hrpose.predict import Predictor

    device = device or job_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))

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


def evaluate_predictor(predictor, target: EvalTarget, weights: str | None = None,
                       job: Job | None = None) -> dict:  # fmt: skip
    """Predict every image of ``target``, score it, and write the results JSON, summary.txt and
    protocol.json (the settings used and the model record) to ``target.output``; the stats.

    In a sharded ``job`` each rank predicts one contiguous shard (:func:`hrpose.sharding.shard`:
    no padding, no duplicates); the results are gathered in rank order, which is the image
    order, and rank 0 scores them: the same stats, bit for bit, as one process. The other ranks
    return an empty dict."""
    from hrpose.cli.sharded import Job, JobProgress, default_workers
    from hrpose.engine import distributed as dist_utils
    from hrpose.evaluation.coco_eval import evaluate_keypoints, evaluator_name
    from hrpose.evaluation.pose import image_list, write_results
    from hrpose.evaluation.protocol import ProtocolRecord, sha256_file
    from hrpose.hub import resolve_weights
    from hrpose.sharding import shard

    job = job or Job()
    todo = image_list(target.annotations)[: target.limit]
    mine = shard(todo, job.rank, job.world_size)
    out = target.output
    s = predictor.params
    ranks = f" over {job.world_size} ranks" if job.sharded else ""
    if job.is_main:
        print(
            f"evaluating {predictor.description} on {len(todo)} images of {target.annotations}"
            f"{ranks} (input {s.input_size}, flip {s.flip}, scales {list(s.scales)}, detection "
            f"threshold {s.detection_threshold}, adjust {s.adjust}, refine {s.refine})"
        )
    workers = default_workers(job) if target.workers is None else target.workers
    dist_utils.barrier()  # the clock starts when every rank has its model
    t0 = time.perf_counter()
    bar = JobProgress(job, len(todo), "evaluating", "img", summary=True)
    failed, results = _predict_shard(predictor, mine, target.images, workers, bar)
    parts = dist_utils.gather_objects((failed, results))
    failed = next((f for f, _ in parts if f), None)  # type: ignore[misc]
    if failed:
        raise DatasetError(f"image file missing, unreadable or corrupt: {failed}")
    results = [r for _, part in parts for r in part]  # type: ignore[misc]
    elapsed = time.perf_counter() - t0
    if not job.is_main:
        return {}
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
        world_size=job.world_size,
        stats=stats,
    )
    (out / "protocol.json").write_text(record.to_json())
    (out / "summary.txt").write_text(table)
    print(
        f"AP {stats['AP']:.4f} over {len(todo)} images{ranks} in {elapsed:.1f} s; results "
        f"{res_file}, protocol {out / 'protocol.json'}"
    )
    return stats


def _predict_shard(predictor, images: list[tuple[int, str]], images_dir: Path, workers: int,
                   bar) -> tuple[str | None, list[dict]]:  # fmt: skip
    """(the first unreadable image or None, COCO results) of one rank's images, decoded and
    preprocessed by ``workers`` DataLoader workers ahead of the network."""
    from hrpose.evaluation.coco_results import people_to_coco
    from hrpose.overlap import prepared_images

    s = predictor.params
    sources = [str(Path(images_dir) / name) for _, name in images]
    results: list[dict] = []
    failed = None
    try:
        for item in prepared_images(sources, s.input_size, s.scales, workers):
            if item.error is not None:
                failed = item.error  # reported after the gather, so no rank waits for ever
                break
            people = predictor.predict_prepared([item.prepared])[0].people
            results += people_to_coco(people, images[item.index][0])
            bar.update()
        bar.finish()
    finally:
        bar.close()
    return failed, results


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
