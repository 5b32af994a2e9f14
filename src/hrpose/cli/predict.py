"""`hrpose predict SOURCE`: people on an image, a folder, a video file or a camera."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from hrpose.data.images import ImageReadError, list_images, read_image
from hrpose.skeleton import KeypointSpec
from hrpose.viz.draw import JOINT_THRESHOLD, LIMB_RATIO, PERSON_THRESHOLD
from hrpose.viz.video import VIDEO_SUFFIXES, VideoError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hrpose predict",
        description="Multi-person poses on an image, a folder of images, a video file or a "
        "camera (an integer index). Writes annotated images / an H.264 video and one COCO-style "
        "predictions.json per run.",
    )
    p.add_argument("source", help="image, folder, video file, or camera index (e.g. 0)")
    p.add_argument(
        "--weights",
        help="checkpoint (official, mmpose 0.x or hrpose), .onnx, an http(s) URL, a registered "
        "name (hrpose weights list) or 'random'; default: inference.ckpt_path of --config, else "
        "the default registered COCO model (downloaded on first use)",
    )
    p.add_argument("--config", help="a pose training YAML whose inference section to use")
    p.add_argument("--output", default="outputs/predict", help="output folder")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--no-flip", action="store_true", help="skip the flip test (about 2x faster)")
    p.add_argument("--scales", type=float, nargs="+", default=None)
    p.add_argument(
        "--detection-threshold",
        type=float,
        default=None,
        help="decoder: keep joint candidates above this heatmap value (default: "
        "--config's inference.detection_threshold, else the official 0.1)",
    )
    p.add_argument(
        "--tag-threshold",
        type=float,
        default=None,
        help="decoder: largest tag distance joining a person (default 1.0)",
    )
    p.add_argument("--max-people", type=int, default=None, help="decoder: top-k people (30)")
    p.add_argument(
        "--person-threshold",
        type=float,
        default=PERSON_THRESHOLD,
        help="draw only people with at least this score (predictions.json keeps "
        f"everyone; default {PERSON_THRESHOLD})",
    )
    p.add_argument(
        "--joint-threshold",
        "--threshold",
        dest="joint_threshold",
        type=float,
        default=JOINT_THRESHOLD,
        help=f"draw only joints with at least this score (default {JOINT_THRESHOLD})",
    )
    p.add_argument(
        "--limb-ratio",
        type=float,
        default=LIMB_RATIO,
        help="draw no limb longer than this many times the person's median limb, nor a "
        "joint whose limbs all are (joints grouped into the wrong person); 'inf' draws "
        f"all (default {LIMB_RATIO})",
    )
    p.add_argument(
        "--ground-truth",
        metavar="ANNOTATIONS.json",
        help="images: also write <name>_vs_gt.jpg, prediction beside the annotated "
        "skeletons of this COCO keypoints file",
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
        help="opt-in fast forward: torch.compile in fp32 (compiling takes minutes, so it pays "
        "on videos and folders; keypoints equal to fp32; see README)",
    )
    p.add_argument(
        "--precision", choices=["fp32", "bf16", "fp16"], default=None, help="autocast precision"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the network")
    return p


def _predictor(args: argparse.Namespace):
    from hrpose.config.load import load_config
    from hrpose.config.schema import PoseTrainConfig
    from hrpose.decode import DecodeParams
    from hrpose.hub import DEFAULT_POSE, is_remote
    from hrpose.predict import WEIGHTS_HELP, Predictor

    cfg = load_config(PoseTrainConfig, args.config) if args.config else PoseTrainConfig()
    weights = args.weights or cfg.inference.ckpt_path
    if not weights:
        weights = DEFAULT_POSE
        print(f"no --weights: using the default registered model {weights} (`hrpose weights list`)")
    if weights != "random" and not Path(weights).is_file() and not is_remote(weights):
        raise SystemExit(f"hrpose predict: weights file not found: {weights}. {WEIGHTS_HELP}")
    if args.backend == "onnxruntime" and not str(weights).endswith(".onnx"):
        raise SystemExit(
            "hrpose predict: --backend onnxruntime needs an .onnx file from `hrpose export onnx`"
        )
    params = cfg.inference.decode_params()
    changes = _decode_changes(args)
    if changes:
        params = DecodeParams(**{**params.__dict__, **changes})
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    kw = {"params": params, "device": device}
    if args.fast:
        from hrpose.predict import fast_options

        kw.update(fast_options(device))
    if args.precision:
        kw["precision"] = args.precision
    if args.compile:
        kw["compile"] = True
    if args.input_size or args.config:
        kw["input_size"] = args.input_size or cfg.inference.input_size
    return Predictor.from_weights(weights, **kw)


def _decode_changes(args: argparse.Namespace) -> dict:
    """Decoder settings given on the command line (they override --config's)."""
    given = {
        "flip": False if args.no_flip else None,
        "scales": tuple(args.scales) if args.scales else None,
        "detection_threshold": args.detection_threshold,
        "tag_threshold": args.tag_threshold,
        "max_people": args.max_people,
    }
    return {k: v for k, v in given.items() if v is not None}


def _kind(source: str) -> str:
    if source.isdigit():
        return "camera"
    path = Path(source)
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise SystemExit(f"hrpose predict: {source}: no such file, folder or camera index")
    return "video" if path.suffix.lower() in VIDEO_SUFFIXES else "image"


def _image_id(name: str, fallback: int) -> int:
    stem = Path(name).stem
    return int(stem) if stem.isdigit() else fallback


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.batch_frames is not None and args.batch_frames < 1:
        raise SystemExit(f"hrpose predict: --batch-frames must be >= 1, got {args.batch_frames}")
    kind = _kind(args.source)
    gt = _ground_truth(args.ground_truth) if args.ground_truth else None
    try:
        predictor = _predictor(args)
    except (ValueError, RuntimeError) as e:
        print(f"hrpose predict: {e}", file=sys.stderr)
        return 2
    if gt and next(iter(gt.values())).keypoints.shape[1] != predictor.spec.num_joints:
        k = next(iter(gt.values())).keypoints.shape[1]
        print(f"hrpose predict: --ground-truth has {k} keypoints per person but the model "
              f"predicts {predictor.spec.num_joints}; give the annotations of its keypoint set",
              file=sys.stderr)  # fmt: skip
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    dp = predictor.params
    print(
        f"model: {predictor.description}; input {predictor.input_size}, flip {dp.flip}, "
        f"detection threshold {dp.detection_threshold}, tag threshold {dp.tag_threshold}, "
        f"max people {dp.max_people}; drawing people with score >= {args.person_threshold} "
        f"and joints >= {args.joint_threshold}, limbs up to {args.limb_ratio}x the person's "
        f"median; writing to {out}"
    )
    if kind in ("image", "folder"):
        paths = [Path(args.source)] if kind == "image" else list_images(args.source)
        return _images(predictor, paths, out, args, gt)
    try:
        return _video(predictor, args.source, kind, out, args)
    except VideoError as e:
        print(f"hrpose predict: {e}", file=sys.stderr)
        return 1


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
    pred, image: np.ndarray, stem: str, out: Path, args: argparse.Namespace, spec: KeypointSpec
) -> None:
    import cv2

    from hrpose.viz.draw import heatmap_grid, tag_plot

    if args.heatmaps and pred.outputs:
        k = pred.people.keypoints.shape[1] if len(pred.people) else pred.outputs[-1].shape[1]
        heat = pred.outputs[-1][0, :k].cpu().numpy()
        # through the input's affine (undoing its padding), so peaks sit on their pixels
        grid = heatmap_grid(image, heat, _names(k, spec), tile=240, transform=pred.transform)
        cv2.imwrite(str(out / f"{stem}_heatmaps.jpg"), grid[:, :, ::-1])
    if args.tags:
        k = pred.people.keypoints.shape[1]
        plot = tag_plot(pred.people, _names(k, spec), person_threshold=args.person_threshold,
                        joint_threshold=args.joint_threshold)  # fmt: skip
        cv2.imwrite(str(out / f"{stem}_tags.png"), plot[:, :, ::-1])


