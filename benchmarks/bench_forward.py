"""HigherHRNet forward pass: fp32 baseline vs channels_last, AMP and torch.compile.

Prints ms per batch and the ratio to the fp32 contiguous baseline measured in the same run.
On CPU only fp32/channels_last/bf16 are timed; CUDA adds fp16/bf16 autocast and torch.compile.

    python benchmarks/bench_forward.py [--width 32] [--size 512] [--batch 1] [--iters 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hrpose.models import HigherHRNet


def _time(fn, iters: int, sync) -> float:
    fn()
    sync()  # warm-up (and compilation)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model = HigherHRNet(args.width).eval().to(device)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    variants = {}

    @torch.no_grad()
    def fp32():
        model(x)

    variants["fp32"] = fp32
    model_cl = HigherHRNet(args.width).eval().to(device).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def channels_last():
        model_cl(x_cl)

    variants["channels_last"] = channels_last
    dtypes = [torch.bfloat16] + ([torch.float16] if device.type == "cuda" else [])
    for dtype in dtypes:

        @torch.no_grad()
        def amp(dtype=dtype):
            with torch.autocast(device.type, dtype):
                model_cl(x_cl)

        variants[f"channels_last+{str(dtype).split('.')[-1]}"] = amp
    if device.type == "cuda":
        compiled = torch.compile(model_cl)

        @torch.no_grad()
        def comp():
            with torch.autocast("cuda", torch.float16):
                compiled(x_cl)

        variants["channels_last+fp16+compile"] = comp

    print(f"HigherHRNet-W{args.width}, batch {args.batch}x3x{args.size}x{args.size}, {device}")
    base = None
    for name, fn in variants.items():
        ms = _time(fn, args.iters, sync)
        base = base or ms
        print(f"{name:<30} {ms:9.1f} ms   x{base / ms:5.2f} vs fp32")


if __name__ == "__main__":
    main()
