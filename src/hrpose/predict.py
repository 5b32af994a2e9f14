"""Predictor: image -> People with HigherHRNet (torch or ONNX Runtime) and the official decoder."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hrpose.affine import Transform
from hrpose.decode import DecodeParams, decode, preprocess
from hrpose.hub import DEFAULT_POSE, REGISTRY, is_remote, resolve_weights
from hrpose.models import HigherHRNet, describe_arch, extract_state_dict, load_weights
from hrpose.models.fuse import fuse_batchnorm
from hrpose.models.weights import WeightsError, read_checkpoint
from hrpose.skeleton import COCO17, KeypointSpec, builtin_spec_for, canonical_spec
from hrpose.structures import People

WEIGHTS_HELP = (
    "Pass a registered name (`hrpose weights list`; e.g. higherhrnet-w32-512, downloaded and "
    "cached on first use) or an http(s) URL. "
    "Official HigherHRNet weights: download pose_higher_hrnet_w32_512.pth from the model zoo "
    "linked in the README of github.com/HRNet/HigherHRNet-Human-Pose-Estimation (Google Drive / "
    "OneDrive), or train your own with `hrpose train pose` (its results/<experiment>/<run>/"
    "checkpoints/best.pt). Use --weights random to run an untrained network on purpose."
)

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = frozenset(AUTOCAST_DTYPES)


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


# Video frames per network batch (``hrpose predict --batch-frames``), chosen per device type: on
# this project's CPU a batch of 2 ran slower than two single forwards (benchmarks/README.md); on
# CUDA, batches fill the GPU between the per-frame host work (8: chosen, not yet measured).
BATCH_FRAMES = {"cpu": 1, "cuda": 8}


def default_batch_frames(device: str | torch.device = "cpu") -> int:
    """Frames per network batch for a video on ``device`` (1 for device types not measured)."""
    return BATCH_FRAMES.get(torch.device(device).type, 1)


@dataclass
class Prediction:
    """People of one image, the network outputs and the input geometry (for visualisation)."""

    people: People
    outputs: list[torch.Tensor] = field(default_factory=list)  # scale 1, batch 1
    transform: Transform | None = None  # scale 1: image -> network input


def spec_from_checkpoint(obj: dict) -> KeypointSpec | None:
    """The keypoint spec an hrpose checkpoint stores (``extra.keypoint_spec``), if any."""
    raw = (obj.get("extra") or {}).get("keypoint_spec") if isinstance(obj, dict) else None
    if not raw:
        return None
    spec = KeypointSpec(
        names=tuple(raw["names"]),
        flip_index=tuple(raw["flip_index"]),
        skeleton=tuple(tuple(p) for p in raw["skeleton"]),
        sigmas=tuple(raw["sigmas"]),
        grouping_order=tuple(raw.get("grouping_order", ())),
    )
    return canonical_spec(spec)  # a built-in set keeps its drawing colours


def spec_to_dict(spec: KeypointSpec) -> dict:
    """Plain-data form of a spec (stored in checkpoints and ONNX metadata)."""
    return {
        "names": list(spec.names),
        "flip_index": list(spec.flip_index),
        "skeleton": [list(p) for p in spec.skeleton],
        "sigmas": list(spec.sigmas),
        "grouping_order": list(spec.grouping_order),
    }


class Predictor:
    """Runs the network on an RGB image (with flip and scales as configured) and decodes people."""

    def __init__(
        self,
        model: nn.Module | Any,
        *,
        spec: KeypointSpec = COCO17,
        input_size: int = 512,
        params: DecodeParams | None = None,
        device: str | torch.device = "cpu",
        description: str = "",
        channels_last: bool = True,
        fuse_bn: bool = True,
        precision: str = "fp32",
        compile: bool = False,
        batch_flip: bool | None = None,
    ) -> None:
        """``model``: a HigherHRNet (or an ONNX-Runtime wrapper, which ignores the speed options).

        Speed options (torch models): ``channels_last`` memory format and ``fuse_bn`` (BatchNorm
        folded into the convolutions of an inference copy; ``self.model`` stays the original),
        both equal to the plain network up to float rounding; ``precision`` "fp32", "bf16"
        (autocast; fast only on CPUs with AMX/AVX512-BF16 and on GPUs) or "fp16" (CUDA only);
        ``compile`` (``torch.compile``); ``batch_flip`` sends the image and its mirror as one
        batch of 2 (default: on CUDA only; on a CPU two single forwards are faster).
        """
        self.spec = spec
        self.input_size = input_size
        self.params = params or DecodeParams()
        self.device = torch.device(device)
        self.description = description
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if self.device.type == "cpu" and (
            precision == "fp16" or (precision == "bf16" and not cpu_has_native_bf16())
        ):
            warnings.warn(
                f"{precision} on this CPU is emulated (bf16 is native only with AMX or "
                "AVX512-BF16, fp16 is meant for CUDA) and several times slower than fp32; use "
                "precision='fp32' (or --fast, which picks what this device supports)",
                stacklevel=2,
            )
        self.precision = precision
        self.channels_last = channels_last
        self.batch_flip = self.device.type == "cuda" if batch_flip is None else batch_flip
        self.network = model  # what forward() runs
        if isinstance(model, nn.Module):
            model = model.to(self.device).eval()
            net = fuse_batchnorm(model) if fuse_bn else model
            if channels_last:
                net = net.to(memory_format=torch.channels_last)
            self.network = torch.compile(net) if compile else net
        self.model = model

    @classmethod
    def from_weights(
        cls,
        weights: str | Path,
        *,
        width: int | None = None,
        num_joints: int | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """From an official, mmpose 0.x or hrpose checkpoint (architecture read from it), an
        ``.onnx`` file, a registered name or URL (see ``from_pretrained``), or ``"random"`` (an
        untrained HigherHRNet, width 32 unless given)."""
        if is_remote(weights):
            return cls.from_pretrained(str(weights), width=width, num_joints=num_joints, **kwargs)
        if str(weights) == "random":
            torch.manual_seed(0)
            model = HigherHRNet(width or 32, num_joints or 17)
            spec = kwargs.pop("spec", builtin_spec_for(num_joints or 17))
            if spec is None:
                raise ValueError("a random model without a built-in set of K joints needs spec=")
            return cls(model, spec=spec, description=f"random HigherHRNet-W{width or 32} "
                       "(untrained: predictions are meaningless)", **kwargs)  # fmt: skip
        path = Path(weights)
        if path.suffix == ".onnx":
            return cls.from_onnx(path, **kwargs)
        obj = read_checkpoint(path)
        state = extract_state_dict(obj)
        arch = describe_arch(state)
        if arch.get("kind") != "HigherHRNet":
            raise WeightsError(
                f"{path} holds a {arch.get('kind', 'unknown model')} checkpoint, not HigherHRNet "
                "pose weights. " + WEIGHTS_HELP
            )
        w = width or int(arch["width"])
        k = num_joints or int(arch["num_joints"])
        model = HigherHRNet(w, k, init_weights=False)
        load_weights(model, state)
        spec = (
            kwargs.pop("spec", None) or spec_from_checkpoint(obj) or builtin_spec_for(k) or COCO17
        )
        if spec.num_joints != k:
            raise WeightsError(
                f"{path} predicts {k} joints but the keypoint spec has {spec.num_joints}"
            )
        return cls(model, spec=spec, description=f"HigherHRNet-W{w} from {path}", **kwargs)

    @classmethod
    def from_pretrained(cls, name: str = "", **kwargs: Any) -> Predictor:
        """From a registered name (default: the default COCO model) or an http(s) URL: the file
        is downloaded and verified on first use, then read from the cache (``hrpose.hub``)."""
        name = name or DEFAULT_POSE
        entry = REGISTRY.get(name)
        if entry is not None and entry.kind != "pose":
            raise WeightsError(
                f"{name} is {entry.model} {entry.kind} weights, not pose weights; pose models: "
                + ", ".join(n for n, e in REGISTRY.items() if e.kind == "pose")
            )
        if entry is not None:
            kwargs.setdefault("input_size", entry.input_size)
        predictor = cls.from_weights(resolve_weights(name), **kwargs)
        if entry is not None:
            predictor.description = f"{entry.model} {name} ({entry.metric})"
        return predictor

    @classmethod
    def from_onnx(cls, path: str | Path, **kwargs: Any) -> Predictor:
        """An exported model run by ONNX Runtime; its metadata gives the input size and spec."""
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise RuntimeError("onnxruntime is not installed: pip install 'hrpose[onnx]'") from e
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        meta = session.get_modelmeta().custom_metadata_map
        spec = COCO17
        if "keypoint_spec" in meta:
            spec = spec_from_checkpoint(
                {"extra": {"keypoint_spec": json.loads(meta["keypoint_spec"])}}
            )
        kwargs.setdefault("input_size", int(meta.get("input_size", 512)))
        return cls(_OnnxModel(session), spec=spec or COCO17, description=f"ONNX {path}", **kwargs)

    def forward(self, image: np.ndarray) -> tuple[list, list | None, list[torch.Tensor]]:
        """Network outputs (float32) per scale for the image and (flip test) its mirror."""
        return self.forward_batch([image])[0]

    @torch.inference_mode()
    def forward_batch(
        self, images: Sequence[np.ndarray]
    ) -> list[tuple[list, list | None, list[torch.Tensor]]]:
        """``forward`` of each same-size image, as one network batch per scale (with the mirrors
        in the same batch when ``batch_flip``), so a GPU runs few large calls instead of many."""
        n = len(images)
        if len({np.shape(im) for im in images}) > 1:
            raise ValueError("forward_batch needs images of one size; got several")
        outs: list[list] = [[] for _ in range(n)]
        flips: list[list] = [[] for _ in range(n)]
        min_scale = min(self.params.scales)
        for s in self.params.scales:
            batch = torch.stack([preprocess(im, self.input_size, s, min_scale)[0] for im in images])
            batch = batch.to(self.device)
            if self.params.flip and self.batch_flip:
                y = self._run(torch.cat([batch, torch.flip(batch, [3])]))
                y, y_flip = [t[:n] for t in y], [t[n:] for t in y]
            else:
                y = self._run(batch)
                y_flip = self._run(torch.flip(batch, [3])) if self.params.flip else []
            for i in range(n):  # per image: views of the batch, batch 1 as decode expects
                outs[i].append([t[i : i + 1] for t in y])
                flips[i].append([t[i : i + 1] for t in y_flip])
        first = self.params.scales.index(1.0)
        flip = self.params.flip
        return [(o, f if flip else None, o[first]) for o, f in zip(outs, flips, strict=True)]

    def _run(self, batch: torch.Tensor) -> list[torch.Tensor]:
        """One network call with the configured memory format and precision; float32 out."""
        if not isinstance(self.model, nn.Module):
            return [t.float() for t in self.network(batch)]
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        dtype = AUTOCAST_DTYPES[self.precision]
        with torch.autocast(self.device.type, dtype or torch.float32, enabled=dtype is not None):
            y = self.network(batch)
        return [t.float().contiguous() for t in y]

    def predict(self, image: np.ndarray) -> Prediction:
        """People (original image pixels) and the scale-1 outputs for one RGB uint8 image."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> list[Prediction]:
        """``predict`` of each same-size RGB uint8 image (e.g. video frames) with one network
        batch per scale; the same people as one ``predict`` call per image."""
        for image in images:
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise ValueError(
                    f"expected an RGB uint8 image (H, W, 3), got {image.dtype} {image.shape}"
                )
        if not images:
            return []
        min_scale = min(self.params.scales)
        size = (images[0].shape[1], images[0].shape[0])
        # the geometry preprocess used, one Transform per scale (cheap: no warp)
        transforms = [
            Transform.for_image(size, self.input_size, s, min_scale) for s in self.params.scales
        ]
        scale1 = transforms[self.params.scales.index(1.0)]
        preds = []
        for outs, flips, first in self.forward_batch(images):
            people = decode(
                outs, transforms, flip_outputs=flips, spec=self.spec, params=self.params
            )
            preds.append(Prediction(people, first, scale1))
        return preds

    def __call__(self, image: np.ndarray) -> People:
        return self.predict(image).people


class _OnnxModel:
    """Callable like the torch model: batch tensor in, list of output tensors out."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input_name = session.get_inputs()[0].name

    def __call__(self, batch: torch.Tensor) -> list[torch.Tensor]:
        outs = self.session.run(None, {self.input_name: batch.cpu().numpy()})
        return [torch.from_numpy(o) for o in outs]
