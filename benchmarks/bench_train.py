"""HigherHRNet training throughput (img/s) and peak memory: fp32 vs AMP, channels_last, compile.

One training step = forward, the official loss (heatmaps at both resolutions, AE tags at 1/4),
backward, Adam update, on a synthetic batch with realistic targets (30 people per image). The
first variant is the baseline, measured in the same run; every variant is printed as a ratio
against it. Peak memory is CUDA's max allocated bytes during the timed steps. A variant is
``+``-joined flags: ``fp32`` (PyTorch defaults: TF32 convolutions), ``strict`` (TF32 off for
this variant), ``cl`` (channels_last), ``bf16``/``fp16`` (autocast), ``compile``.

    python benchmarks/bench_train.py [--width 32] [--size 512] [--batch 12] [--iters 20]
        [--variants strict+cl,cl,cl+fp16,cl+bf16] [--no-tf32]
        [--find-max-batch [--max-batch-limit 1024] [--search-tolerance 0.125]]

``--find-max-batch`` (CUDA only) searches each variant's largest batch that fits: it doubles
from ``--batch`` until CUDA runs out of memory, bisects until the gap is within the tolerance,
then times that batch. On CPU the default is a small problem (W32 at 256, batch 2).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import time
from collections.abc import Callable, Iterator

import torch

from hrpose.losses import HigherHRNetLoss
from hrpose.models import HigherHRNet

ALL = ("fp32", "cl", "cl+bf16", "cl+fp16", "cl+bf16+compile")
FLAGS = {"fp32", "strict", "cl", "bf16", "fp16", "compile"}


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


def tile_batch(batch, n: int):
    """``batch`` with every tensor's first dimension repeated (or cut) to ``n``: larger batches
    on the device without generating new data (their content changes neither speed nor memory)."""

    def tile(x: torch.Tensor) -> torch.Tensor:
        return x.repeat(-(-n // x.shape[0]), *([1] * (x.dim() - 1)))[:n]

    image, heatmaps, masks, joints = batch
    return (
        tile(image),
        [tile(h) for h in heatmaps],
        [tile(m) for m in masks],
        [tile(j) for j in joints],
    )


@contextlib.contextmanager
def tf32_for(variant: str) -> Iterator[None]:
    """TF32 off inside for a ``strict`` variant (restored after); other variants unchanged."""
    before = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    if "strict" in variant.split("+"):
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def measure(variant: str, width: int, device: torch.device, batch, warmup: int, iters: int):
    """(img/s, peak GiB or None, warm-up s, last loss) of ``iters`` timed steps after ``warmup``."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    with tf32_for(variant):
        step = make_step(variant, width, device, batch)
        t0 = time.perf_counter()
        loss = None
        for _ in range(warmup):
            loss = step()
        sync()
        warm = time.perf_counter() - t0
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            loss = step()
        sync()
        seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return batch[0].shape[0] * iters / seconds, peak, warm, float(loss)


def is_oom(e: BaseException) -> bool:
    """CUDA ran out of memory (the allocator's error, or a library's that says so)."""
    return isinstance(e, torch.cuda.OutOfMemoryError) or "out of memory" in str(e)


def free_cuda() -> None:
    """Drop what an out-of-memory step left behind so the next try starts from an empty cache."""
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def _steps_fit(variant: str, width: int, device: torch.device, base, n: int, steps: int) -> bool:
    try:
        with tf32_for(variant):
            step = make_step(variant, width, device, tile_batch(base, n))
            for _ in range(steps):
                step()
            torch.cuda.synchronize(device)
        return True
    except RuntimeError as e:  # torch.cuda.OutOfMemoryError is one
        if not is_oom(e):
            raise
        return False


