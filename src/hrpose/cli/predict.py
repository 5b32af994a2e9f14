"""`hrpose predict SOURCE`: people on an image, a folder, a video file or a camera."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hrpose.skeleton import KeypointSpec
from hrpose.viz.draw import JOINT_THRESHOLD, LIMB_RATIO, PERSON_THRESHOLD
from hrpose.viz.video import VideoError

CALIBRATION_IMAGES = 8  # --precision int8: images (or video frames) of the sources calibrated on


@dataclass(frozen=True)
class PredictOptions:
    """What a predict run draws and writes besides predictions.json (drawing only: the decoded
    people are the model's settings' business)."""

    person_threshold: float = PERSON_THRESHOLD
    joint_threshold: float = JOINT_THRESHOLD
    limb_ratio: float = LIMB_RATIO
    heatmaps: bool = False
    tags: bool = False
    smooth: bool = False
    max_frames: int | None = None
    batch_frames: int | None = None
    ground_truth: str | None = None  # a COCO keypoints file: also write *_vs_gt.jpg panels
    resume: bool = False  # skip the images and videos predictions*.jsonl already hold
    workers: int | None = None  # decoding workers ahead of the network (None: per CPU count)

    def drawing(self) -> dict:
        """The thresholds as draw_people and drawn_joints take them."""
        return {
            "joint_threshold": self.joint_threshold,
            "person_threshold": self.person_threshold,
            "limb_ratio": self.limb_ratio,
        }


def _parser() -> argparse.ArgumentParser:
    from hrpose.cli.options import add_common, add_inference_flags

    p = argparse.ArgumentParser(
        prog="hrpose predict",
        allow_abbrev=False,
        description="Multi-person poses on images, folders, video files, list files or a "
        "camera (an integer index). Writes annotated images / H.264 videos, predictions.jsonl "
        "(a line per finished image and video frame, flushed at once), one COCO-style "
        "predictions.json and settings.json (the model record and the settings used) per run. "
        "The settings come from the model file's record, then --config's inference section, "
        "then flags. Under torchrun (--nproc-per-node=N) each rank predicts its share (a video "
        "never split) and rank 0 merges the outputs.",
    )
    p.add_argument(
        "sources",
        nargs="+",
        metavar="source",
        help="image, folder (its images and videos), video file, http(s) URL, @list.txt (one "
        "path or URL a line), or a camera index (e.g. 0, alone)",
    )
    add_common(
        p,
        "checkpoint (official, mmpose 0.x or hrpose), .onnx, an http(s) URL, a registered "
        "name (hrpose weights list) or 'random'; default: inference.ckpt_path of --config, else "
        "the default registered COCO model (downloaded on first use)",
        "outputs/predict",
    )
    p.add_argument(
        "--backend",
        default=None,
        choices=["torch", "onnxruntime"],
        help="default: from the file (.onnx -> onnxruntime); a mismatch is an error",
    )
    add_inference_flags(p)
    d = p.add_argument_group("drawing (predictions.json keeps everyone)")
    d.add_argument(
        "--person-threshold",
        type=float,
        default=PERSON_THRESHOLD,
        help=f"draw only people with at least this score (default {PERSON_THRESHOLD})",
    )
    d.add_argument(
        "--joint-threshold",
        type=float,
        default=JOINT_THRESHOLD,
        help=f"draw only joints with at least this score (default {JOINT_THRESHOLD})",
    )
    d.add_argument(
        "--limb-ratio",
        type=float,
        default=LIMB_RATIO,
        help="draw no limb longer than this many times the reference limb length, nor a "
        "joint whose limbs all are (joints grouped into the wrong person); 'inf' draws "
        f"all (default {LIMB_RATIO})",
    )
    p.add_argument(
        "--ground-truth",
        metavar="ANNOTATIONS.json",
        help="images: also write <name>_vs_gt.jpg, prediction beside the annotated "
        "skeletons of this COCO keypoints file",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="skip the images and finished videos that predictions.jsonl (and a sharded "
        "run's predictions.rank*.jsonl) already hold, kept on Ctrl-C, SIGTERM or a crash; a "
        "video cut short is redone; predictions.json is assembled from the lines",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="DataLoader workers that decode and preprocess images ahead of the network, with "
        "drawing and writing on a thread behind it; 0: everything in turn on one thread (the "
        "old path); default: the CPUs per rank less one, at most 4",
    )
    p.add_argument("--heatmaps", action="store_true", help="also write a per-joint heatmap grid")
    p.add_argument("--tags", action="store_true", help="also write a tag-embedding plot")
    p.add_argument("--smooth", action="store_true", help="video: One-Euro smoothing per person")
    p.add_argument("--max-frames", type=int, default=None, help="video/camera: stop after N")
    p.add_argument(
        "--batch-frames",
        type=int,
        default=None,
        metavar="N",
        help="video: frames per network batch, same people as one at a time (default per "
        "device: 1 on CPU, where batching was slower, 8 on CUDA; a camera defaults to 1, as a "
        "batch waits for N frames)",
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="the opt-in fast path for this device (today torch.compile in fp32: compiling "
        "takes minutes, so it pays on videos and folders; keypoints equal to fp32)",
    )
    p.add_argument(
        "--precision",
        choices=["fp32", "bf16", "fp16", "int8"],
        default=None,
        help="autocast precision; int8: a quick look at INT8, quantized on the fly (calibrated "
        f"on the first {CALIBRATION_IMAGES} images or video frames of the sources; keep a file "
        "with `hrpose quantize` instead)",
    )
    return p


def build_predictor(args: argparse.Namespace, overrides: list[str]):
    """The model of --weights (or the config's inference.ckpt_path, else the default registered
    model) with its record's settings, overridden by --config's inference section and flags."""
    from hrpose.cli.options import command_config, resolve_inference
    from hrpose.cli.sharded import job_device
    from hrpose.config.schema import PoseTrainConfig
    from hrpose.hub import DEFAULT_POSE
    from hrpose.loading import load_model
    from hrpose.predict import Predictor, fast_options

    cfg = command_config(PoseTrainConfig, args, overrides)
    weights = args.weights or cfg.inference.ckpt_path
    if not weights:
        weights = DEFAULT_POSE
        print(f"no --weights: using the default registered model {weights} (`hrpose weights list`)")
    device = job_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))
    loaded = load_model(weights, device=device, backend=args.backend)
    settings, source = resolve_inference(loaded.record.inference, args, overrides)
    if args.precision == "int8" and loaded.record.precision != "int8":
        loaded = _quantize_on_the_fly(loaded, settings, args.sources, device)
    kw: dict = {"params": settings, "device": device}
    if args.fast:
        kw.update(fast_options(device))
    if args.precision:
        kw["precision"] = args.precision
    return Predictor.from_loaded(loaded, **kw), source


def calibration_frames(sources: Sequence[str], n: int = CALIBRATION_IMAGES) -> list[np.ndarray]:
    """The first ``n`` readable images or video frames of the sources (URLs and unreadable
    files left out: the run itself reports those), for ``--precision int8``."""
    from hrpose.cli.predict_sources import expand_sources
    from hrpose.data.images import ImageReadError, read_image
    from hrpose.overlap import is_url
    from hrpose.viz.video import read_video

    if any(s.isdigit() for s in sources):
        raise ValueError(
            "--precision int8 calibrates on the sources, and a camera gives none up front: "
            "quantize first (hrpose quantize --weights W --calibration DIR --output W-int8.onnx) "
            "and pass --weights W-int8.onnx"
        )
    frames: list[np.ndarray] = []
    for item in expand_sources(sources):
        if len(frames) >= n:
            break
        if is_url(item.source):
            continue
        try:
            if item.kind == "video":
                for frame in read_video(item.source):
                    frames.append(frame)
                    if len(frames) >= n:
                        break
            else:
                frames.append(read_image(item.source))
        except (ImageReadError, VideoError):
            continue
    if not frames:
        raise ValueError(
            "--precision int8: no readable local image or video frame among the sources to "
            "calibrate on; quantize first with hrpose quantize --calibration DIR"
        )
    return frames


def _quantize_on_the_fly(loaded, settings, sources: Sequence[str], device):
    """``loaded`` quantized to INT8 (a temporary file, read into the session), calibrated on
    the sources' first images; its description says so."""
    import tempfile

    from hrpose.loading import load_model
    from hrpose.quantize import quantize_model

    frames = calibration_frames(sources)
    record = loaded.record.with_inference(settings)
    print(f"--precision int8: quantizing {loaded.description} on {len(frames)} image(s) of the "
          "sources (hrpose quantize keeps a file to reuse)")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="hrpose-int8-") as tmp:
        path = quantize_model(loaded.network, record, frames, Path(tmp) / "int8.onnx")
        int8 = load_model(path, device=device)
    int8.description = f"{loaded.description}, INT8 quantized on the fly ({len(frames)} images)"
    int8.path = loaded.path
    return int8


