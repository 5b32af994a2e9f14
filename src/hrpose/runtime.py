"""Runtime policy: which device, precision and graph form a network runs in, and the ONNX
Runtime adapter that makes an exported file callable like the torch model."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hrpose.models.fuse import fuse_batchnorm

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = frozenset(AUTOCAST_DTYPES)
# Precisions whose autocast covers the backbone only: a HigherHRNet's heads (final_layers,
# deconv_layers) run in fp32 on fp32 features, so the decoder gets fp32 maps. Measured on
# w8-coco-mini (benchmarks/README.md, bench_bf16.py): this removes the heads' bf16 error and
# the outputs' rounding, not the backbone's, which moves keypoints as much as before.
BACKBONE_AUTOCAST = frozenset({"bf16"})

# Video frames per network batch (``hrpose predict --batch-frames``), chosen per device type: on
# this project's CPU a batch of 2 ran slower than two single forwards (benchmarks/README.md); on
# CUDA, batches fill the GPU between the per-frame host work (8: chosen, not yet measured).
BATCH_FRAMES = {"cpu": 1, "cuda": 8}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AMX or AVX512-BF16), so bf16 autocast pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: ask oneDNN
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return "amx_bf16" in flags or "avx512_bf16" in flags


def fast_options(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Predictor keywords of the opt-in fast path (``hrpose predict --fast``) for a device.

    ``torch.compile`` in fp32 on every device: it kept keypoints equal to fp32. bf16 and fp16
    are not chosen: on the w8-coco-mini weights they moved keypoints (fp16 measured emulated on
    a CPU). bf16 with the heads in fp32 still keeps only 61-77% of people at OKS >= 0.9: its
    error is the backbone's rounding, compounded (benchmarks/README.md, bench_bf16.py); ask for
    them with ``precision=``.
    """
    del device  # one answer today; the device stays in the signature for per-device choices
    return {"compile": True}


def default_batch_frames(device: str | torch.device = "cpu") -> int:
    """Frames per network batch for a video on ``device`` (1 for device types not measured)."""
    return BATCH_FRAMES.get(torch.device(device).type, 1)


def check_device(device: str | torch.device) -> torch.device:
    """The device, refused with the fix when hrpose cannot decode on it (mps has no float64,
    which the official decoder's arithmetic needs)."""
    device = torch.device(device)
    if device.type == "mps":
        raise ValueError(
            "device mps is not supported: the decoder's official arithmetic needs float64, which "
            "mps lacks; use --device cpu (or cuda)"
        )
    return device


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse unknown precisions; warn where a precision is emulated (slower than fp32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
    if device.type == "cpu" and (
        precision == "fp16" or (precision == "bf16" and not cpu_has_native_bf16())
    ):
        warnings.warn(
            f"{precision} on this CPU is emulated (bf16 is native only with AMX or AVX512-BF16, "
            "fp16 is meant for CUDA) and several times slower than fp32; use precision='fp32' "
            "(or --fast, which picks what this device supports)",
            stacklevel=3,
        )


class BackboneAutocast(nn.Module):
    """A HigherHRNet with its backbone under autocast in ``dtype`` and its heads in fp32 on the
    features cast to fp32 (what ``precision="bf16"`` runs; see :data:`BACKBONE_AUTOCAST`)."""

    def __init__(self, net: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.net = net
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> Any:
        """The network's PoseOutput, its heads computed in fp32 (autocast off there)."""
        with torch.autocast(x.device.type, self.dtype):
            feat = self.net.forward_features(x)[0]
        with torch.autocast(x.device.type, enabled=False):
            return self.net.forward_heads(feat.float())


def prepare_network(
    model: nn.Module,
    device: torch.device,
    *,
    fuse_bn: bool = True,
    channels_last: bool = True,
    compile: bool = False,
    precision: str = "fp32",
) -> tuple[nn.Module, nn.Module]:
    """(the model on ``device`` in eval mode, the network to run): BatchNorm folded into an
    inference copy, channels_last memory format, for :data:`BACKBONE_AUTOCAST` precisions the
    backbone-only autocast (networks with ``forward_heads``) and ``torch.compile`` as asked."""
    model = model.to(device).eval()
    net = fuse_batchnorm(model) if fuse_bn else model
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    if precision in BACKBONE_AUTOCAST and hasattr(net, "forward_heads"):
        net = BackboneAutocast(net, AUTOCAST_DTYPES[precision])
    return model, (torch.compile(net) if compile else net)


def onnx_providers(device: torch.device) -> list[str]:
    """ONNX Runtime execution providers for ``device``: CUDA when asked for and installed."""
    import onnxruntime as ort

    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ValueError(
            "--device cuda with an .onnx file needs ONNX Runtime's CUDA provider, which this "
            "onnxruntime lacks: pip install onnxruntime-gpu, or use --device cpu"
        )
    return ["CUDAExecutionProvider", "CPUExecutionProvider"]


class OnnxNetwork:
    """An ONNX Runtime session callable like the torch model: batch in, output tensors out."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name
        self.metadata: dict[str, str] = dict(session.get_modelmeta().custom_metadata_map)

    @classmethod
    def open(cls, path: str | Path, device: torch.device) -> OnnxNetwork:
        """A session for ``path`` on ``device``'s execution provider."""
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise RuntimeError("onnxruntime is not installed: pip install 'hrpose[onnx]'") from e
        return cls(ort.InferenceSession(str(path), providers=onnx_providers(device)))

    def __call__(self, batch: torch.Tensor) -> list[torch.Tensor]:
        outs = self.session.run(None, {self.input_name: batch.cpu().numpy()})
        return [torch.from_numpy(o) for o in outs]
