"""HigherHRNet forward pass: fp32 baseline vs channels_last, BatchNorm folding, AMP and compile.

Prints ms per batch (range over interleaved repeats) and the ratio to the fp32 contiguous
baseline (the official way of running the network) measured in the same run. "fused+cl" is the
``Predictor`` default. bf16 is timed on every device but is emulated (slow) on CPUs without
AMX/AVX512-BF16; fp16 needs CUDA; ``--compile`` adds torch.compile of the default network.

    python benchmarks/bench_forward.py [--width 32] [--size 512x832] [--batch 1] [--iters 3]
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from hrpose.models import HigherHRNet
from hrpose.models.fuse import fuse_batchnorm
from hrpose.predict import cpu_has_native_bf16


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--size", default="512x832", help="HxW (the 640x392 photo at 512)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: process CPU time, for a loaded shared host (run with OMP_NUM_THREADS=1)",
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    h, w = (int(v) for v in args.size.split("x"))
    now = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.manual_seed(0)
    model = HigherHRNet(args.width).eval().to(device)
    x = torch.randn(args.batch, 3, h, w, device=device)
    cl = torch.channels_last
    x_cl = x.contiguous(memory_format=cl)
    model_cl = copy.deepcopy(model).to(memory_format=cl)
    fused_cl = fuse_batchnorm(model).to(memory_format=cl)
    variants = {
        "fp32 (official)": lambda: model(x),
        "channels_last": lambda: model_cl(x_cl),
        "fused+cl (default)": lambda: fused_cl(x_cl),
    }
    dtypes = {"bf16": torch.bfloat16}
    if device.type == "cuda":
        dtypes["fp16"] = torch.float16
    for name, dtype in dtypes.items():

        def amp(dtype=dtype):
            with torch.autocast(device.type, dtype):
                return fused_cl(x_cl)

        native = device.type == "cuda" or cpu_has_native_bf16()
        variants[f"fused+cl+{name}" + ("" if native else " (emulated)")] = amp
    if args.compile:
        compiled = torch.compile(fused_cl)
        variants["fused+cl+compile"] = lambda: compiled(x_cl)

    print(f"HigherHRNet-W{args.width}, batch {args.batch}x3x{h}x{w}, {device}, {args.clock} clock, "
          f"{torch.get_num_threads()} thread(s)")  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in variants}
    with torch.inference_mode():
        for fn in variants.values():  # warm-up (and compilation)
            fn()
            sync()
        for _ in range(args.iters):  # interleaved: load changes hit every variant alike
            for name, fn in variants.items():
                t0 = now()
                fn()
                sync()
                times[name].append(now() - t0)
    base = times["fp32 (official)"]
    for name, ts in times.items():
        r = [b / t for b, t in zip(base, ts, strict=True)]
        lo, hi = min(ts) * 1000, max(ts) * 1000
        print(f"{name:<30} {lo:8.0f}-{hi:<8.0f} ms   x{min(r):.2f}-{max(r):.2f} vs fp32")


if __name__ == "__main__":
    main()