def _options(args: argparse.Namespace) -> PredictOptions:
    return PredictOptions(
        args.person_threshold, args.joint_threshold, args.limb_ratio, args.heatmaps, args.tags,
        args.smooth, args.max_frames, args.batch_frames, args.ground_truth, args.resume,
        args.workers,
    )  # fmt: skip


def image_ids(paths: list[Path]) -> list[int]:
    """COCO image ids of a run's images: a digit-named file keeps its number (COCO's names), the
    others get numbers above every such one, in order, so no two images share an id."""
    numbered = [int(p.stem) for p in paths if p.stem.isdigit()]
    nxt = max(numbered, default=-1) + 1
    out = []
    for p in paths:
        if p.stem.isdigit():
            out.append(int(p.stem))
        else:
            out.append(nxt)
            nxt += 1
    return out


def main(argv: list[str]) -> int:
    from hrpose.cli.options import parse
    from hrpose.cli.sharded import end_job, job_device, start_job
    from hrpose.config.load import ConfigError
    from hrpose.models import WeightsError

    p = _parser()
    args, overrides = parse(p, argv, ("inference",))
    if args.batch_frames is not None and args.batch_frames < 1:
        raise SystemExit(f"hrpose predict: --batch-frames must be >= 1, got {args.batch_frames}")
    if args.workers is not None and args.workers < 0:
        raise SystemExit(f"hrpose predict: --workers must be >= 0, got {args.workers}")
    _check_sources(args.sources)
    import torch

    job = start_job(torch.device(job_device(args.device, int(os.environ.get("LOCAL_RANK", "0")))))
    try:
        try:
            predictor, source = build_predictor(args, overrides)
        except (ConfigError, WeightsError, ValueError, RuntimeError) as e:
            print(f"hrpose predict: {e}", file=sys.stderr)
            return 2
        return run_predict(predictor, args.sources, Path(args.output), _options(args), source,
                           job=job)  # fmt: skip
    finally:
        end_job(job)


