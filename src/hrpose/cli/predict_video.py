"""`hrpose predict` on videos and cameras: frames in order (the tracker needs them so), the
network on the caller's thread, drawing, H.264 encoding and the log lines behind it."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from hrpose.cli.predict import PredictOptions, RunCounts, result_rows
from hrpose.viz.video import VideoError


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


def camera(predictor, index: int, out: Path, options: PredictOptions) -> int:
    """A camera until it stops, --max-frames or Ctrl-C (its normal end): one process, its
    frames logged as a video's; no --resume (a camera's frames cannot be read again)."""
    from hrpose.evaluation.pose import write_results
    from hrpose.evaluation.prediction_log import LOG_NAME, PredictionLog
    from hrpose.overlap import WriteBehind

    log = PredictionLog(out / LOG_NAME)
    writer = WriteBehind()
    counts = RunCounts()
    try:
        video_item(predictor, str(index), f"camera{index}", out, options, log, writer, None,
                    counts, read_ahead_frames=False, camera=True)  # fmt: skip
    finally:
        writer.close()
        log.close()
    write_results(log.rows(), out / "predictions.json")
    if counts.failed:
        print(f"hrpose predict: {counts.failed[0]}", file=sys.stderr)
        return 1
    return 0


def video_item(predictor, source: str, name: str, out: Path, options: PredictOptions, log,
                writer, bar, counts: RunCounts, read_ahead_frames: bool,
                camera: bool = False) -> None:  # fmt: skip
    """One video in frame order (never split: the tracker needs its frames in order): the
    network on this thread; drawing, H.264 encoding and the frame's log line behind it on
    ``writer``; its end line once the video file is closed. Problems go to ``counts.failed``."""
    from hrpose.overlap import read_ahead
    from hrpose.predict import default_batch_frames
    from hrpose.tracking import PoseTracker, Smoother
    from hrpose.viz.video import VideoWriter, read_camera, read_video, video_info

    try:
        if camera:
            frames, fps = read_camera(int(source), options.max_frames), 15.0
        else:
            fps, _ = video_info(source)
            frames = read_video(source)
    except VideoError as e:
        counts.failed.append(str(e))
        print(f"hrpose predict: {e}", file=sys.stderr)
        return
    stem = Path(name).stem
    tracker = PoseTracker(predictor.spec.sigmas)
    smoother = Smoother(fps) if options.smooth else None
    video_path = out / f"{stem}_pose.mp4"
    batch = options.batch_frames or (1 if camera else default_batch_frames(predictor.device))
    video = VideoWriter(video_path, fps)
    state = {"decoded": 0, "drawn": 0, "ids": set(), "rows": []}
    t0 = time.perf_counter()
    n = -1
    try:
        for n, (frame, pred) in enumerate(
            _predicted(
                predictor, read_ahead(frames, enabled=read_ahead_frames), batch, options.max_frames
            )  # fmt: skip
        ):
            people = pred.people
            ids = tracker.update(people.keypoints, people.scores)
            if smoother is not None and len(people):
                from hrpose.structures import People

                people = People(smoother(people.keypoints, ids), people.scores, people.tags)
            rows = result_rows(people, name, n, n, ids)
            writer.submit(_finish_frame, predictor, video, frame, people, ids, rows, name, n,
                          options, log, state)  # fmt: skip
            if bar is not None:
                bar.update()
    except KeyboardInterrupt:
        if not camera:
            raise  # a video cut short is redone on resume
        print("stopped by Ctrl-C", file=sys.stderr)
    except VideoError as e:
        counts.failed.append(str(e))
        print(f"hrpose predict: {e}", file=sys.stderr)
        writer.submit(video.close)
        return
    writer.submit(_finish_video, video, name, log, state)
    writer.drain()
    frames_done = n + 1
    if frames_done == 0:
        video_path.unlink(missing_ok=True)
        msg = f"{source}: no frames could be read (empty video?)"
        counts.failed.append(msg)
        print(f"hrpose predict: {msg}", file=sys.stderr)
        return
    counts.videos += 1
    counts.frames += frames_done
    elapsed = time.perf_counter() - t0
    print(
        f"{frames_done} frames ({frames_done / elapsed:.1f} fps, {batch} per network batch) -> "
        f"{video_path}: {state['decoded']} people decoded, {state['drawn']} drawn (score >= "
        f"{options.person_threshold}, joints >= {options.joint_threshold}; "
        f"{len(state['ids'])} track ids drawn); predictions.json keeps all {state['decoded']}"
    )


def _finish_frame(predictor, video, frame: np.ndarray, people, ids, rows: list[dict], name: str,
                  n: int, options: PredictOptions, log, state: dict) -> None:  # fmt: skip
    """Draw and encode one frame, then log it."""
    from hrpose.viz.draw import draw_people, drawn_joints

    video.write(draw_people(frame, people, predictor.spec, ids, **options.drawing()))
    if len(people):
        shown = drawn_joints(people, spec=predictor.spec, **options.drawing()).any(axis=1)
        state["ids"].update(int(i) for i in np.asarray(ids)[shown])
        state["drawn"] += int(shown.sum())
    state["decoded"] += len(people)
    state["rows"].append(rows)
    log.add_frame(name, n, rows)


def _finish_video(video, name: str, log, state: dict) -> None:
    """Close the video file, then write the video's end line (it is finished only now)."""
    video.close()
    if state["rows"]:
        log.finish_video(name, state["rows"])
