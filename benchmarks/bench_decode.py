"""Decode time per 512 image at 1, 5, 15 and 30 people (flip on, refine on), ours vs official.

The official decoder is timed in the same run when a local copy of the official repository is
given (never part of hrpose):

    HRPOSE_OFFICIAL=/path/to/HigherHRNet-Human-Pose-Estimation python benchmarks/bench_decode.py

It needs ``munkres==1.1.4`` (the dev extra installs it). The same synthetic network outputs go to
both decoders, and the benchmark also checks that they return the same people. Without the
official copy only our times are printed. "hrpose" is the default decoder (the same torch code
runs on a GPU: heatmaps projected only in the tiles that can hold a peak, refine's argmax
searched without full planes); "full maps" (``tiled=False``) projects every heatmap at input
resolution first, as the official code (OpenCV NMS), and refines on full heatmap and tag planes:
the reference the default must equal.
``--forward`` also times the HigherHRNet-W32 forward with flip at 512.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from hrpose.decode import Transform, decode, input_size_for  # noqa: E402
from official_code import add_official_lib, test_config  # noqa: E402
from synthetic import make_outputs, random_people  # noqa: E402

IMAGE = (640, 480)
TF = [Transform.for_image(IMAGE)]


def _official():
    root = os.environ.get("HRPOSE_OFFICIAL")
    if not root:
        return None
    add_official_lib(root)
    from core.group import HeatmapParser
    from core.inference import aggregate_results, get_multi_stage_outputs
    from utils.transforms import get_final_preds, get_multi_scale_size

    cfg = test_config()
    parser = HeatmapParser(cfg)

    def run(outs, flips):
        image = np.zeros((IMAGE[1], IMAGE[0], 3), np.uint8)
        base, center, scale = get_multi_scale_size(image, 512, 1.0, 1.0)
        calls = iter([outs, flips])
        _, heat, tags = get_multi_stage_outputs(
            cfg, lambda x: list(next(calls)), torch.zeros(1, 3, 8, 8), True, True, base
        )
        final, tag_list = aggregate_results(cfg, 1, None, [], heat, tags)
        grouped, scores = parser.parse(final, torch.cat(tag_list, 4), True, True)
        return get_final_preds(grouped, center, scale, [final.size(3), final.size(2)]), scores

    return run


def _times(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _fmt(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return f"{statistics.median(ms):7.1f} ({ms[0]:.0f}-{ms[-1]:.0f})"


def _same(a, b) -> bool:
    return len(a) == len(b) and (
        len(a) == 0
        or bool(np.abs(a.keypoints - b.keypoints).max() < 1e-3 and np.array_equal(a.tags, b.tags))
    )


def main() -> None:
    # one thread by default: both decoders run many small ops; HRPOSE_BENCH_THREADS=N for more
    threads = int(os.environ.get("HRPOSE_BENCH_THREADS", "1"))
    torch.set_num_threads(threads)
    official = _official()
    repeat = int(os.environ.get("HRPOSE_BENCH_REPEAT", "5"))
    print(f"decode of one {IMAGE[0]}x{IMAGE[1]} image at input 512 (flip, adjust, refine on), "
          f"float32 outputs, {threads} torch thread(s), median (min-max) of {repeat} runs in ms "
          "(official: half as many runs)")  # fmt: skip
    head = f"{'people':>6} {'hrpose':>16} {'full maps':>16} {'official':>18} {'speed-up':>16}"
    print(f"{head}  same")
    for n in (1, 5, 15, 30):
        xy, wh = random_people(n, IMAGE, seed=n)
        outs, flips = make_outputs(xy, np.arange(n) * 3.0, wh, seed=n)
        outs, flips = [t.float() for t in outs], [t.float() for t in flips]  # as a model gives
        ours = decode([outs], TF, flip_outputs=[flips])
        dev = decode([outs], TF, flip_outputs=[flips], tiled=False)
        t_ours = _times(lambda o=outs, f=flips: decode([o], TF, flip_outputs=[f]), repeat)
        t_dev = _times(
            lambda o=outs, f=flips: decode([o], TF, flip_outputs=[f], tiled=False),
            max(1, repeat // 2),
        )
        same = _same(ours, dev)
        row = f"{n:>6} {_fmt(t_ours):>16} {_fmt(t_dev):>16}"
        if official is None:
            print(f"{row} {'n/a':>18} {'n/a':>16}  {same} (set HRPOSE_OFFICIAL)")
            continue
        res, _ = official(outs, flips)
        same = (
            same
            and len(res) == len(ours)
            and (
                not res
                or np.abs(np.stack([r[:, :2] for r in res]) - ours.keypoints[..., :2]).max() < 1e-3
            )
        )
        t_off = _times(lambda o=outs, f=flips: official(o, f), max(1, repeat // 2))
        lo = min(t_off) / max(t_ours)
        hi = max(t_off) / min(t_ours)
        mid = statistics.median(t_off) / statistics.median(t_ours)
        print(f"{row} {_fmt(t_off):>18} {mid:6.1f}x ({lo:.0f}-{hi:.0f}x)  {same}")
    if "--forward" not in sys.argv:
        return
    from hrpose.models import HigherHRNet

    model = HigherHRNet(32).eval()
    (w, h), _, _ = input_size_for(IMAGE)
    x = torch.randn(1, 3, h, w)
    with torch.no_grad():
        t_fwd = statistics.median(_times(lambda: (model(x), model(torch.flip(x, [3]))), 2))
    print(f"W32 forward with flip: {t_fwd * 1000:.0f} ms")


if __name__ == "__main__":
    main()
