"""HigherHRNet forward pass: fp32 baseline vs channels_last, BatchNorm folding, AMP and compile.

Prints ms per batch (range over interleaved repeats), the ratios to the fp32 contiguous
baseline (the official way of running the network) and to channels_last eager, both measured
in the same run, and each variant's largest output difference from the baseline relative to
the output range. "fused+cl" is the ``Predictor`` default. bf16 is timed on every device, over
the whole network and as ``Predictor(precision="bf16")`` runs it (the backbone only, the heads
in fp32), but is emulated (slow) on CPUs without AMX/AVX512-BF16; fp16 needs CUDA;
``--compile`` adds torch.compile of the default network; ``--cpu-variants`` adds CPU
inference runtimes: ``jit`` (trace + freeze + optimize_for_inference, oneDNN fusions), ``ort``
(ONNX Runtime CPU, graph optimisation level ALL, the torch thread count), ``mkldnn``
(``torch.utils.mkldnn.to_mkldnn`` weights and an mkldnn-layout input), ``openvino`` and
``openvino-bf16`` (the OpenVINO CPU plugin on the ONNX export; not an hrpose dependency:
``pip install openvino`` to time it), ``inductor-freeze`` (torch.compile with inductor's
``freezing``, minutes of compilation).

    python benchmarks/bench_forward.py [--width 32] [--size 512x832] [--batch 1] [--iters 3]
        [--cpu-variants jit,ort,mkldnn,openvino,openvino-bf16,inductor-freeze]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from hrpose.export import TupleOutputs
from hrpose.models import HigherHRNet
from hrpose.models.fuse import fuse_batchnorm
from hrpose.predict import cpu_has_native_bf16
from hrpose.runtime import BackboneAutocast

Forward = Callable[[], list[torch.Tensor]]


def _jit(model: nn.Module, x: torch.Tensor) -> Forward:
    """trace -> freeze -> optimize_for_inference (conv/add/relu fusions, oneDNN on CPU)."""
    traced = torch.jit.trace(TupleOutputs(model), x, check_trace=False)
    frozen = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
    return lambda: list(frozen(x))


def _ort(model: nn.Module, x: torch.Tensor, tmp: Path) -> Forward:
    """ONNX Runtime's CPU provider on the exported model, every graph optimisation on."""
    import onnxruntime as ort

    from hrpose.export import export_onnx
    from hrpose.record import registered_record

    path = export_onnx(
        model, tmp / "model.onnx", registered_record(model.width, 17, input_size=x.shape[2])
    )
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = torch.get_num_threads()
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {"image": x.numpy()}
    return lambda: [torch.from_numpy(o) for o in session.run(None, feed)]


def _openvino(model: nn.Module, x: torch.Tensor, tmp: Path, precision: str) -> Forward:
    """OpenVINO's CPU plugin on the exported ONNX model, in f32 (its default on bf16-capable
    CPUs is bf16, so the hint is explicit) or bf16, on the torch thread count."""
    import openvino as ov

    from hrpose.export import export_onnx
    from hrpose.record import registered_record

    path = tmp / "model.onnx"
    if not path.exists():
        export_onnx(model, path, registered_record(model.width, 17, input_size=x.shape[2]))
    config = {
        "INFERENCE_PRECISION_HINT": precision,
        "INFERENCE_NUM_THREADS": torch.get_num_threads(),
        "PERFORMANCE_HINT": "LATENCY",
    }
    compiled = ov.Core().compile_model(str(path), "CPU", config)
    request, feed = compiled.create_infer_request(), x.numpy()
    return lambda: [torch.from_numpy(o.copy()) for o in request.infer([feed]).values()]


def _inductor_frozen(model: nn.Module, x: torch.Tensor) -> Forward:
    """torch.compile with inductor's freezing: weights folded as constants, oneDNN prepacked."""
    compiled = torch.compile(model, options={"freezing": True})  # this compile only
    return lambda: list(compiled(x))


def _mkldnn(model: nn.Module, x: torch.Tensor) -> Forward:
    """Convolution weights reordered for oneDNN and the activations in its blocked layout."""
    from torch.utils.mkldnn import to_mkldnn

    net = to_mkldnn(copy.deepcopy(model))
    x_mk = x.to_mkldnn()
    return lambda: [t.to_dense() for t in net(x_mk)]


