"""`hrpose predict FOLDER` throughput: overlap of I/O and compute, and scaling over torchrun ranks.

A folder of N images (the coco-mini and example images, linked under distinct names) is
predicted with the W8 model of ../shared/data (its record's settings: input 192, no flip), by
`python -m hrpose predict` in fresh processes, each on one torch thread:

- ``sequential``: ``--workers 0``, the old path: read, preprocess, network, draw, write in turn;
- ``overlap``: ``--workers 1``: a DataLoader worker decodes and preprocesses ahead of the
  network, a thread draws and writes the JPEGs behind it;
- ``2 ranks``: ``torchrun --nproc-per-node=2``, each rank sequential (one thread, no worker),
  half the folder each. Scaling efficiency = its img/s / (2 x sequential img/s); goal >= 0.9.

First the stages of one image are timed in this process on one thread (read and decode,
preprocess, network + decoder, drawing, JPEG writing): the share outside the network bounds
what the overlap can win (at most 1 / (1 - share) with a free core for the I/O).

Rates are the command's own (images / seconds from the moment every rank has its model to the
last image written: model loading excluded, worker start-up included). Runs are interleaved,
``--repeat`` times; the table gives each one's median and range.

    OMP_NUM_THREADS=1 python benchmarks/bench_folder.py [--images 48] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RATE = re.compile(r"\(([\d.]+) img/s\)")


def shared_data() -> Path:
    return Path(os.environ.get("HRPOSE_SHARED_DATA", REPO.parent / "shared" / "data"))


def make_folder(folder: Path, n: int) -> None:
    """``n`` images: the 12 real ones, again and again, as links with distinct names."""
    data = shared_data()
    sources = sorted((data / "coco-mini" / "images").iterdir()) + sorted(
        (data / "examples").iterdir()
    )
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        src = sources[i % len(sources)]
        (folder / f"{i:05d}_{src.name}").symlink_to(src)


def stage_times(folder: Path, weights: Path, n: int = 24) -> dict[str, float]:
    """Median ms per image of each stage of the sequential path, on one thread."""
    import time

    import cv2
    import torch

    from hrpose.overlap import read_source
    from hrpose.predict import Predictor
    from hrpose.viz.draw import draw_people

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    predictor = Predictor.from_weights(weights, device="cpu")
    times: dict[str, list[float]] = {k: [] for k in ("read", "prepare", "network", "draw", "write")}
    with tempfile.TemporaryDirectory() as tmp:
        for path in sorted(folder.iterdir())[:n]:
            t = [time.perf_counter()]
            image = read_source(str(path))
            t.append(time.perf_counter())
            prepared = predictor.prepare(image)
            t.append(time.perf_counter())
            people = predictor.predict_prepared([prepared])[0].people
            t.append(time.perf_counter())
            drawn = draw_people(image, people, predictor.spec)
            t.append(time.perf_counter())
            cv2.imwrite(str(Path(tmp) / "x.jpg"), drawn[:, :, ::-1])
            t.append(time.perf_counter())
            for k, a, b in zip(times, t, t[1:], strict=False):
                times[k].append(1000 * (b - a))
    return {k: statistics.median(v) for k, v in times.items()}


def run(kind: str, folder: Path, out: Path, weights: Path) -> tuple[float, float]:
    """(img/s, CPU seconds of all its processes, start-up included) of one run of ``kind``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    hrpose = [sys.executable, "-m", "hrpose"]
    if kind == "2 ranks":
        hrpose = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                  "--nproc-per-node=2", "-m", "hrpose"]  # fmt: skip
    workers = "1" if kind == "overlap" else "0"
    cmd = [*hrpose, "predict", str(folder), "--weights", str(weights), "--output", str(out),
           "--device", "cpu", "--workers", workers]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    found = RATE.findall(proc.stdout)
    if proc.returncode != 0 or not found:
        raise SystemExit(
            f"{kind} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-3000:]}"
        )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return float(found[-1]), cpu


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=48, help="images in the folder (default 48)")
    p.add_argument("--repeat", type=int, default=3, help="runs of each kind (default 3)")
    args = p.parse_args()
    weights = shared_data() / "weights" / "w8-coco-mini.pt"
    if not weights.is_file():
        raise SystemExit(f"{weights} missing: set HRPOSE_SHARED_DATA to the shared data folder")
    kinds = ("sequential", "overlap", "2 ranks")
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    cpu: dict[str, list[float]] = {k: [] for k in kinds}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        make_folder(folder, args.images)
        stages = stage_times(folder, weights)
        total = sum(stages.values())
        share = 1 - stages["network"] / total
        print("ms per image (median, one thread): " + ", ".join(
            f"{k} {v:.1f}" for k, v in stages.items()) + f"; outside the network {100 * share:.0f}%"
              f" (overlap ceiling {1 / (1 - share):.2f}x)", flush=True)  # fmt: skip
        run("sequential", folder, Path(tmp) / "warm-up", weights)  # file cache, imports
        for r in range(args.repeat):
            for k in kinds:
                rate, seconds = run(k, folder, Path(tmp) / f"{k}-{r}", weights)
                rates[k].append(rate)
                cpu[k].append(seconds)
                print(f"run {r + 1}: {k}: {rate:.2f} img/s, {seconds:.1f} CPU s", flush=True)
    med = {k: statistics.median(v) for k, v in rates.items()}
    cpus = len(os.sched_getaffinity(0))
    load = os.getloadavg()[0]
    print(f"\n{args.images} images, W8 at its record's input 192, {cpus} CPUs, load {load:.1f}")
    print("| run | img/s median | range | vs sequential | CPU s per run (median, start-up "
          "included) |\n|---|---|---|---|---|")  # fmt: skip
    for k in kinds:
        print(f"| {k} | {med[k]:.2f} | {min(rates[k]):.2f}-{max(rates[k]):.2f} | "
              f"{med[k] / med['sequential']:.2f}x | {statistics.median(cpu[k]):.1f} |")  # fmt: skip
    per_run = [
        two / (2 * one) for one, two in zip(rates["sequential"], rates["2 ranks"], strict=True)
    ]
    print(f"overlap / sequential: {med['overlap'] / med['sequential']:.2f}x")
    print(
        f"scaling efficiency, 2 one-thread ranks / (2 x one one-thread process): "
        f"{med['2 ranks'] / (2 * med['sequential']):.2f} (per run "
        f"{', '.join(f'{e:.2f}' for e in per_run)}; goal >= 0.9)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
