"""HigherHRNet training throughput (img/s) and peak memory: fp32 vs AMP, channels_last, compile.

One training step = forward, the official loss (heatmaps at both resolutions, AE tags at 1/4),
backward, Adam update, on a synthetic batch with realistic targets (30 people per image). The
baseline is fp32 with PyTorch's defaults, measured in the same run; every variant is printed as a
ratio against it. Peak memory is CUDA's max allocated bytes during the timed steps.

    python benchmarks/bench_train.py [--width 32] [--size 512] [--batch 12] [--iters 20]
        [--variants fp32,cl+bf16,cl+bf16+compile] [--no-tf32]

On CPU the default is a small problem (W32 at 256, batch 2) so it finishes in a minute.
"""

from __future__ import annotations

import argparse
import time

import torch

from hrpose.losses import HigherHRNetLoss
from hrpose.models import HigherHRNet

ALL = ("fp32", "cl", "cl+bf16", "cl+fp16", "cl+bf16+compile")


def synthetic_batch(batch: int, size: int, joints: int = 17, people: int = 30, seed: int = 0):
    """Images, heatmaps/masks at 1/4 and 1/2, and (flat index, visible) joints at 1/4."""
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(batch, 3, size, size, generator=g)
    sizes = (size // 4, size // 2)
    heatmaps = [torch.rand(batch, joints, s, s, generator=g) ** 8 for s in sizes]
    masks = [torch.ones(batch, s, s) for s in sizes]
    s = sizes[0]
    idx = torch.randint(0, s * s, (batch, people, joints), generator=g)
    idx = idx + torch.arange(joints) * s * s
    vis = (torch.rand(batch, people, joints, generator=g) > 0.3).long()
    tags = [torch.stack([idx, vis], -1), torch.zeros(batch, people, joints, 2, dtype=torch.long)]
    return image, heatmaps, masks, tags


def make_step(variant: str, width: int, device: torch.device, batch):
    """A closure running one optimisation step in the given variant."""
    flags = set(variant.split("+"))
    torch.manual_seed(0)
    model = HigherHRNet(width).to(device).train()
    channels_last = "cl" in flags
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    run = torch.compile(model) if "compile" in flags else model
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = HigherHRNetLoss()
    dtype = torch.bfloat16 if "bf16" in flags else torch.float16 if "fp16" in flags else None
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    image, heatmaps, masks, joints = batch
    image = image.to(device)
    if channels_last:
        image = image.contiguous(memory_format=torch.channels_last)
    heatmaps = [h.to(device) for h in heatmaps]
    masks = [m.to(device) for m in masks]
    joints = [j.to(device) for j in joints]

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype or torch.float32, enabled=dtype is not None):
            outputs = run(image)
        loss, _ = loss_fn(list(outputs), heatmaps, masks, joints)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss.detach()

    return step


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--size", type=int, default=512 if cuda else 256)
    parser.add_argument("--batch", type=int, default=12 if cuda else 2)
    parser.add_argument("--iters", type=int, default=20 if cuda else 3)
    parser.add_argument("--warmup", type=int, default=3 if cuda else 1)
    default = ALL if cuda else ("fp32", "cl")
    parser.add_argument("--variants", default=",".join(default))
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument(
        "--no-tf32", action="store_true", help="strict fp32 baseline (no TF32 convs/matmuls)"
    )
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # as the training loop does
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    batch = synthetic_batch(args.batch, args.size)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"HigherHRNet-W{args.width} training step, batch {args.batch}x3x{args.size}x{args.size}, "
          f"{name}, torch {torch.__version__}")  # fmt: skip
    if device.type == "cuda":
        print(f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32} (PyTorch default for fp32)")
    base = None
    for variant in args.variants.split(","):
        step = make_step(variant, args.width, device, batch)
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            loss = step()
        sync()
        warm = time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        for _ in range(args.iters):
            loss = step()
        sync()
        seconds = time.perf_counter() - t0
        ips = args.batch * args.iters / seconds
        base = base or ips
        mem = ""
        if device.type == "cuda":
            mem = f"  peak {torch.cuda.max_memory_allocated(device) / 2**30:6.2f} GiB"
        print(f"{variant:<18} {ips:8.1f} img/s   x{ips / base:5.2f} vs fp32{mem}"
              f"   (warm-up {warm:.1f} s, loss {float(loss):.4f})", flush=True)  # fmt: skip
        del step
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