def largest_batch(fits: Callable[[int], bool], start: int, limit: int, tolerance: float) -> int:
    """Largest batch in [1, limit] that ``fits``, to within ``tolerance`` x itself: doubles from
    ``start`` until one fails, then bisects. 0 when not even batch 1 fits."""
    lo, hi, n = 0, None, min(start, limit)
    while hi is None:
        if not fits(n):
            hi = n
        elif n >= limit:
            return n
        else:
            lo, n = n, min(2 * n, limit)
    while hi - lo > max(1, int(lo * tolerance)):
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def find_max_batch(args: argparse.Namespace, device: torch.device, base) -> None:
    """Per variant: the largest batch that fits (2 steps each try), then its img/s and peak."""
    first = None
    for variant in args.variants.split(","):

        def fits(n: int, variant: str = variant) -> bool:
            ok = _steps_fit(variant, args.width, device, base, n, steps=2)
            peak = torch.cuda.max_memory_allocated(device) / 2**30
            free_cuda()
            told = f"fits ({peak:.1f} GiB)" if ok else "out of memory"
            print(f"  {variant} batch {n}: {told}", flush=True)
            return ok

        t0 = time.perf_counter()
        n = largest_batch(fits, args.batch, args.max_batch_limit, args.search_tolerance)
        found = f"{n} (the --max-batch-limit)" if n >= args.max_batch_limit else str(n)
        print(f"  {variant}: largest batch {found}, search {time.perf_counter() - t0:.0f} s")
        if n == 0:
            continue
        try:
            ips, peak, warm, loss = measure(variant, args.width, device, tile_batch(base, n),
                                            args.warmup, args.iters)  # fmt: skip
        except RuntimeError as e:
            if not is_oom(e):
                raise
            print(f"{variant:<18} batch {n}: out of memory in the timed run (fragmentation?)")
            free_cuda()
            continue
        first = first or (variant, ips)
        print(f"{variant:<18} batch {n:4d} {ips:8.1f} img/s   x{ips / first[1]:5.2f} vs "
              f"{first[0]}  peak {peak:6.2f} GiB   (warm-up {warm:.1f} s, loss {loss:.4f})",
              flush=True)  # fmt: skip
        free_cuda()


def main() -> None:
    cuda = torch.cuda.is_available()
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--size", type=int, default=512 if cuda else 256)
    parser.add_argument(
        "--batch",
        type=int,
        default=12 if cuda else 2,
        help="the batch (with --find-max-batch: where the search starts)",
    )
    parser.add_argument("--iters", type=int, default=20 if cuda else 3)
    parser.add_argument("--warmup", type=int, default=3 if cuda else 1)
    default = ALL if cuda else ("fp32", "cl")
    parser.add_argument("--variants", default=",".join(default))
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument(
        "--no-tf32", action="store_true", help="strict fp32 for every variant (no TF32)"
    )
    parser.add_argument(
        "--find-max-batch",
        action="store_true",
        help="CUDA: each variant's largest batch that fits, then its img/s",
    )
    parser.add_argument(
        "--max-batch-limit", type=int, default=1024, help="the search stops doubling here"
    )
    parser.add_argument(
        "--search-tolerance",
        type=float,
        default=0.125,
        help="bisect until the gap to out-of-memory is within this fraction",
    )
    args = parser.parse_args()  # fmt: skip
    unknown = {f for v in args.variants.split(",") for f in v.split("+")} - FLAGS
    if unknown:
        parser.error(f"unknown variant flags {sorted(unknown)}; use {sorted(FLAGS)}")
    device = torch.device(args.device)
    if args.find_max_batch and (device.type != "cuda" or not cuda):
        print("bench_train --find-max-batch needs a CUDA device (torch.cuda.is_available() is "
              f"{cuda}, --device {args.device}); nothing measured.")  # fmt: skip
        return
    if args.no_tf32:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # as the training loop does
    batch = synthetic_batch(args.batch, args.size)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    what = "largest batch" if args.find_max_batch else f"batch {args.batch}"
    print(f"HigherHRNet-W{args.width} training step, {what} x3x{args.size}x{args.size}, "
          f"{name}, torch {torch.__version__}")  # fmt: skip
    if device.type == "cuda":
        print(f"cudnn.allow_tf32={torch.backends.cudnn.allow_tf32} (PyTorch default for fp32)")
    if args.find_max_batch:
        base = tuple(x.to(device) if torch.is_tensor(x) else [t.to(device) for t in x]
                     for x in batch)  # fmt: skip
        find_max_batch(args, device, base)
        return
    first = None
    for variant in args.variants.split(","):
        ips, peak, warm, loss = measure(variant, args.width, device, batch, args.warmup, args.iters)
        first = first or (variant, ips)
        mem = "" if peak is None else f"  peak {peak:6.2f} GiB"
        print(f"{variant:<18} {ips:8.1f} img/s   x{ips / first[1]:5.2f} vs {first[0]}{mem}"
              f"   (warm-up {warm:.1f} s, loss {loss:.4f})", flush=True)  # fmt: skip
        if device.type == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