def _names(k: int, spec: KeypointSpec) -> list[str]:
    return list(spec.names) if k == spec.num_joints else [f"joint {i}" for i in range(k)]


def _drawing(args: argparse.Namespace) -> dict:
    """The run's drawing settings, as draw_people and drawn_joints take them."""
    return {
        "joint_threshold": args.joint_threshold,
        "person_threshold": args.person_threshold,
        "limb_ratio": args.limb_ratio,
    }


def _count(people, spec: KeypointSpec, args: argparse.Namespace) -> int:
    """How many of the people are drawn with the run's thresholds."""
    from hrpose.viz.draw import drawn_joints

    if len(people) == 0:
        return 0
    return int(drawn_joints(people, spec=spec, **_drawing(args)).any(axis=1).sum())


def _panel(image: np.ndarray, people, truth, spec, args: argparse.Namespace) -> np.ndarray:
    """Prediction | ground truth; an annotated person takes the number and colour of the drawn
    person that matches it best (OKS >= 0.5), the others numbers of their own."""
    from hrpose.tracking import oks
    from hrpose.viz.draw import draw_people, drawn_joints, side_by_side

    shown = drawn_joints(people, spec=spec, **_drawing(args)).any(axis=1)
    ids = np.cumsum(shown) - 1  # the drawn people's numbers, in the colours of *_pose.jpg
    sim = oks(people.keypoints[shown], truth.keypoints, spec.sigmas, threshold=0.5)
    best = sim.argmax(axis=0) if sim.size else np.zeros(len(truth), int)
    hit = sim.max(axis=0) >= 0.5 if sim.size else np.zeros(len(truth), bool)
    truth_ids = np.where(hit, best, int(shown.sum()) + np.cumsum(~hit) - 1)
    left = draw_people(image, people, spec, ids, **_drawing(args))
    right = draw_people(image, truth, spec, truth_ids, 0.5, person_threshold=0.0,
                        limb_ratio=np.inf)  # fmt: skip
    return side_by_side(
        [left, right],
        [f"prediction: {int(shown.sum())} of {len(people)} decoded people drawn",
         f"ground truth: {len(truth)} annotated, {int(hit.sum())} matched"],
    )  # fmt: skip


