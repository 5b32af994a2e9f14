"""`hrpose predict SOURCE`: people on an image, a folder, a video file or a camera."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from hrpose.data.images import ImageReadError, list_images, read_image
from hrpose.skeleton import KeypointSpec
from hrpose.viz.draw import JOINT_THRESHOLD, LIMB_RATIO, PERSON_THRESHOLD
from hrpose.viz.video import VIDEO_SUFFIXES, VideoError


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
    resume: bool = False  # images: skip those predictions.jsonl of an earlier run holds

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
        description="Multi-person poses on an image, a folder of images, a video file or a "
        "camera (an integer index). Writes annotated images / an H.264 video, one COCO-style "
        "predictions.json and settings.json (the model record and the settings used) per run. "
        "The settings come from the model file's record, then --config's inference section, "
        "then flags.",
    )
    p.add_argument("source", help="image, folder, video file, or camera index (e.g. 0)")
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
        help="images and folders: skip the images predictions.jsonl (one line per finished "
        "image, kept on Ctrl-C or a crash) already holds; predictions.json is assembled from it",
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
        "--precision", choices=["fp32", "bf16", "fp16"], default=None, help="autocast precision"
    )
    return p


def build_predictor(args: argparse.Namespace, overrides: list[str]):
    """The model of --weights (or the config's inference.ckpt_path, else the default registered
    model) with its record's settings, overridden by --config's inference section and flags."""
    import torch

    from hrpose.cli.options import command_config, resolve_inference
    from hrpose.config.schema import PoseTrainConfig
    from hrpose.hub import DEFAULT_POSE
    from hrpose.loading import load_model
    from hrpose.predict import Predictor, fast_options

    cfg = command_config(PoseTrainConfig, args, overrides)
    weights = args.weights or cfg.inference.ckpt_path
    if not weights:
        weights = DEFAULT_POSE
        print(f"no --weights: using the default registered model {weights} (`hrpose weights list`)")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = load_model(weights, device=device, backend=args.backend)
    settings, source = resolve_inference(loaded.record.inference, args, overrides)
    kw: dict = {"params": settings, "device": device}
    if args.fast:
        kw.update(fast_options(device))
    if args.precision:
        kw["precision"] = args.precision
    return Predictor.from_loaded(loaded, **kw), source


def _options(args: argparse.Namespace) -> PredictOptions:
    return PredictOptions(
        args.person_threshold, args.joint_threshold, args.limb_ratio, args.heatmaps, args.tags,
        args.smooth, args.max_frames, args.batch_frames, args.ground_truth, args.resume,
    )  # fmt: skip


def _kind(source: str) -> str:
    if source.isdigit():
        return "camera"
    path = Path(source)
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise SystemExit(f"hrpose predict: {source}: no such file, folder or camera index")
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


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
    from hrpose.config.load import ConfigError
    from hrpose.models import WeightsError

    p = _parser()
    args, overrides = parse(p, argv, ("inference",))
    if args.batch_frames is not None and args.batch_frames < 1:
        raise SystemExit(f"hrpose predict: --batch-frames must be >= 1, got {args.batch_frames}")
    _kind(args.source)
    try:
        predictor, source = build_predictor(args, overrides)
    except (ConfigError, WeightsError, ValueError, RuntimeError) as e:
        print(f"hrpose predict: {e}", file=sys.stderr)
        return 2
    return run_predict(predictor, args.source, Path(args.output), _options(args), source)


def run_predict(
    predictor, source: str, out: Path, options: PredictOptions, set_by: dict | None = None
) -> int:
    """Predict on an image, folder, video or camera index; write the drawings,
    predictions.json and settings.json to ``out``. Returns the exit status."""
    kind = _kind(source)
    gt = _ground_truth(options.ground_truth) if options.ground_truth else None
    if gt and next(iter(gt.values())).keypoints.shape[1] != predictor.spec.num_joints:
        k = next(iter(gt.values())).keypoints.shape[1]
        print(f"hrpose predict: --ground-truth has {k} keypoints per person but the model "
              f"predicts {predictor.spec.num_joints}; give the annotations of its keypoint set",
              file=sys.stderr)  # fmt: skip
        return 2
    out.mkdir(parents=True, exist_ok=True)
    write_settings(out / "settings.json", predictor, options, set_by)
    dp = predictor.params
    print(
        f"model: {predictor.description}; input {dp.input_size}, flip {dp.flip}, "
        f"detection threshold {dp.detection_threshold}, tag threshold {dp.tag_threshold}, "
        f"max people {dp.max_people}, adjust {dp.adjust}, refine {dp.refine}; drawing people "
        f"with score >= {options.person_threshold} and joints >= {options.joint_threshold}, "
        f"limbs up to {options.limb_ratio}x the reference; writing to {out}"
    )
    if kind in ("image", "folder"):
        paths = [Path(source)] if kind == "image" else list_images(source)
        return _images(predictor, paths, out, options, gt)
    try:
        return _video(predictor, source, kind, out, options)
    except VideoError as e:
        print(f"hrpose predict: {e}", file=sys.stderr)
        return 1


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


def _results(
    people, file_name: str, image_id: int, frame: int | None = None, ids: np.ndarray | None = None
) -> list[dict]:
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


def _images(
    predictor, paths: list[Path], out: Path, options: PredictOptions, gt: dict | None = None
) -> int:
    import cv2

    from hrpose.evaluation.prediction_log import PredictionLog
    from hrpose.progress import ProgressBar
    from hrpose.viz.draw import draw_people

    failed: list[str] = []
    decoded = drawn = panels = 0
    thresholds = options.drawing()
    ids = image_ids(paths)
    log = PredictionLog(out / "predictions.jsonl", resume=options.resume)
    todo = [(n, p) for n, p in enumerate(paths) if p.name not in log]
    if len(todo) < len(paths):
        print(f"--resume: {len(paths) - len(todo)} image(s) already done in {log.path}")
    # a bar on a terminal; in a log nothing until the summary line below (no redraws)
    bar = ProgressBar(len(todo), "predicting", "img", enabled=len(todo) > 1, summary=False)
    try:
        for n, path in todo:
            bar.update()
            try:
                image = read_image(path)
            except ImageReadError as e:
                failed.append(str(e))
                print(f"skipped {e}", file=sys.stderr)
                continue
            pred = predictor.predict(image)
            pose = draw_people(image, pred.people, predictor.spec, **thresholds)
            cv2.imwrite(str(out / f"{path.stem}_pose.jpg"), pose[:, :, ::-1])
            if gt is not None and path.name in gt:
                panel = _panel(image, pred.people, gt[path.name], predictor.spec, options)
                cv2.imwrite(str(out / f"{path.stem}_vs_gt.jpg"), panel[:, :, ::-1])
                panels += 1
            _extras(pred, image, path.stem, out, options, predictor.spec)
            log.add(path.name, _results(pred.people, path.name, ids[n]))
            decoded += len(pred.people)
            shown = _count(pred.people, predictor.spec, options)
            drawn += shown
            if len(paths) == 1:
                print(f"{path.name}: {len(pred.people)} people decoded, {shown} drawn")
    except KeyboardInterrupt:
        print(
            f"stopped by Ctrl-C: {len(log.done)} of {len(paths)} image(s) done are kept in "
            f"{log.path}; rerun the same command with --resume to finish",
            file=sys.stderr,
        )
        return 130
    finally:
        bar.close()
        log.close()
        kept = log.rows([p.name for p in paths])
        (out / "predictions.json").write_text(json.dumps(kept))
    done = len(todo) - len(failed)
    extra = f", {panels} prediction | ground truth panels *_vs_gt.jpg" if gt is not None else ""
    print(
        f"{done} image(s) -> {out}: {decoded} people decoded, {drawn} drawn (score >= "
        f"{options.person_threshold}, joints >= {options.joint_threshold}) on *_pose.jpg{extra}; "
        f"predictions.json keeps all {len(kept)}"
    )
    if failed:
        print(f"{len(failed)} failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


def _predicted(predictor, frames: Iterable[np.ndarray], batch: int, max_frames: int | None):
    """(frame, Prediction) in frame order, ``batch`` frames per network call (fewer at the end)."""
    chunk: list[np.ndarray] = []
    for n, frame in enumerate(frames):
        if max_frames and n >= max_frames:
            break
        chunk.append(frame)
        if len(chunk) >= batch:
            yield from zip(chunk, predictor.predict_batch(chunk), strict=True)
            chunk = []
    if chunk:
        yield from zip(chunk, predictor.predict_batch(chunk), strict=True)


def _video(predictor, source: str, kind: str, out: Path, options: PredictOptions) -> int:
    from hrpose.predict import default_batch_frames
    from hrpose.progress import ProgressBar
    from hrpose.tracking import PoseTracker, Smoother
    from hrpose.viz.draw import draw_people, drawn_joints
    from hrpose.viz.video import VideoWriter, read_camera, read_video, video_info

    if kind == "camera":
        frames, fps, total, stem = (
            read_camera(int(source), options.max_frames),
            15.0,
            None,
            f"camera{source}",
        )
    else:
        fps, total = video_info(source)
        frames, stem = read_video(source), Path(source).stem
        if options.max_frames:
            total = min(total or options.max_frames, options.max_frames)
    tracker = PoseTracker(predictor.spec.sigmas)
    smoother = Smoother(fps) if options.smooth else None
    rows: list[dict] = []
    decoded = drawn = 0
    drawn_ids: set[int] = set()
    video_path = out / f"{stem}_pose.mp4"
    batch = options.batch_frames or (
        1 if kind == "camera" else default_batch_frames(predictor.device)
    )
    t0 = time.perf_counter()
    with VideoWriter(video_path, fps) as writer:
        bar = ProgressBar(total or None, "predicting", "frame", summary=False)
        try:
            for n, (frame, pred) in enumerate(
                _predicted(predictor, frames, batch, options.max_frames)
            ):
                people = pred.people
                ids = tracker.update(people.keypoints, people.scores)
                if smoother is not None and len(people):
                    from hrpose.structures import People

                    people = People(smoother(people.keypoints, ids), people.scores, people.tags)
                writer.write(draw_people(frame, people, predictor.spec, ids, **options.drawing()))
                if len(people):
                    shown = drawn_joints(people, spec=predictor.spec, **options.drawing())
                    drawn_ids.update(int(i) for i in np.asarray(ids)[shown.any(axis=1)])
                    drawn += int(shown.any(axis=1).sum())
                decoded += len(people)
                rows += _results(people, Path(source).name if kind != "camera" else stem, n, n, ids)
                bar.update()
        except KeyboardInterrupt:
            print("stopped by Ctrl-C", file=sys.stderr)
        finally:
            bar.close()
        frames_done = writer.frames
    (out / "predictions.json").write_text(json.dumps(rows))
    if frames_done == 0:
        video_path.unlink(missing_ok=True)
        print(f"hrpose predict: {source}: no frames could be read (empty video?)", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - t0
    print(
        f"{frames_done} frames ({frames_done / elapsed:.1f} fps, {batch} per network batch) -> "
        f"{video_path}: {decoded} "
        f"people decoded, {drawn} drawn (score >= {options.person_threshold}, joints >= "
        f"{options.joint_threshold}; {len(drawn_ids)} track ids drawn); predictions.json keeps "
        f"all {decoded}"
    )
    return 0