def _check_sources(sources: Sequence[str]) -> None:
    """A camera index stands alone; the other sources must exist (named before any loading)."""
    from hrpose.cli.predict_sources import expand_sources

    cameras = [s for s in sources if s.isdigit()]
    if cameras and len(sources) > 1:
        raise SystemExit("hrpose predict: a camera index is a source of its own; give it alone")
    if not cameras:
        expand_sources(sources)


class Stopped(KeyboardInterrupt):
    """SIGTERM (a scheduler ending the job): stop as Ctrl-C does, keeping what is finished."""


def _stop(signum: int, frame: object) -> None:
    raise Stopped


def run_predict(
    predictor,
    sources: str | Sequence[str],
    out: Path,
    options: PredictOptions,
    set_by: dict | None = None,
    job=None,
) -> int:
    """Predict on images, folders, videos, list files or a camera index; write the drawings,
    predictions.jsonl, predictions.json and settings.json to ``out``. In a sharded ``job``
    (:func:`hrpose.cli.sharded.start_job`) each rank takes its share and rank 0 merges the
    outputs. Returns the exit status."""
    from hrpose.cli.predict_sources import expand_sources
    from hrpose.cli.sharded import Job

    job = job or Job()
    sources = [sources] if isinstance(sources, str) else list(sources)
    camera = len(sources) == 1 and sources[0].isdigit()
    if camera and job.sharded:
        print("hrpose predict: a camera is one process's source; run it without torchrun",
              file=sys.stderr)  # fmt: skip
        return 2
    items = [] if camera else expand_sources(sources)
    if not camera and not items:
        print(f"hrpose predict: no images or videos in {' '.join(sources)}", file=sys.stderr)
        return 1
    gt = _ground_truth(options.ground_truth) if options.ground_truth else None
    if gt and next(iter(gt.values())).keypoints.shape[1] != predictor.spec.num_joints:
        k = next(iter(gt.values())).keypoints.shape[1]
        print(f"hrpose predict: --ground-truth has {k} keypoints per person but the model "
              f"predicts {predictor.spec.num_joints}; give the annotations of its keypoint set",
              file=sys.stderr)  # fmt: skip
        return 2
    out.mkdir(parents=True, exist_ok=True)
    if job.is_main:
        write_settings(out / "settings.json", predictor, options, set_by)
        dp = predictor.params
        ranks = f" on {job.world_size} ranks" if job.sharded else ""
        print(
            f"model: {predictor.description}; input {dp.input_size}, flip {dp.flip}, "
            f"detection threshold {dp.detection_threshold}, tag threshold {dp.tag_threshold}, "
            f"max people {dp.max_people}, adjust {dp.adjust}, refine {dp.refine}; drawing "
            f"people with score >= {options.person_threshold} and joints >= "
            f"{options.joint_threshold}, limbs up to {options.limb_ratio}x the reference; "
            f"writing to {out}{ranks}"
        )
    previous = signal.signal(signal.SIGTERM, _stop)
    try:
        if camera:
            from hrpose.cli.predict_video import camera as run_camera

            return run_camera(predictor, int(sources[0]), out, options)
        return _run_items(predictor, items, out, options, gt, job)
    finally:
        signal.signal(signal.SIGTERM, previous)


