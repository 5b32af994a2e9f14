"""`hrpose predict SOURCE`: people on an image, a folder, a video file or a camera."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from hrpose.data.images import ImageReadError, list_images, read_image
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
        help="checkpoint (official or hrpose), .onnx, or 'random'; "
        "default: inference.ckpt_path of --config",
    )
    p.add_argument("--config", help="a pose training YAML whose inference section to use")
    p.add_argument("--output", default="outputs/predict", help="output folder")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--no-flip", action="store_true", help="skip the flip test (about 2x faster)")
    p.add_argument("--scales", type=float, nargs="+", default=None)
    p.add_argument("--threshold", type=float, default=0.1, help="draw joints above this score")
    p.add_argument("--heatmaps", action="store_true", help="also write a per-joint heatmap grid")
    p.add_argument("--tags", action="store_true", help="also write a tag-embedding plot")
    p.add_argument("--smooth", action="store_true", help="video: One-Euro smoothing per person")
    p.add_argument("--max-frames", type=int, default=None, help="video/camera: stop after N")
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
    from hrpose.engine.pose_task import decode_params
    from hrpose.predict import WEIGHTS_HELP, Predictor

    cfg = load_config(PoseTrainConfig, args.config) if args.config else PoseTrainConfig()
    weights = args.weights or cfg.inference.ckpt_path
    if not weights:
        raise SystemExit(f"hrpose predict: no weights given. {WEIGHTS_HELP}")
    if weights != "random" and not Path(weights).is_file():
        raise SystemExit(f"hrpose predict: weights file not found: {weights}. {WEIGHTS_HELP}")
    if args.backend == "onnxruntime" and not str(weights).endswith(".onnx"):
        raise SystemExit(
            "hrpose predict: --backend onnxruntime needs an .onnx file from `hrpose export onnx`"
        )
    params = decode_params(cfg.inference)
    changes = {}
    if args.no_flip:
        changes["flip"] = False
    if args.scales:
        changes["scales"] = tuple(args.scales)
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
    kind = _kind(args.source)
    try:
        predictor = _predictor(args)
    except (ValueError, RuntimeError) as e:
        print(f"hrpose predict: {e}", file=sys.stderr)
        return 2
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"model: {predictor.description}; input {predictor.input_size}, flip "
        f"{predictor.params.flip}; writing to {out}"
    )
    if kind in ("image", "folder"):
        paths = [Path(args.source)] if kind == "image" else list_images(args.source)
        return _images(predictor, paths, out, args)
    try:
        return _video(predictor, args.source, kind, out, args)
    except VideoError as e:
        print(f"hrpose predict: {e}", file=sys.stderr)
        return 1


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


def _extras(pred, image: np.ndarray, stem: str, out: Path, args: argparse.Namespace) -> None:
    import cv2

    from hrpose.viz.draw import heatmap_grid, tag_plot

    if args.heatmaps and pred.outputs:
        k = pred.people.keypoints.shape[1] if len(pred.people) else pred.outputs[-1].shape[1]
        heat = pred.outputs[-1][0, :k].cpu().numpy()
        names = _names(k)
        cv2.imwrite(str(out / f"{stem}_heatmaps.jpg"), heatmap_grid(image, heat, names)[:, :, ::-1])
    if args.tags:
        k = pred.people.keypoints.shape[1]
        cv2.imwrite(str(out / f"{stem}_tags.png"), tag_plot(pred.people, _names(k))[:, :, ::-1])


def _names(k: int) -> list[str]:
    from hrpose.skeleton import COCO17

    return list(COCO17.names) if k == COCO17.num_joints else [f"joint {i}" for i in range(k)]


def _images(predictor, paths: list[Path], out: Path, args: argparse.Namespace) -> int:
    import cv2
    from tqdm import tqdm

    from hrpose.viz.draw import draw_people

    rows: list[dict] = []
    failed: list[str] = []
    bar = tqdm(paths, unit="img", dynamic_ncols=True, disable=len(paths) < 2)
    for n, path in enumerate(bar):
        try:
            image = read_image(path)
        except ImageReadError as e:
            failed.append(str(e))
            tqdm.write(f"skipped {e}")
            continue
        pred = predictor.predict(image)
        drawn = draw_people(image, pred.people, predictor.spec, threshold=args.threshold)
        cv2.imwrite(str(out / f"{path.stem}_pose.jpg"), drawn[:, :, ::-1])
        _extras(pred, image, path.stem, out, args)
        rows += _results(pred.people, path.name, _image_id(path.name, n))
        if len(paths) == 1:
            print(f"{path.name}: {len(pred.people)} people")
    (out / "predictions.json").write_text(json.dumps(rows))
    done = len(paths) - len(failed)
    print(
        f"{done} image(s) -> {out} (annotated *_pose.jpg, predictions.json with {len(rows)} people)"
    )
    if failed:
        print(f"{len(failed)} failed:\n  " + "\n  ".join(failed), file=sys.stderr)
        return 1
    return 0


def _video(predictor, source: str, kind: str, out: Path, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from hrpose.tracking import PoseTracker, Smoother
    from hrpose.viz.draw import draw_people
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
    video_path = out / f"{stem}_pose.mp4"
    t0 = time.perf_counter()
    with VideoWriter(video_path, fps) as writer:
        bar = tqdm(total=total or None, unit="frame", dynamic_ncols=True)
        try:
            for n, frame in enumerate(frames):
                if args.max_frames and n >= args.max_frames:
                    break
                pred = predictor.predict(frame)
                people = pred.people
                ids = tracker.update(people.keypoints)
                if smoother is not None and len(people):
                    from hrpose.structures import People

                    people = People(smoother(people.keypoints, ids), people.scores, people.tags)
                writer.write(draw_people(frame, people, predictor.spec, ids, args.threshold))
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
        f"{frames_done} frames ({frames_done / elapsed:.1f} fps) -> {video_path}; "
        f"{tracker.next_id} tracked people; predictions.json"
    )
    return 0
