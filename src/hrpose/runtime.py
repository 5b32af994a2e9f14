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
    autocast are not chosen: on the w8-coco-mini weights they moved keypoints by pixels (fp16
    measured emulated on a CPU; see benchmarks/README.md); ask for them with ``precision=``.
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


def prepare_network(
    model: nn.Module,
    device: torch.device,
    *,
    fuse_bn: bool = True,
    channels_last: bool = True,
    compile: bool = False,
) -> tuple[nn.Module, nn.Module]:
    """(the model on ``device`` in eval mode, the network to run): BatchNorm folded into an
    inference copy, channels_last memory format and ``torch.compile`` as asked."""
    model = model.to(device).eval()
    net = fuse_batchnorm(model) if fuse_bn else model
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
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