def _images(
    predictor, paths: list[Path], out: Path, args: argparse.Namespace, gt: dict | None = None
) -> int:
    import cv2
    from tqdm import tqdm

    from hrpose.viz.draw import draw_people

    rows: list[dict] = []
    failed: list[str] = []
    decoded = drawn = panels = 0
    thresholds = _drawing(args)
    bar = tqdm(paths, unit="img", dynamic_ncols=True, disable=len(paths) < 2)
    for n, path in enumerate(bar):
        try:
            image = read_image(path)
        except ImageReadError as e:
            failed.append(str(e))
            tqdm.write(f"skipped {e}")
            continue
        pred = predictor.predict(image)
        pose = draw_people(image, pred.people, predictor.spec, **thresholds)
        cv2.imwrite(str(out / f"{path.stem}_pose.jpg"), pose[:, :, ::-1])
        if gt is not None and path.name in gt:
            panel = _panel(image, pred.people, gt[path.name], predictor.spec, args)
            cv2.imwrite(str(out / f"{path.stem}_vs_gt.jpg"), panel[:, :, ::-1])
            panels += 1
        _extras(pred, image, path.stem, out, args, predictor.spec)
        rows += _results(pred.people, path.name, _image_id(path.name, n))
        decoded += len(pred.people)
        shown = _count(pred.people, predictor.spec, args)
        drawn += shown
        if len(paths) == 1:
            print(f"{path.name}: {len(pred.people)} people decoded, {shown} drawn")
    (out / "predictions.json").write_text(json.dumps(rows))
    done = len(paths) - len(failed)
    extra = f", {panels} prediction | ground truth panels *_vs_gt.jpg" if gt is not None else ""
    print(
        f"{done} image(s) -> {out}: {decoded} people decoded, {drawn} drawn (score >= "
        f"{args.person_threshold}, joints >= {args.joint_threshold}) on *_pose.jpg{extra}; "
        f"predictions.json keeps all {decoded}"
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


def _video(predictor, source: str, kind: str, out: Path, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hrpose.predict import default_batch_frames
    from hrpose.tracking import PoseTracker, Smoother
    from hrpose.viz.draw import draw_people, drawn_joints
    from hrpose.viz.video import VideoWriter, read_camera, read_video, video_info

    if kind == "camera":
        frames, fps, total, stem = (
            read_camera(int(source), args.max_frames),
            15.0,
            None,
            f"camera{source}",
        )
    else:
        fps, total = video_info(source)
        frames, stem = read_video(source), Path(source).stem
        if args.max_frames:
            total = min(total or args.max_frames, args.max_frames)
    tracker = PoseTracker(predictor.spec.sigmas)
    smoother = Smoother(fps) if args.smooth else None
    rows: list[dict] = []
    decoded = drawn = 0
    drawn_ids: set[int] = set()
    video_path = out / f"{stem}_pose.mp4"
    batch = args.batch_frames or (1 if kind == "camera" else default_batch_frames(predictor.device))
    t0 = time.perf_counter()
    with VideoWriter(video_path, fps) as writer:
        bar = tqdm(total=total or None, unit="frame", dynamic_ncols=True)
        try:
            for n, (frame, pred) in enumerate(
                _predicted(predictor, frames, batch, args.max_frames)
            ):
                people = pred.people
                ids = tracker.update(people.keypoints, people.scores)
                if smoother is not None and len(people):
                    from hrpose.structures import People

                    people = People(smoother(people.keypoints, ids), people.scores, people.tags)
                writer.write(draw_people(frame, people, predictor.spec, ids, **_drawing(args)))
                if len(people):
                    shown = drawn_joints(people, spec=predictor.spec, **_drawing(args))
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
        f"people decoded, {drawn} drawn (score >= {args.person_threshold}, joints >= "
        f"{args.joint_threshold}; {len(drawn_ids)} track ids drawn); predictions.json keeps "
        f"all {decoded}"
    )
    return 0