def _cpu_variants(names: str, fused: nn.Module, x: torch.Tensor, tmp: Path) -> dict[str, Forward]:
    """The requested CPU runtimes; one that fails to build is reported and left out."""
    makers = {
        "jit": ("jit freeze+optimize", lambda: _jit(fused, x)),
        "ort": ("onnxruntime ALL", lambda: _ort(fused, x, tmp)),
        "mkldnn": ("mkldnn layout", lambda: _mkldnn(fused, x)),
        "openvino": ("openvino f32", lambda: _openvino(fused, x, tmp, "f32")),
        "openvino-bf16": ("openvino bf16", lambda: _openvino(fused, x, tmp, "bf16")),
        "inductor-freeze": ("compile+freezing", lambda: _inductor_frozen(fused, x)),
    }
    out = {}
    for key in filter(None, names.split(",")):
        label, make = makers[key]
        try:
            with torch.inference_mode(key != "jit"):  # tracing needs autograd-free tensors
                fn = make()
                fn()
        except Exception as e:  # noqa: BLE001 - a runtime that cannot take this model is a result
            print(f"{label}: not available ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
            continue
        out[label] = fn
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--size", default="512x832", help="HxW (the 640x392 photo at 512)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument(
        "--cpu-variants",
        default="",
        help="comma list of CPU runtimes: jit, ort, mkldnn, openvino, openvino-bf16, "
        "inductor-freeze",
    )
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
    variants: dict[str, Forward] = {
        "fp32 (official)": lambda: list(model(x)),
        "channels_last": lambda: list(model_cl(x_cl)),
        "fused+cl (default)": lambda: list(fused_cl(x_cl)),
    }
    dtypes = {"bf16": torch.bfloat16}
    if device.type == "cuda":
        dtypes["fp16"] = torch.float16
    for name, dtype in dtypes.items():

        def amp(dtype=dtype):
            with torch.autocast(device.type, dtype):
                return list(fused_cl(x_cl))

        native = device.type == "cuda" or cpu_has_native_bf16()
        variants[f"fused+cl+{name}" + ("" if native else " (emulated)")] = amp
    # what Predictor(precision="bf16") runs: the backbone under autocast, the heads in fp32
    backbone_bf16 = BackboneAutocast(fused_cl, torch.bfloat16)
    native = device.type == "cuda" or cpu_has_native_bf16()
    variants["fused+cl+bf16 backbone" + ("" if native else " (emulated)")] = lambda: list(
        backbone_bf16(x_cl)
    )
    if args.compile:
        compiled = torch.compile(fused_cl)
        variants["fused+cl+compile"] = lambda: list(compiled(x_cl))
    tmp = tempfile.TemporaryDirectory()
    if args.cpu_variants:
        if device.type != "cpu":
            raise SystemExit("--cpu-variants are CPU runtimes: run with --device cpu")
        variants.update(_cpu_variants(args.cpu_variants, fuse_batchnorm(model), x, Path(tmp.name)))

    print(f"HigherHRNet-W{args.width}, batch {args.batch}x3x{h}x{w}, {device}, {args.clock} clock, "
          f"{torch.get_num_threads()} thread(s)")  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in variants}
    diffs: dict[str, float] = {}
    with torch.inference_mode():
        ref = variants["fp32 (official)"]()
        for name, fn in variants.items():  # warm-up (and compilation), output check
            got = fn()
            sync()
            diffs[name] = max(
                ((g.float() - r).abs().max() / r.abs().max()).item()
                for g, r in zip(got, ref, strict=True)
            )
        for _ in range(args.iters):  # interleaved: load changes hit every variant alike
            for name, fn in variants.items():
                t0 = now()
                fn()
                sync()
                times[name].append(now() - t0)
    base, cl_times = times["fp32 (official)"], times["channels_last"]
    for name, ts in times.items():
        r = [b / t for b, t in zip(base, ts, strict=True)]
        rc = [b / t for b, t in zip(cl_times, ts, strict=True)]
        lo, hi = min(ts) * 1000, max(ts) * 1000
        print(f"{name:<33} {lo:8.0f}-{hi:<8.0f} ms   x{min(r):.2f}-{max(r):.2f} vs fp32   "
              f"x{min(rc):.2f}-{max(rc):.2f} vs channels_last   "
              f"max |diff| {diffs[name]:.1e} of the output range")  # fmt: skip
    tmp.cleanup()


if __name__ == "__main__":
    main()