def write_settings(path: Path, predictor, options: PredictOptions, set_by: dict | None) -> None:
    """settings.json: the resolved model record, the settings used and where each came from."""
    record = predictor.record.to_dict()
    doc = {
        "model": predictor.description,
        "model_record": record,
        "settings": record["inference"],
        "set_by": set_by or {},
        "precision": predictor.precision,
        "device": str(predictor.device),
        "drawing": asdict(options),
    }
    path.write_text(json.dumps(doc, indent=2))


def _ground_truth(path: str) -> dict:
    """file name -> People (annotated joints score 1, unlabelled 0) from a COCO keypoints file."""
    from hrpose.structures import People

    try:
        data = json.loads(Path(path).read_text())
        names = {im["id"]: im["file_name"] for im in data["images"]}
        anns = [a for a in data["annotations"] if a.get("num_keypoints", 1) > 0]
        k = len(data["categories"][0]["keypoints"])
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise SystemExit(
            f"hrpose predict: --ground-truth {path}: not a readable COCO keypoints file ({e}); "
            "give the person_keypoints JSON of the images"
        ) from e
    per_image: dict = {image_id: [] for image_id in names}
    for a in anns:
        per_image.setdefault(a["image_id"], []).append(a["keypoints"])
    out: dict = {}
    for image_id, name in names.items():
        kp = per_image[image_id]
        arr = np.array(kp, np.float32).reshape(len(kp), k, 3)
        arr[:, :, 2] = arr[:, :, 2] > 0
        out[Path(name).name] = People(
            arr, np.ones(len(kp), np.float32), np.zeros_like(arr[..., :1])
        )
    return out


