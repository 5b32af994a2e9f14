"""Runtime policy: which device, precision and graph form a network runs in, and the ONNX
Runtime adapter that makes an exported file callable like the torch model."""

from __future__ import annotations

import json
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


# int8 dot-product instructions: without them ONNX Runtime's INT8 convolutions take the AVX2
# u8s8 path (vpmaddubsw + vpmaddwd), several instructions per product instead of one.
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
_WARNED: set[str] = set()


def _cpuinfo() -> str | None:
    """/proc/cpuinfo's text, None where there is none (not Linux)."""
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return None


def cpu_has_vnni() -> bool:
    """Whether this CPU has int8 dot products (AVX512-VNNI, AVX-VNNI or AMX-INT8), which INT8
    kernels need to pay much; True where the flags cannot be read (no warning on no evidence)."""
    text = _cpuinfo()
    return text is None or bool(set(text.split()) & set(INT8_DOT_FLAGS))


def warn_int8_speed() -> None:
    """Warn, once per process, that INT8 runs on the slow non-VNNI kernels of this CPU."""
    if "int8" in _WARNED or cpu_has_vnni():
        return
    _WARNED.add("int8")
    warnings.warn(
        "INT8 will be slow on this CPU: it has none of "
        f"{', '.join(INT8_DOT_FLAGS)} (/proc/cpuinfo), so ONNX Runtime emulates int8 dot "
        "products with AVX2 u8s8 instructions (3 per product pair); on such a CPU the network "
        "measured 1.96x fp32, not the ~3x of a VNNI CPU (benchmarks/README.md, INT8)",
        stacklevel=3,
    )


def check_int8(asked: str, record: Any, network: object, device: torch.device) -> str:
    """``"int8"`` for a quantized network whose stored record has ``record``'s architecture
    (warned about on a CPU without VNNI); refused where the model is not quantized, is another
    architecture, or another precision is asked."""
    if record.precision != "int8" or not isinstance(network, OnnxNetwork):
        raise ValueError(
            "precision int8 needs a quantized model: write one with `hrpose quantize --weights W "
            "--calibration DIR --output W-int8.onnx` (hrpose.quantize.quantize_model) and load "
            "it, or let `hrpose predict --precision int8` quantize on the fly"
        )
    if asked not in ("fp32", "int8"):
        raise ValueError(f"an INT8 model runs in int8: precision {asked!r} does not apply to it")
    stored = json.loads(network.metadata.get("model_record", "{}"))
    shape = (stored.get("width"), stored.get("num_joints"))
    if shape != (record.width, record.num_joints):
        raise ValueError(
            f"this INT8 network is HigherHRNet-W{shape[0]} with {shape[1]} joints but the record "
            f"given is {record.name} with {record.num_joints}: pass the file's own record "
            "(Predictor.from_weights / load_model read it)"
        )
    if device.type == "cpu":
        warn_int8_speed()
    return "int8"


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
