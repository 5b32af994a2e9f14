"""Video and camera frames in, H.264 video out (PyAV; opencv writes no H.264 here)."""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


class VideoError(ValueError):
    """A video file or camera that cannot be read; the message says which and why."""


def video_info(path: str | Path) -> tuple[float, int]:
    """(frames per second, frame count or 0 when unknown) of a video file."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise VideoError(f"{path}: no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or stream.guessed_rate or 25)
            return fps, int(stream.frames or 0)
    except (av.error.InvalidDataError, av.error.FileNotFoundError, OSError) as e:
        raise VideoError(f"{path}: not a readable video ({e})") from e


def read_video(path: str | Path) -> Iterator[np.ndarray]:
    """RGB uint8 frames of a video file, decoded with PyAV."""
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: no such file")
    try:
        container = av.open(str(path))
    except (av.error.InvalidDataError, OSError) as e:
        raise VideoError(f"{path}: not a readable video ({e})") from e
    with container:
        if not container.streams.video:
            raise VideoError(f"{path}: no video stream")
        for frame in container.decode(video=0):
            yield frame.to_ndarray(format="rgb24")


def read_camera(index: int, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """RGB frames from camera ``index`` (opencv) until it stops or ``max_frames``."""
    import cv2

    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        raise VideoError(f"camera {index} is not available (no device, or no permission)")
    try:
        n = 0
        while max_frames is None or n < max_frames:
            ok, frame = cap.read()
            if not ok:
                break
            n += 1
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


class VideoWriter:
    """H.264 (libx264, yuv420p) MP4 writer; frames are RGB uint8 of one size."""

    def __init__(self, path: str | Path, fps: float, crf: int = 23) -> None:
        import av

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.container = av.open(str(self.path), mode="w")
        self.stream = self.container.add_stream(
            "libx264", rate=Fraction(fps).limit_denominator(1001)
        )
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = {"crf": str(crf)}
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        import av

        h, w = frame.shape[:2]
        if self.frames == 0:
            self.stream.width, self.stream.height = w - w % 2, h - h % 2
        frame = np.ascontiguousarray(frame[: self.stream.height, : self.stream.width])
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