def result_rows(
    people, file_name: str, image_id: int, frame: int | None = None, ids: np.ndarray | None = None
) -> list[dict]:
    """COCO result rows of one image or video frame, with its file name (and frame and track
    ids for a video)."""
    from hrpose.evaluation.coco_results import people_to_coco

    rows = people_to_coco(people, image_id)
    for i, r in enumerate(rows):
        r["file_name"] = file_name
        if frame is not None:
            r["frame"] = frame
        if ids is not None:
            r["track_id"] = int(ids[i])
    return rows


def _extras(
    pred, image: np.ndarray, stem: str, out: Path, options: PredictOptions, spec: KeypointSpec
) -> None:
    import cv2

    from hrpose.viz.draw import heatmap_grid, tag_plot

    if options.heatmaps and pred.outputs:
        k = pred.people.keypoints.shape[1] if len(pred.people) else pred.outputs[-1].shape[1]
        heat = pred.outputs[-1][0, :k].cpu().numpy()
        # through the input's affine (undoing its padding), so peaks sit on their pixels
        grid = heatmap_grid(image, heat, _names(k, spec), tile=240, transform=pred.transform)
        cv2.imwrite(str(out / f"{stem}_heatmaps.jpg"), grid[:, :, ::-1])
    if options.tags:
        k = pred.people.keypoints.shape[1]
        plot = tag_plot(pred.people, _names(k, spec), person_threshold=options.person_threshold,
                        joint_threshold=options.joint_threshold)  # fmt: skip
        cv2.imwrite(str(out / f"{stem}_tags.png"), plot[:, :, ::-1])


def _names(k: int, spec: KeypointSpec) -> list[str]:
    return list(spec.names) if k == spec.num_joints else [f"joint {i}" for i in range(k)]


def _count(people, spec: KeypointSpec, options: PredictOptions) -> int:
    """How many of the people are drawn with the run's thresholds."""
    from hrpose.viz.draw import drawn_joints

    if len(people) == 0:
        return 0
    return int(drawn_joints(people, spec=spec, **options.drawing()).any(axis=1).sum())


def _panel(image: np.ndarray, people, truth, spec, options: PredictOptions) -> np.ndarray:
    """Prediction | ground truth; an annotated person takes the number and colour of the drawn
    person that matches it best (OKS >= 0.5), the others numbers of their own."""
    from hrpose.tracking import oks
    from hrpose.viz.draw import draw_people, drawn_joints, side_by_side

    shown = drawn_joints(people, spec=spec, **options.drawing()).any(axis=1)
    ids = np.cumsum(shown) - 1  # the drawn people's numbers, in the colours of *_pose.jpg
    sim = oks(people.keypoints[shown], truth.keypoints, spec.sigmas, threshold=0.5)
    best = sim.argmax(axis=0) if sim.size else np.zeros(len(truth), int)
    hit = sim.max(axis=0) >= 0.5 if sim.size else np.zeros(len(truth), bool)
    truth_ids = np.where(hit, best, int(shown.sum()) + np.cumsum(~hit) - 1)
    left = draw_people(image, people, spec, ids, **options.drawing())
    right = draw_people(image, truth, spec, truth_ids, 0.5, person_threshold=0.0,
                        limb_ratio=np.inf)  # fmt: skip
    return side_by_side(
        [left, right],
        [f"prediction: {int(shown.sum())} of {len(people)} decoded people drawn",
         f"ground truth: {len(truth)} annotated, {int(hit.sum())} matched"],
    )  # fmt: skip


@dataclass
class RunCounts:
    """What one rank did (summed over ranks for the summary)."""

    images: int = 0
    videos: int = 0
    frames: int = 0
    decoded: int = 0  # people on images (a video's are in its own line)
    drawn: int = 0
    panels: int = 0
    failed: list[str] = field(default_factory=list)


