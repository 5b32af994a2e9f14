"""Training sample pipeline throughput on coco-mini, per CPU core, in one process.

Prints samples/s of (a) JPEG decoding alone, (b) the full hrpose pipeline (decode, loss mask,
official random affine + flip, targets at 1/4 and 1/2 resolution, tensors), and (c) vectorised
heatmaps against a straightforward per-person, per-joint loop (the official generators' style),
with ratios. Goal: (b) after decoding costs no more than decoding itself. OpenCV and torch are
held to one thread, so the figures are per core. The samples leave the pipeline as uint8; the
ImageNet normalisation runs batched on the training device (``normalize_batch``), and its cost
on a CPU is printed too.

    python benchmarks/bench_pipeline.py [--input-size 512] [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from hrpose.data.coco import CocoKeypoints, read_image_rgb
from hrpose.data.pipeline import PoseTrainTransform
from hrpose.data.targets import gaussian_patch
from hrpose.normalization import normalize_batch

DATA = Path(
    os.environ.get("HRPOSE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)


def loop_heatmaps(joints: np.ndarray, size: int, sigma: float = 2.0) -> np.ndarray:
    """Reference target generator with Python loops over people and joints."""
    out = np.zeros((joints.shape[1], size, size), np.float32)
    g = gaussian_patch(sigma)
    for person in joints:
        for idx, (x, y, v) in enumerate(person):
            x, y = int(x), int(y)
            if v <= 0 or x < 0 or y < 0 or x >= size or y >= size:
                continue
            ul = int(np.round(x - 3 * sigma - 1)), int(np.round(y - 3 * sigma - 1))
            br = int(np.round(x + 3 * sigma + 2)), int(np.round(y + 3 * sigma + 2))
            c, d = max(0, -ul[0]), min(br[0], size) - ul[0]
            a, b = max(0, -ul[1]), min(br[1], size) - ul[1]
            cc, dd, aa, bb = max(0, ul[0]), min(br[0], size), max(0, ul[1]), min(br[1], size)
            out[idx, aa:bb, cc:dd] = np.maximum(out[idx, aa:bb, cc:dd], g[a:b, c:d])
    return out


def rate(fn, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn(n)
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--input-size", type=int, default=512)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    mini = DATA / "coco-mini"
    ds = CocoKeypoints(mini / "person_keypoints.json", mini / "images")
    s = args.input_size
    transform = PoseTrainTransform(ds.spec.flip_index, s, (s // 4, s // 2))
    paths = [ds.image_path(i) for i in range(len(ds))]
    decode = rate(lambda n: read_image_rgb(paths[n % len(paths)]), args.seconds)
    full = rate(lambda n: transform(ds.load(n % len(ds))), args.seconds)
    batch = torch.stack([transform(ds.load(i))[0] for i in range(len(ds))])
    norm = rate(lambda n: normalize_batch(batch), args.seconds / 2) * len(batch)
    rng = np.random.default_rng(0)
    joints = np.zeros((30, 17, 3))
    joints[..., :2] = rng.uniform(0, s // 2, (30, 17, 2))
    joints[..., 2] = 2
    from hrpose.data.targets import heatmaps

    vec = rate(lambda n: heatmaps(joints, s // 2), args.seconds / 2)
    ref = rate(lambda n: loop_heatmaps(joints, s // 2), args.seconds / 2)
    per_sample = 1 / full - 1 / decode
    print(f"coco-mini, input {s}, one core")
    print(f"JPEG decode only            {decode:8.1f} samples/s")
    print(
        f"full pipeline (hrpose)      {full:8.1f} samples/s; after-decode cost "
        f"{per_sample * 1000:.1f} ms = {per_sample * decode:.2f}x decoding"
    )
    print(f"normalisation on a CPU device {norm:8.1f} samples/s (batched, outside the pipeline)")
    print(
        f"heatmaps, 30 people at {s // 2}: vectorised {vec:.0f}/s vs loop {ref:.0f}/s "
        f"(x{vec / ref:.1f})"
    )


if __name__ == "__main__":
    main()