def _weights(items: list, max_frames: int | None) -> list[int]:
    """Work per item for the shards and the bar: 1 an image, its frame count a video (1 when
    unknown or unreadable: the error is reported when it is predicted)."""
    from hrpose.viz.video import video_info

    out = []
    for it in items:
        frames = 1
        if it.kind == "video":
            try:
                frames = video_info(it.source)[1] or 1
            except VideoError:
                frames = 1
            frames = min(frames, max_frames) if max_frames else frames
        out.append(max(1, frames))
    return out


def _run_items(predictor, items: list, out: Path, options: PredictOptions, gt: dict | None,
               job) -> int:  # fmt: skip
    """This rank's share of ``items``: images (decoded ahead by workers), then videos, each
    logged when finished; at the end rank 0 merges every rank's log into predictions.json."""
    from hrpose.cli.predict_video import video_item
    from hrpose.cli.sharded import JobProgress, default_workers
    from hrpose.engine import distributed as dist_utils
    from hrpose.evaluation.pose import write_results
    from hrpose.evaluation.prediction_log import (
        LOG_NAME,
        Finished,
        PredictionLog,
        clear_logs,
        logs_in,
        merge_logs,
        rank_log_name,
        read_log,
        read_logs,
    )  # fmt: skip
    from hrpose.overlap import WriteBehind
    from hrpose.sharding import shard

    weights = _weights(items, options.max_frames)
    image_items = [it for it in items if it.kind == "image"]
    ids = dict(zip([it.name for it in image_items],
                   image_ids([Path(it.name) for it in image_items]), strict=True))  # fmt: skip
    # Rank 0 settles the earlier run's logs into predictions.jsonl (or removes them) while the
    # others wait; then every rank reads the same finished set and writes a log of its own.
    if job.is_main:
        if options.resume:
            merge_logs(out)
        else:
            clear_logs(out)
        # assembled again at the end: a stale one must not pass for this run's
        (out / "predictions.json").unlink(missing_ok=True)
    dist_utils.barrier()
    finished = read_log(out / LOG_NAME) if options.resume else Finished()
    log = PredictionLog(out / (rank_log_name(job.rank) if job.sharded else LOG_NAME),
                        keep=None if job.sharded else finished)  # fmt: skip
    mine = shard(items, job.rank, job.world_size, weights)
    todo = [it for it in mine if it.name not in finished]
    done_before = sum(w for it, w in zip(items, weights, strict=True) if it.name in finished)
    n_done = sum(it.name in finished for it in items)
    if n_done and job.is_main:
        print(f"--resume: {n_done} of {len(items)} image(s)/video(s) already done in "
              f"{out / LOG_NAME}")  # fmt: skip
    has_video = any(it.kind == "video" for it in items)
    bar = JobProgress(job, sum(weights), "predicting", "frame" if has_video else "img",
                      initial=done_before, enabled=sum(weights) > 1)  # fmt: skip
    workers = default_workers(job) if options.workers is None else options.workers
    writer = WriteBehind(enabled=workers > 0)
    counts = RunCounts()
    dist_utils.barrier()  # the clock starts when every rank has its model and its share
    t0 = time.perf_counter()
    try:
        _image_share(predictor, [it for it in todo if it.kind == "image"], ids, out, options, gt,
                     log, writer, bar, counts, workers, single=len(items) == 1)  # fmt: skip
        for it in (it for it in todo if it.kind == "video"):
            video_item(predictor, it.source, it.name, out, options, log, writer, bar, counts,
                       read_ahead_frames=workers > 0)  # fmt: skip
        writer.close()
        bar.finish()
    except KeyboardInterrupt:
        writer.close()  # the drawings already queued are finished work: keep them
        bar.close()
        log.close()
        if not job.sharded:  # what is finished, and the frames of a video cut short
            kept = read_logs(logs_in(out))
            write_results(kept.rows([it.name for it in items]) + kept.partial_rows(),
                          out / "predictions.json")  # fmt: skip
        print(
            f"stopped by {'SIGTERM' if isinstance(sys.exc_info()[1], Stopped) else 'Ctrl-C'}: "
            f"{log.added} image(s)/video(s) finished here are kept in {log.path}; rerun the same "
            "command with --resume to finish",
            file=sys.stderr,
        )
        return 130
    finally:
        writer.close()
        log.close()
    elapsed = time.perf_counter() - t0
    names = ("images", "videos", "frames", "decoded", "drawn", "panels")
    totals = dist_utils.reduce_sum({k: getattr(counts, k) for k in names})
    failed = [f for part in dist_utils.gather_objects(counts.failed) for f in part]  # type: ignore[union-attr]
    dist_utils.barrier()  # every rank's log is complete
    if not job.is_main:
        return 1 if failed else 0
    kept = merge_logs(out).rows([it.name for it in items])
    write_results(kept, out / "predictions.json")
    if image_items:
        n = int(totals["images"])
        panels = int(totals["panels"])
        extra = f", {panels} prediction | ground truth panels *_vs_gt.jpg" if gt else ""
        ranks = f" on {job.world_size} ranks" if job.sharded else ""
        print(
            f"{n} image(s) -> {out}: {int(totals['decoded'])} people decoded, "
            f"{int(totals['drawn'])} drawn (score >= {options.person_threshold}, joints >= "
            f"{options.joint_threshold}) on *_pose.jpg{extra}; predictions.json keeps all "
            f"{len(kept)}; {elapsed:.1f} s{ranks} ({n / max(elapsed, 1e-9):.2f} img/s)"
        )
    if failed:
        print(f"{len(failed)} failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


def _image_share(predictor, todo: list, ids: dict, out: Path, options: PredictOptions,
                 gt: dict | None, log, writer, bar, counts: RunCounts, workers: int,
                 single: bool) -> None:  # fmt: skip
    """Predict ``todo`` images: decoded and prepared ahead by ``workers``, drawn and logged
    behind by ``writer``."""
    from hrpose.overlap import prepared_images

    s = predictor.params
    loaded = prepared_images([it.source for it in todo], s.input_size, s.scales, workers)
    for item in loaded:
        it = todo[item.index]
        if item.error is not None:
            counts.failed.append(item.error)
            print(f"skipped {item.error}", file=sys.stderr)
            bar.update()
            continue
        pred = predictor.predict_prepared([item.prepared])[0]
        writer.submit(_finish_image, predictor, pred, item.image, it.name, ids[it.name], out,
                      options, gt, log, counts, single)  # fmt: skip
        bar.update()


def _finish_image(predictor, pred, image: np.ndarray, name: str, image_id: int, out: Path,
                  options: PredictOptions, gt: dict | None, log, counts: RunCounts,
                  single: bool) -> None:  # fmt: skip
    """Draw and write one image's outputs, then log it (finished only once written)."""
    import cv2

    from hrpose.viz.draw import draw_people

    stem = Path(name).stem
    pose = draw_people(image, pred.people, predictor.spec, **options.drawing())
    cv2.imwrite(str(out / f"{stem}_pose.jpg"), pose[:, :, ::-1])
    if gt is not None and name in gt:
        panel = _panel(image, pred.people, gt[name], predictor.spec, options)
        cv2.imwrite(str(out / f"{stem}_vs_gt.jpg"), panel[:, :, ::-1])
        counts.panels += 1
    _extras(pred, image, stem, out, options, predictor.spec)
    log.add(name, result_rows(pred.people, name, image_id))
    shown = _count(pred.people, predictor.spec, options)
    counts.images += 1
    counts.decoded += len(pred.people)
    counts.drawn += shown
    if single:
        print(f"{name}: {len(pred.people)} people decoded, {shown} drawn")
